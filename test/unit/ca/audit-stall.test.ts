/**
 * src/ca/observe/audit.ts on a destination that stops taking lines: a named pipe whose reader stops
 * reading (as `ca serve | shipper` when the shipper stalls). A write waits for it at most the
 * patience, then fails closed; the next ones fail at once; the lines kept come out whole and in order
 * once it reads again; a line cut part-way (a pipe's bytes cannot be taken back) is finished before
 * anyone else writes, or ended by the next writer's newline when its writer gave up.
 */
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {closeSync, constants, openSync, readSync, writeSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {Worker} from 'node:worker_threads'
import {auditLock, createAuditLog, releaseAuditLock, type AuditLog} from '../../../src/ca/observe/audit.ts'
import {SshcaError} from '../../../src/errors.ts'
import {waitFor} from '../../helpers/proc.ts'
import {tempDir} from '../../helpers/tmp.ts'

/** A named pipe and its reader, which reads only when told (non-blocking, so a test never hangs on it). */
function fifo(): {path: string; drain(): string; close(): void} {
  const path = join(tempDir(), 'audit.fifo')
  const made = spawnSync('mkfifo', [path])
  assert.equal(made.status, 0, `mkfifo: ${made.stderr}`)
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK)
  let text = ''
  return {
    path,
    drain() {
      const buf = Buffer.alloc(65536)
      for (;;) {
        let n: number
        try {
          n = readSync(fd, buf)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EAGAIN') break
          throw err
        }
        if (n === 0) break
        text += buf.toString('utf8', 0, n)
      }
      return text
    },
    close: () => closeSync(fd),
  }
}

/** The error `f` throws (it must throw an SshcaError). */
function failure(f: () => void): SshcaError {
  try {
    f()
  } catch (err) {
    assert.ok(err instanceof SshcaError, String(err))
    return err
  }
  assert.fail('it did not throw')
}

/** Closes `log` in a test's finally, where its failure would hide the test's. */
const quietly = (log: AuditLog): Promise<void> => log.close().catch(() => undefined)

const line = (seq: number, size = 1000) => ({seq, pad: 'x'.repeat(size)})

