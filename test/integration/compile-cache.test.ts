/**
 * Node's compile cache (bin/run.cjs): Node's default folder, os.tmpdir()/node-compile-cache, is shared
 * by every user and Node takes compiled code from it without checking who wrote it. sshca keeps its
 * cache in a folder of the user's own, and runs without one when anyone else could change that folder
 * or a folder above it. NODE_DEBUG_NATIVE=COMPILE_CACHE makes Node say which folder it reads.
 * `list`, `login` and `proxycommand` keep V8's code for their bundle there too, taken after they ran.
 */
import assert from 'node:assert/strict'
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import {userInfo} from 'node:os'
import {join} from 'node:path'
import {ROOT, sshca} from '../helpers/cli.ts'
import {run} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'

const cacheOf = (home: string): string => join(home, '.cache', 'sshca', 'node-compile-cache')

async function version(env: NodeJS.ProcessEnv): Promise<{code: number | null; used: string[]}> {
  const r = await sshca(['--version'], {
    env: {...env, NODE_DEBUG_NATIVE: 'COMPILE_CACHE', NODE_COMPILE_CACHE: '', XDG_CACHE_HOME: ''},
  })
  // "[compile cache] resolved path BASE + VERSION -> DIR"
  const used = [...r.stderr.matchAll(/^\[compile cache\] resolved path (\S+) /gm)].map((m) => m[1]!)
  return {code: r.code, used}
}

