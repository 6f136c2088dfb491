import assert from 'node:assert/strict'
import {
  chmodSync,
  closeSync,
  constants as fsConstants,
  lstatSync,
  openSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {join} from 'node:path'
import {spawn, spawnSync} from 'node:child_process'
import {
  assertOwnerOnlyFile,
  assertPrivateFile,
  checkOwnerOnly,
  exists,
  INPUT_LIMIT,
  privateDir,
  readTextFile,
  refuseSymlink,
  writeFileAtomic,
} from '../../../src/util/fs.ts'
import {rejectsCode, throwsCode} from '../../helpers/assert.ts'
import {tempDir} from '../../helpers/tmp.ts'

describe('atomic writes and symlinks', () => {
  it('writeFileAtomic replaces a symlink at the name; the file it pointed to is untouched', async () => {
    const d = tempDir()
    const victim = join(d, 'authorized_keys')
    writeFileSync(victim, 'ssh-ed25519 AAAA mine\n')
    symlinkSync(victim, join(d, 'out-cert.pub'))
    await writeFileAtomic(join(d, 'out-cert.pub'), 'certificate\n', 0o644)
    assert.equal(readFileSync(victim, 'utf8'), 'ssh-ed25519 AAAA mine\n')
    assert.equal(lstatSync(join(d, 'out-cert.pub')).isSymbolicLink(), false)
    assert.equal(readFileSync(join(d, 'out-cert.pub'), 'utf8'), 'certificate\n')
    assert.equal(lstatSync(join(d, 'out-cert.pub')).mode & 0o777, 0o644)
  })

  it('refuseSymlink: ERR_UNSAFE_PATH for a link (dangling too), nothing for a file or a missing name', async () => {
    const d = tempDir()
    symlinkSync('/nonexistent/target', join(d, 'dangling'))
    await rejectsCode(refuseSymlink(join(d, 'dangling')), 'ERR_UNSAFE_PATH', {}, /is a symbolic link/)
    writeFileSync(join(d, 'plain'), '')
    await refuseSymlink(join(d, 'plain'))
    await refuseSymlink(join(d, 'missing'))
  })
})

describe('private files and folders', () => {
  let d: string
  beforeEach(() => {
    d = tempDir()
  })

  it('writeFileAtomic: a write that fails midway leaves the old file as it was and no temp file beside it', async () => {
    const target = join(d, 'ca.key')
    writeFileSync(target, 'old key\n', {mode: 0o600})
    const boom = new Error('disk full (simulated)')
    const failing = (function* () {
      yield 'half of a new '
      throw boom
    })()
    // writeFileAtomic takes what FileHandle.writeFile takes; an iterable is the one way to fail after some bytes
    await assert.rejects(writeFileAtomic(target, failing as unknown as string), (err) => err === boom)
    assert.equal(readFileSync(target, 'utf8'), 'old key\n')
    assert.deepEqual(readdirSync(d), ['ca.key'])
  })

  it('writeFileAtomic: a failed write whose temp file someone already removed still reports its own error', async () => {
    const boom = new Error('disk full (simulated)')
    const failing = (function* () {
      yield 'partial'
      for (const name of readdirSync(d)) rmSync(join(d, name))
      throw boom
    })()
    await assert.rejects(writeFileAtomic(join(d, 'cert.pub'), failing as unknown as string), (err) => err === boom)
    assert.deepEqual(readdirSync(d), [])
  })

  it('writeFileAtomic: when the rename fails (a folder at the name) the error is thrown and the temp file removed', async () => {
    mkdirSync(join(d, 'taken', 'inside'), {recursive: true})
    await assert.rejects(writeFileAtomic(join(d, 'taken'), 'data'), (err: NodeJS.ErrnoException) => {
      assert.ok(['EISDIR', 'ENOTEMPTY', 'EEXIST'].includes(err.code ?? ''), `got ${err.code}`)
      return true
    })
    assert.deepEqual(readdirSync(d), ['taken'])
    assert.deepEqual(readdirSync(join(d, 'taken')), ['inside'])
  })

  it('writeFileAtomic: 0600 unless told otherwise, and the mode asked for even where the umask would narrow it', async () => {
    await writeFileAtomic(join(d, 'secret'), Buffer.from([0, 1, 2]))
    assert.equal(statSync(join(d, 'secret')).mode & 0o777, 0o600)
    assert.deepEqual(readFileSync(join(d, 'secret')), Buffer.from([0, 1, 2]))
    await writeFileAtomic(join(d, 'shared'), 'x', 0o666)
    assert.equal(statSync(join(d, 'shared')).mode & 0o777, 0o666)
  })

  it('privateDir creates every missing level 0700 and leaves an existing folder its mode', async () => {
    mkdirSync(join(d, 'etc'), {mode: 0o755})
    chmodSync(join(d, 'etc'), 0o755)
    await privateDir(join(d, 'etc', 'sshca', 'keys'))
    assert.equal(statSync(join(d, 'etc')).mode & 0o777, 0o755)
    assert.equal(statSync(join(d, 'etc', 'sshca')).mode & 0o777, 0o700)
    assert.equal(statSync(join(d, 'etc', 'sshca', 'keys')).mode & 0o777, 0o700)
    await privateDir(join(d, 'etc', 'sshca', 'keys'))
    assert.equal(statSync(join(d, 'etc', 'sshca', 'keys')).isDirectory(), true)
  })

  it('exists: true for a file or folder, false for a missing name, and other errors (ENOTDIR) thrown', async () => {
    writeFileSync(join(d, 'file'), '')
    assert.equal(await exists(join(d, 'file')), true)
    assert.equal(await exists(d), true)
    assert.equal(await exists(join(d, 'missing')), false)
    await assert.rejects(exists(join(d, 'file', 'child')), {code: 'ENOTDIR'})
  })

  it('assertPrivateFile: 0600 and 0400 pass; any group or other bit is ERR_FILE_PERMISSIONS', async () => {
    for (const mode of [0o600, 0o400, 0o700]) {
      writeFileSync(join(d, 'k'), 'secret')
      chmodSync(join(d, 'k'), mode)
      await assertPrivateFile(join(d, 'k'))
    }
    for (const mode of [0o640, 0o604, 0o610, 0o601, 0o620, 0o602]) {
      chmodSync(join(d, 'k'), mode)
      await rejectsCode(assertPrivateFile(join(d, 'k')), 'ERR_FILE_PERMISSIONS')
    }
    await assert.rejects(assertPrivateFile(join(d, 'missing')), {code: 'ENOENT'})
  })

  it('refuseSymlink passes on errors other than a missing name (ENOTDIR) instead of calling the path safe', async () => {
    writeFileSync(join(d, 'file'), '')
    await assert.rejects(refuseSymlink(join(d, 'file', 'child')), {code: 'ENOTDIR'})
  })
})

describe('readTextFile: what a command is given, bounded', () => {
  it('reads a file of exactly the limit, refuses one byte more (ERR_INPUT, naming the file and the limit)', () => {
    const d = tempDir()
    writeFileSync(join(d, 'at'), 'a'.repeat(INPUT_LIMIT))
    writeFileSync(join(d, 'over'), 'a'.repeat(INPUT_LIMIT + 1))
    assert.equal(readTextFile(join(d, 'at'), 'token').length, INPUT_LIMIT)
    throwsCode(() => readTextFile(join(d, 'over'), 'token'), 'ERR_INPUT')
    assert.throws(() => readTextFile(join(d, 'over'), 'token'), /over is larger than 1 MiB/)
    writeFileSync(join(d, 'small'), 'x'.repeat(3 << 20))
    assert.equal(readTextFile(join(d, 'small'), 'log', {limit: 4 << 20}).length, 3 << 20)
    assert.throws(
      () => readTextFile(join(d, 'small'), 'log', {limit: 2 << 20, largeHint: 'cut it'}),
      (e: Error & {hint?: string}) => /larger than 2 MiB/.test(e.message) && e.hint === 'cut it',
    )
  })

  it('refuses a device that never ends, a folder, a missing file; says what to do for one it may not read', () => {
    throwsCode(() => readTextFile('/dev/zero', 'certificate'), 'ERR_INPUT')
    const d = tempDir()
    throwsCode(() => readTextFile(d, 'certificate'), 'ERR_INPUT')
    assert.throws(() => readTextFile(join(d, 'none'), 'certificate'), /no certificate at .*none/)
    throwsCode(() => readTextFile(join(d, 'none'), 'certificate'), 'ERR_FILE_NOT_FOUND')
    // root reads any file but a write-only one of /proc
    const unreadable = process.getuid?.() === 0 ? '/proc/sys/vm/drop_caches' : join(d, 'secret')
    if (process.getuid?.() !== 0) writeFileSync(unreadable, 'x', {mode: 0o000})
    assert.throws(
      () => readTextFile(unreadable, 'key', {accessHint: 'run with sudo'}),
      (e: Error & {code?: string; hint?: string}) => e.code === 'ERR_FILE_PERMISSIONS' && e.hint === 'run with sudo',
    )
    // what node:fs said is kept as the cause
    assert.throws(
      () => readTextFile(d, 'certificate'),
      (e: Error & {cause?: {code?: string}}) => e.cause?.code === 'EISDIR',
    )
  })

  it('closes what it opens, on every path', () => {
    const d = tempDir()
    writeFileSync(join(d, 'ok'), 'x')
    writeFileSync(join(d, 'big'), 'x'.repeat(INPUT_LIMIT + 1))
    const open = (): number => readdirSync('/proc/self/fd').length
    const before = open()
    for (let i = 0; i < 20; i++) {
      readTextFile(join(d, 'ok'), 'file')
      for (const bad of [join(d, 'big'), d, '/dev/zero']) assert.throws(() => readTextFile(bad, 'file'))
    }
    assert.equal(open(), before)
  })

  it('holds no more memory for a pipe that trickles its bytes than for a file of the same size', async () => {
    // a buffer kept per read once held 64 KiB for every byte a slow writer sent: 100 KB took 500 MB
    const d = tempDir()
    const fifo = join(d, 'fifo')
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0)
    writeFileSync(join(d, 'file'), 'a'.repeat(100_000))
    // a child reads (so its peak memory is its own), and says its peak resident size in KiB
    const script = `const {readTextFile} = await import(${JSON.stringify(new URL('../../../src/util/fs.ts', import.meta.url).href)})
const n = readTextFile(process.argv[1], 'file').length
const hwm = /VmHWM:\\s+(\\d+)/.exec(process.getBuiltinModule('node:fs').readFileSync('/proc/self/status', 'utf8'))[1]
console.log(n, hwm)`
    const peak = async (file: string, writer?: string): Promise<[number, number]> => {
      const w = writer ? spawn(process.execPath, ['-e', writer, file]) : undefined
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, file], {encoding: 'utf8'})
      if (w) await new Promise((resolve) => (w.exitCode === null ? w.once('exit', resolve) : resolve(null)))
      assert.equal(r.status, 0, r.stderr)
      return r.stdout.trim().split(' ').map(Number) as [number, number]
    }
    const [fromFile, fileKiB] = await peak(join(d, 'file'))
    // 100,000 writes of one byte, each on a later turn of the writer's loop: the reader gets small reads
    const [fromPipe, pipeKiB] = await peak(
      fifo,
      `const fs = require('node:fs'); const fd = fs.openSync(process.argv[1], 'w'); let i = 0
const next = () => { fs.writeSync(fd, 'a'); if (++i < 100_000) setImmediate(next); else fs.closeSync(fd) }
next()`,
    )
    assert.deepEqual([fromFile, fromPipe], [100_000, 100_000])
    assert.ok(pipeKiB - fileKiB < 32 * 1024, `peak ${pipeKiB} KiB reading the pipe, ${fileKiB} KiB the file`)
  })

  it('reads a pipe by name to its end (a FIFO, as <(…) gives one), and text that is not UTF-8 leniently', async () => {
    const d = tempDir()
    const fifo = join(d, 'fifo')
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0)
    // the writer opens the FIFO in another process, writes in two parts and closes it
    const writer = spawn('sh', ['-c', 'printf "one " > "$0"', fifo])
    // readTextFile blocks in open() until the writer opens the FIFO: run it on a later turn, off this test's stack
    const text = await new Promise<string>((resolve) => setImmediate(() => resolve(readTextFile(fifo, 'token'))))
    assert.equal(text, 'one ')
    await new Promise((resolve) => writer.once('exit', resolve))
    writeFileSync(join(d, 'latin1'), Buffer.from('cl\xe9', 'latin1'))
    assert.equal(readTextFile(join(d, 'latin1'), 'file'), 'cl\ufffd')
  })
})