describe('audit: a destination that stops taking lines', function () {
  this.timeout(30_000)

  it('waits for it at most the patience, then fails closed; then fails at once; the kept lines come out whole and in order once it reads again', async () => {
    const pipe = fifo()
    const log = createAuditLog(pipe.path, {patienceMs: 2000})
    try {
      // the pipe (64 KiB) fills: the write that finds it full waits the patience, then gives up
      let seq = 0
      let first: SshcaError | undefined
      let waited = 0
      while (!first) {
        const t0 = performance.now()
        try {
          log.write('certificate_issued', line(seq))
        } catch (err) {
          first = err as SshcaError
          waited = performance.now() - t0
        }
        seq++
        assert.ok(seq < 1000, 'the pipe never filled')
      }
      assert.equal(first.code, 'ERR_STORE_UNAVAILABLE')
      assert.match(first.message, /the audit log cannot be written: it took nothing for 2 s/)
      assert.ok(waited >= 1900, `it gave up after ${waited} ms, not the patience`)
      assert.equal(log.failing?.(), true)
      // the next line does not wait: a stalled destination is tried once
      const next = failure(() => log.write('certificate_issued', line(seq++)))
      assert.equal(next.code, 'ERR_STORE_UNAVAILABLE')
      assert.match(next.message, /it takes nothing \(a full pipe\)/)
      // the reader reads again: the retry writes what was kept, and the next line is taken at once
      let text = pipe.drain()
      await waitFor('the kept lines', () => (text = pipe.drain()).split('\n').length - 1 === seq, 10_000)
      log.write('certificate_issued', line(seq++))
      assert.equal(log.failing?.(), false)
      text = pipe.drain()
      const seqs = text
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as {seq: number}).seq)
      assert.deepEqual(
        seqs,
        Array.from({length: seq}, (_, i) => i),
      )
    } finally {
      await quietly(log)
      pipe.close()
    }
  })

  it('a named pipe that nothing reads is refused at once (ERR_STORE_UNAVAILABLE), not waited on', () => {
    const path = join(tempDir(), 'audit.fifo')
    assert.equal(spawnSync('mkfifo', [path]).status, 0)
    const err = failure(() => createAuditLog(path))
    assert.equal(err.code, 'ERR_STORE_UNAVAILABLE')
    assert.match(err.message, /audit\.fifo is a named pipe that nothing reads: start its reader first/)
  })

  it('a pause shorter than the patience costs nothing: the write waits for the reader and is taken', async () => {
    const pipe = fifo()
    const log = createAuditLog(pipe.path, {patienceMs: 10_000})
    try {
      fillLeaving(pipe, 0)
      // another process reads the pipe in 300 ms; this thread waits in place for it meanwhile
      const reader = spawn('sh', ['-c', 'sleep 0.3; exec cat "$0" > /dev/null', pipe.path], {stdio: 'ignore'})
      const done = new Promise((resolve) => reader.once('exit', resolve))
      try {
        log.write('certificate_issued', line(0))
        assert.equal(log.failing?.(), false)
      } finally {
        reader.kill()
        await done
      }
    } finally {
      await quietly(log)
      pipe.close()
    }
  })

  /** The pipe full of whole lines but for `room` bytes (a multiple of the page size). */
  function fillLeaving(pipe: ReturnType<typeof fifo>, room: number): void {
    const fd = openSync(pipe.path, constants.O_WRONLY | constants.O_NONBLOCK)
    try {
      const filler = Buffer.from(`${JSON.stringify({filler: 'y'.repeat(4082)})}\n`) // one page: 4096 bytes
      assert.equal(filler.length, 4096)
      for (;;) {
        try {
          writeSync(fd, filler)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EAGAIN') break
          throw err
        }
      }
    } finally {
      closeSync(fd)
    }
    if (room === 0) return
    // read `room` bytes back through a reader of its own: the test's reader keeps what it reads
    const peek = Buffer.alloc(room)
    const rfd = openSync(pipe.path, constants.O_RDONLY | constants.O_NONBLOCK)
    try {
      assert.equal(readSync(rfd, peek), room)
    } finally {
      closeSync(rfd)
    }
  }

  const parsed = (text: string) =>
    text
      .trim()
      .split('\n')
      .map((l) => {
        try {
          return JSON.parse(l) as {seq?: number; filler?: string; event?: string}
        } catch {
          return {cut: l.length}
        }
      })
      .filter((l) => !('filler' in l))

  it('a line cut part-way keeps the lock until its rest is written: the other writers fail at once meanwhile, and no line is torn', async () => {
    const pipe = fifo()
    const lock = auditLock()
    const a = createAuditLog(pipe.path, {lock, patienceMs: 300})
    const b = createAuditLog(pipe.path, {lock, patienceMs: 300})
    try {
      fillLeaving(pipe, 8192)
      // 20 KB: the pipe takes 8 KiB of it, then nothing
      const cut = failure(() => a.write('certificate_issued', line(0, 20_000)))
      assert.match(cut.message, /it took nothing for 0\.3 s/)
      // the rest of a's line must come before anything else: b cannot write, and does not wait
      const t0 = performance.now()
      const other = failure(() => b.write('certificate_issued', line(1)))
      assert.match(other.message, /it took no line lately, and another thread is writing to it/)
      assert.ok(performance.now() - t0 < 300, 'b waited for the lock a holds')
      // the reader reads again: a's retry writes the rest, b's the line it kept; then both write at once
      let lines: ReturnType<typeof parsed> = []
      await waitFor('both kept lines', () => (lines = parsed(pipe.drain())).length === 2, 10_000)
      b.write('certificate_issued', line(2))
      a.write('certificate_issued', line(3))
      lines = parsed(pipe.drain())
      assert.deepEqual(
        lines.map((l) => ('seq' in l ? l.seq : l)),
        [0, 1, 2, 3],
      )
    } finally {
      await quietly(a)
      await quietly(b)
      pipe.close()
    }
  })

  it('a writer that gives up part-way (it closes) leaves its line cut, and the next writer ends it with a newline', async () => {
    const pipe = fifo()
    const lock = auditLock()
    const a = createAuditLog(pipe.path, {lock, patienceMs: 300})
    const b = createAuditLog(pipe.path, {lock, patienceMs: 300})
    try {
      fillLeaving(pipe, 8192)
      failure(() => a.write('certificate_issued', line(0, 20_000)))
      // a stops with its line cut; its close fails (the line is not out) and gives the lock up
      await assert.rejects(a.close(), /the audit log cannot be written: it takes nothing/)
      pipe.drain()
      await sleep(50)
      b.write('certificate_issued', line(1))
      const lines = parsed(pipe.drain())
      // the cut line (what the pipe took of a's, unreadable) ends where b's begins: b's is whole
      assert.equal(lines.length, 2)
      assert.ok('cut' in lines[0]! && lines[0].cut > 0, JSON.stringify(lines[0]))
      assert.deepEqual(lines[1], {...lines[1], seq: 1, event: 'certificate_issued'})
    } finally {
      await quietly(b)
      pipe.close()
    }
  })

  it('a thread ended while its line is part-way out (terminate() in its wait): the main thread frees the lock, and the next line ends the cut one first', async () => {
    const pipe = fifo()
    const lock = auditLock()
    fillLeaving(pipe, 8192)
    const module = new URL('../../../src/ca/observe/audit.ts', import.meta.url).href
    // the worker writes a 20 KB line: 8 KiB go out, then it waits (a minute) for the rest
    const w = new Worker(
      `import(${JSON.stringify(module)}).then(({createAuditLog}) => {
        const {workerData, parentPort} = require('node:worker_threads')
        const log = createAuditLog(workerData.path, {lock: workerData.lock, patienceMs: 60000})
        parentPort.postMessage('writing')
        log.write('certificate_issued', {seq: 0, pad: 'x'.repeat(20000)})
      })`,
      {eval: true, workerData: {path: pipe.path, lock}},
    )
    const b = createAuditLog(pipe.path, {lock, patienceMs: 300})
    try {
      await new Promise((resolve, reject) => {
        w.once('message', resolve)
        w.once('error', reject)
      })
      // its line part-way out (the destination CUT), it waits for room: none comes, as nothing reads
      await waitFor('part of the line out', () => (Atomics.load(lock, 1) & 1) === 1, 10_000)
      const tid = w.threadId
      await w.terminate()
      // what workers.ts does when a worker exits
      releaseAuditLock(lock, tid)
      pipe.drain()
      b.write('certificate_issued', line(1))
      const lines = parsed(pipe.drain())
      assert.equal(lines.length, 2)
      assert.ok('cut' in lines[0]! && lines[0].cut > 0, JSON.stringify(lines[0]).slice(0, 200))
      assert.deepEqual(lines[1], {...lines[1], seq: 1, event: 'certificate_issued'})
    } finally {
      await w.terminate()
      await quietly(b)
      pipe.close()
    }
  })
})
