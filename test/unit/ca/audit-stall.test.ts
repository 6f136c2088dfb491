/**
 * src/ca/observe/audit.ts on a destination that stops taking lines: a named pipe whose reader stops
 * reading (as `ca serve | shipper` when the shipper stalls). A write waits for it at most the
 * patience, then fails closed; the next ones fail at once; the lines kept come out whole and in order
 * once it reads again; a line cut part-way (a pipe's bytes cannot be taken back) is finished before
 * anyone else writes, or ended by the next writer's newline when its writer gave up or was ended.
 * Threads waiting together wait the patience in all; past a cap refusals are counted, not kept; a
 * terminal nobody reads is waited on no longer than a pipe.
 */
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {closeSync, constants, openSync, readFileSync, readSync, writeFileSync, writeSync} from 'node:fs'
import {once} from 'node:events'
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

  /** The lines read, the fillers left out; one that is not JSON is `{cut: its length}`. */
  const parsed = (text: string): {seq?: number; filler?: string; event?: string; cut?: number}[] =>
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

  /** Two logs on one destination (two threads', as far as the lock goes), the pipe full but for 8 KiB. */
  function twoWriters() {
    const pipe = fifo()
    const lock = auditLock()
    fillLeaving(pipe, 8192)
    return {
      pipe,
      a: createAuditLog(pipe.path, {lock, patienceMs: 300}),
      b: createAuditLog(pipe.path, {lock, patienceMs: 300}),
    }
  }

  it('a line cut part-way keeps the lock until its rest is written: the other writers fail at once meanwhile, and no line is torn', async () => {
    const {pipe, a, b} = twoWriters()
    try {
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
    const {pipe, a, b} = twoWriters()
    try {
      failure(() => a.write('certificate_issued', line(0, 20_000)))
      // a stops with its line cut; its close fails (the line is not out) and gives the lock up
      await assert.rejects(a.close(), /the audit log cannot be written: it took nothing for 0\.3 s/)
      pipe.drain()
      await sleep(50)
      b.write('certificate_issued', line(1))
      const lines = parsed(pipe.drain())
      // the cut line (what the pipe took of a's, unreadable) ends where b's begins: b's is whole
      assert.equal(lines.length, 2)
      assert.ok((lines[0]!.cut ?? 0) > 0, JSON.stringify(lines[0]))
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
      assert.ok((lines[0]!.cut ?? 0) > 0, JSON.stringify(lines[0]).slice(0, 200))
      assert.deepEqual(lines[1], {...lines[1], seq: 1, event: 'certificate_issued'})
    } finally {
      await w.terminate()
      await quietly(b)
      pipe.close()
    }
  })

  it('threads that wait together wait at most the patience in all, the lock and the destination together, then fail at once', async () => {
    const pipe = fifo()
    const lock = auditLock()
    const module = new URL('../../../src/ca/observe/audit.ts', import.meta.url).href
    // three threads writing to a pipe nothing reads, one starting late: each reports its longest write
    const run = (startMs: number) =>
      new Promise<{longest: number; failures: number}>((resolve, reject) => {
        const w = new Worker(
          `import(${JSON.stringify(module)}).then(async ({createAuditLog}) => {
            const {workerData, parentPort} = require('node:worker_threads')
            await new Promise((r) => setTimeout(r, workerData.startMs))
            const log = createAuditLog(workerData.path, {lock: workerData.lock, patienceMs: 1000})
            let longest = 0
            let failures = 0
            for (let i = 0; i < 200 && failures < 3; i++) {
              const t0 = performance.now()
              try {
                log.write('certificate_issued', {seq: i, pad: 'x'.repeat(1000)})
              } catch {
                failures++
              }
              longest = Math.max(longest, performance.now() - t0)
            }
            parentPort.postMessage({longest, failures})
          })`,
          {eval: true, workerData: {path: pipe.path, lock, startMs}},
        )
        w.once('message', (m) => resolve(m as {longest: number; failures: number}))
        w.once('error', reject)
      })
    try {
      const results = await Promise.all([run(0), run(0), run(500)])
      for (const r of results) {
        assert.equal(r.failures, 3, JSON.stringify(results))
        // a lock's wait and then a pipe's wait was twice the patience and more
        assert.ok(r.longest < 2000, `a write blocked ${Math.round(r.longest)} ms: ${JSON.stringify(results)}`)
      }
    } finally {
      pipe.close()
    }
  })

  it('a lock its holder does not let go (stuck in a write to a disk that stopped answering): one write waits the patience, then the log is FAILING and the next fail at once, until the holder lets go', async () => {
    const lock = auditLock()
    const file = join(tempDir(), 'audit.log')
    const log = createAuditLog(file, {lock, patienceMs: 400})
    let told: (string | undefined)[] = []
    const watched = createAuditLog(file, {lock, patienceMs: 400, onFailing: (why) => told.push(why)})
    try {
      // another thread's holder id, as a thread blocked in its write holds it
      Atomics.store(lock, 0, 4242)
      let t0 = performance.now()
      assert.equal(failure(() => watched.write('certificate_issued', line(0))).code, 'ERR_STORE_UNAVAILABLE')
      assert.ok(performance.now() - t0 >= 350, 'the first write waited for the lock')
      assert.deepEqual(told, ['it is locked by a thread that does not let go'])
      assert.equal(log.failing?.(), true)
      // every later line, of either log, fails at once: before, each waited the patience again
      t0 = performance.now()
      for (let i = 1; i <= 5; i++) failure(() => log.write('certificate_issued', line(i)))
      assert.ok(performance.now() - t0 < 200, `five writes took ${Math.round(performance.now() - t0)} ms`)
      // the holder lets go: the kept lines go out on the next retry, and the log says it takes lines again
      Atomics.store(lock, 0, 0)
      told = []
      await waitFor('the kept lines', () => log.failing?.() === false, 5000)
      await waitFor('the watched log told', () => told.includes(undefined), 5000)
      log.write('certificate_issued', line(6))
      await quietly(watched)
      const seqs = readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as {seq: number}).seq)
      assert.deepEqual(
        [...seqs].sort((x, y) => x - y),
        [0, 1, 2, 3, 4, 5, 6],
      )
    } finally {
      Atomics.store(lock, 0, 0)
      await quietly(log)
      await quietly(watched)
    }
  })

  it('the lines of one turn of the event loop wait the patience in all, not each: a reader that takes each in time but not all of them', async () => {
    const pipe = fifo()
    const log = createAuditLog(pipe.path, {patienceMs: 600})
    fillLeaving(pipe, 0)
    // another process frees one page of the pipe every 250 ms: room for one 3000-byte line (a write of
    // up to a page to a pipe goes in whole or not at all)
    const reader = spawn(
      'sh',
      ['-c', 'exec 3<"$0"; while :; do sleep 0.25; dd bs=4096 count=1 <&3 >/dev/null 2>&1; done', pipe.path],
      {stdio: 'ignore'},
    )
    const done = new Promise((resolve) => reader.once('exit', resolve))
    try {
      // six lines in one turn, as a group commit's batch: each alone would be taken within the patience
      const t0 = performance.now()
      let failed = 0
      for (let i = 0; i < 6; i++) {
        try {
          log.write('certificate_issued', line(i, 3000))
        } catch {
          failed++
        }
      }
      const took = performance.now() - t0
      // before, each line waited for its page: 1.5 s and more, the thread's event loop still all along
      assert.ok(took < 1100, `six lines held the thread ${Math.round(took)} ms`)
      assert.ok(failed >= 1, 'the lines past the patience failed closed')
    } finally {
      reader.kill()
      await done
      await quietly(log)
      pipe.close()
    }
  })

  it('past its cap a thread counts refusals rather than keep them, and writes the counts once the destination takes lines again', async () => {
    const pipe = fifo()
    const log = createAuditLog(pipe.path, {patienceMs: 200, keptMaxBytes: 20_000})
    try {
      fillLeaving(pipe, 0)
      // an issuance's line is kept whatever the cap; refusals up to the cap, then counted
      failure(() => log.write('certificate_issued', line(0)))
      for (let i = 1; i <= 100; i++) failure(() => log.write('certificate_denied', line(i)))
      failure(() => log.write('certificate_issued', line(101)))
      failure(() => log.write('rate_limited', line(102)))
      let lines: ReturnType<typeof parsed> = []
      await waitFor(
        'the kept lines and the counts',
        () => (lines = parsed(pipe.drain())).some((l) => l.event === 'audit_lines_dropped'),
        10_000,
      )
      const seqs = lines.flatMap((l) => ('seq' in l && l.seq !== undefined ? [l.seq] : []))
      const kept = seqs.filter((q) => q >= 1 && q <= 100)
      // the first refusals, up to the cap of 20,000 bytes (about 1,100 bytes a line), in order
      assert.ok(kept.length >= 10 && kept.length <= 20, `kept ${kept.length}`)
      assert.deepEqual(seqs, [0, ...kept, 101], 'both issuances kept, and the refusals kept in order')
      assert.deepEqual(
        kept,
        Array.from({length: kept.length}, (_, i) => i + 1),
      )
      const counts = lines.find((l) => l.event === 'audit_lines_dropped') as {dropped: Record<string, number>}
      assert.deepEqual(counts.dropped, {certificate_denied: 100 - kept.length, rate_limited: 1})
      assert.equal(log.failing?.(), false)
    } finally {
      await quietly(log)
      pipe.close()
    }
  })

  it('stdout a terminal nobody reads (Ctrl-S, an ssh session whose client stopped): the write gives up after the patience, not never', async function () {
    const python = spawnSync('python3', ['-c', 'import pty'])
    if (python.status !== 0) {
      console.log('      skipped: no python3 to open a terminal with')
      this.skip()
    }
    const module = new URL('../../../src/ca/observe/audit.ts', import.meta.url).pathname
    const script = join(tempDir(), 'tty-writer.ts')
    writeFileSync(
      script,
      `import {createAuditLog} from ${JSON.stringify(module)}
const log = createAuditLog('-', {patienceMs: 500})
for (let i = 0; ; i++) {
  try {
    log.write('certificate_issued', {seq: i, pad: 'x'.repeat(1000)})
  } catch (err) {
    process.stderr.write('gave up: ' + (err as Error).message + '\\n')
    process.exit(0)
  }
}
`,
    )
    // a terminal whose other side nothing reads: its buffer fills, then writes to it block
    const child = spawn(
      'python3',
      [
        '-c',
        `import os, pty, subprocess, sys
m, s = pty.openpty()
p = subprocess.run([sys.argv[1], sys.argv[2]], stdout=s, stderr=subprocess.PIPE, timeout=30)
sys.stderr.write(p.stderr.decode())`,
        process.execPath,
        script,
      ],
      {stdio: ['ignore', 'ignore', 'pipe']},
    )
    let err = ''
    child.stderr.on('data', (d) => (err += d))
    const [code] = (await once(child, 'exit')) as [number | null]
    assert.equal(code, 0, err)
    assert.match(err, /gave up: the audit log cannot be written: it took nothing for 0\.5 s/)
  })
})