describe('checkOwnerOnly: a secret (an ID token) only its owner can read, checked on the descriptor read', () => {
  let d: string
  beforeEach(() => {
    d = tempDir()
  })
  const HINT = 'chmod 600 the token file'
  /** checkOwnerOnly on `path` opened as readTextFile opens a secret (non-blocking: a FIFO does not wait). */
  const check = (path: string): void => {
    const fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK)
    try {
      checkOwnerOnly(fd, path, 'ID token', HINT)
    } finally {
      closeSync(fd)
    }
  }

  it('a regular file with no group or other bit passes: 0600, 0400, 0700', () => {
    const f = join(d, 'token')
    writeFileSync(f, 'eyJ.e30.sig')
    for (const mode of [0o600, 0o400, 0o700]) {
      chmodSync(f, mode)
      assert.doesNotThrow(() => check(f), mode.toString(8))
    }
  })

  it('any group or other bit is ERR_FILE_PERMISSIONS, with the hint given; the mode now, not when it was opened', () => {
    const f = join(d, 'token')
    writeFileSync(f, 'eyJ.e30.sig')
    chmodSync(f, 0o600)
    const fd = openSync(f, 'r')
    try {
      for (const mode of [0o640, 0o620, 0o610, 0o604, 0o602, 0o601, 0o644, 0o666, 0o777]) {
        chmodSync(f, mode)
        throwsCode(() => checkOwnerOnly(fd, f, 'ID token', HINT), 'ERR_FILE_PERMISSIONS', {}, new RegExp(f))
        assert.throws(
          () => checkOwnerOnly(fd, f, 'ID token', HINT),
          (e: {hint?: string}) => e.hint === HINT,
        )
      }
    } finally {
      closeSync(fd)
    }
  })

  it('what is not a regular file is ERR_INPUT, whatever its mode: a folder, a FIFO, a device', () => {
    const folder = join(d, 'folder')
    mkdirSync(folder, {mode: 0o700})
    const fifo = join(d, 'fifo')
    assert.equal(spawnSync('mkfifo', ['-m', '600', fifo]).status, 0)
    for (const path of [folder, fifo, '/dev/null']) {
      throwsCode(() => check(path), 'ERR_INPUT', {}, new RegExp(path))
      assert.throws(
        () => check(path),
        (e: {hint?: string}) => e.hint === HINT,
      )
    }
  })

  it('assertOwnerOnlyFile: the same checks on a path; a missing file passes, and nothing is left open', () => {
    const f = join(d, 'token')
    writeFileSync(f, 'eyJ.e30.sig')
    chmodSync(f, 0o600)
    const open = () => readdirSync('/proc/self/fd').length
    const before = open()
    assertOwnerOnlyFile(f, 'ID token', HINT)
    assertOwnerOnlyFile(join(d, 'missing'), 'ID token', HINT)
    chmodSync(f, 0o640)
    throwsCode(() => assertOwnerOnlyFile(f, 'ID token', HINT), 'ERR_FILE_PERMISSIONS')
    throwsCode(() => assertOwnerOnlyFile(d, 'ID token', HINT), 'ERR_INPUT')
    assert.equal(open(), before)
  })
})