describe('the compile cache is a folder of our own', function () {
  this.timeout(60_000)

  it('~/.cache/sshca/node-compile-cache, made 0700, and filled', async () => {
    const home = tempDir()
    const r = await version({HOME: home})
    assert.equal(r.code, 0)
    assert.deepEqual(r.used, [cacheOf(home)])
    assert.equal(statSync(cacheOf(home)).mode & 0o777, 0o700)
    assert.ok(readdirSync(cacheOf(home)).length > 0, 'Node wrote its cache there')
  })

  it("another user's folder, or one under a folder others may write to: no cache at all, not that one", async function () {
    if (userInfo().uid !== 0) this.skip() // making a folder another user's takes root
    const theirs = tempDir()
    mkdirSync(cacheOf(theirs), {recursive: true, mode: 0o700})
    chownSync(cacheOf(theirs), 65534, 65534) // nobody's: it decides what is in there
    const r = await version({HOME: theirs})
    assert.equal(r.code, 0)
    assert.deepEqual(r.used, [])
    assert.deepEqual(readdirSync(cacheOf(theirs)), [])

    const open = tempDir()
    mkdirSync(cacheOf(open), {recursive: true, mode: 0o700})
    chmodSync(join(open, '.cache'), 0o777) // anyone could swap the folder below for one of theirs
    assert.deepEqual((await version({HOME: open})).used, [])

    const loose = tempDir()
    mkdirSync(cacheOf(loose), {recursive: true, mode: 0o700})
    chmodSync(cacheOf(loose), 0o755)
    assert.deepEqual((await version({HOME: loose})).used, [])
  })

  it('$XDG_CACHE_HOME when it is an absolute path', async () => {
    const xdg = tempDir()
    const r = await sshca(['--version'], {
      env: {HOME: tempDir(), XDG_CACHE_HOME: xdg, NODE_DEBUG_NATIVE: 'COMPILE_CACHE', NODE_COMPILE_CACHE: ''},
    })
    assert.equal(r.code, 0)
    assert.match(r.stderr, new RegExp(`resolved path ${join(xdg, 'sshca', 'node-compile-cache')} `))
  })

  it("list keeps V8's code for its bundle there once it ran: 0600, used as it is, replaced when V8 refuses it", async () => {
    const home = tempDir()
    // no agent: list fails (exit 5) after its bundle ran, which is all this needs
    const list = async () => (await sshca(['list'], {env: {HOME: home, XDG_CACHE_HOME: '', SSH_AUTH_SOCK: ''}})).code
    const kept = () => readdirSync(cacheOf(home)).filter((f) => f.endsWith('.v8'))
    assert.equal(await list(), 5)
    assert.equal(kept().length, 1, String(kept()))
    const file = kept()[0]!
    assert.ok(file.startsWith(`list-${process.version}-`), file)
    const path = join(cacheOf(home), file)
    const first = statSync(path)
    assert.equal(first.mode & 0o777, 0o600)
    // accepted by V8: left as it is
    assert.equal(await list(), 5)
    assert.equal(statSync(path).ino, first.ino)
    // not V8's code (same length): refused by V8, the command runs from the source, and the file is replaced
    const junk = Buffer.alloc(first.size, 7)
    writeFileSync(path, junk)
    assert.equal(await list(), 5)
    assert.notEqual(statSync(path).ino, first.ino)
    assert.notDeepEqual(readFileSync(path), junk)
    assert.deepEqual(kept(), [file])
  })

  it('no code kept where the folder is not ours', async function () {
    if (userInfo().uid !== 0) this.skip()
    const theirs = tempDir()
    mkdirSync(cacheOf(theirs), {recursive: true, mode: 0o700})
    chownSync(cacheOf(theirs), 65534, 65534)
    const r = await sshca(['list'], {env: {HOME: theirs, XDG_CACHE_HOME: '', SSH_AUTH_SOCK: ''}})
    assert.equal(r.code, 5)
    assert.deepEqual(readdirSync(cacheOf(theirs)), [])
  })

  it('a bundle rewritten in place at the same length, size and modification time runs as rewritten, not from the kept code', async () => {
    // a copy of the entry and the list bundle (it needs nothing else of the package), so the bundle can be rewritten
    const pkg = tempDir()
    mkdirSync(join(pkg, 'bin'))
    mkdirSync(join(pkg, 'dist', 'fast'), {recursive: true})
    copyFileSync(join(ROOT, 'bin', 'run.cjs'), join(pkg, 'bin', 'run.cjs'))
    copyFileSync(join(ROOT, 'package.json'), join(pkg, 'package.json'))
    const bundle = join(pkg, 'dist', 'fast', 'list.cjs')
    copyFileSync(join(ROOT, 'dist', 'fast', 'list.cjs'), bundle)
    const when = 1_700_000_000 // whole seconds: the modification time is put back to the nanosecond
    utimesSync(bundle, when, when)
    const home = tempDir()
    const list = () =>
      run(process.execPath, [join(pkg, 'bin', 'run.cjs'), 'list'], {
        env: {...process.env, HOME: home, XDG_CACHE_HOME: '', SSH_AUTH_SOCK: ''},
      })
    assert.match((await list()).stderr, /SSH_AUTH_SOCK is not set/)
    assert.equal(readdirSync(cacheOf(home)).filter((f) => f.endsWith('.v8')).length, 1)
    const before = statSync(bundle, {bigint: true})
    // the same inode, length and modification time; only the text differs (and the change time, which no tool sets)
    writeFileSync(bundle, readFileSync(bundle, 'utf8').replace('SSH_AUTH_SOCK is not set', 'SSH_AUTH_SOCK is PATCHED'))
    utimesSync(bundle, when, when)
    const after = statSync(bundle, {bigint: true})
    assert.deepEqual([after.ino, after.size, after.mtimeNs], [before.ino, before.size, before.mtimeNs])
    assert.match((await list()).stderr, /SSH_AUTH_SOCK is PATCHED/)
  })

  it("root with another user's HOME makes nothing in it", async function () {
    if (userInfo().uid !== 0) this.skip()
    const theirs = tempDir()
    chownSync(theirs, 65534, 65534)
    const r = await sshca(['list'], {env: {HOME: theirs, XDG_CACHE_HOME: '', SSH_AUTH_SOCK: ''}})
    assert.equal(r.code, 5)
    assert.equal(existsSync(join(theirs, '.cache')), false)
  })
})
