/**
 * bin/run.js takes `list` and `login --identity-token-file` without loading oclif. Whatever path a
 * command line takes, it must print the same and exit the same; anything the fast path does not fully
 * understand must reach oclif.
 */
import assert from 'node:assert/strict'
import {readFileSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {revoke} from '../../src/ca/admin.ts'
import {ROOT, sshca} from '../helpers/cli.ts'
import {run as runProcess} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {startWorld, type World} from '../helpers/world.ts'

/** Normalizes what legitimately differs between two logins: serials, times, request ids. */
function norm(s: string): string {
  return s
    .replace(/\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?Z?/g, 'TIME')
    .replace(/"serial": "\d+"/g, '"serial": "N"')
    .replace(/"fingerprint": "SHA256:[^"]+"/g, '"fingerprint": "FP"')
    .replace(/"secondsLeft": \d+|"lifetimeSeconds": \d+/g, 'SECONDS')
    .replace(/gha:acme\/app:\d+/g, 'gha:acme/app:RUN')
    .replace(/\d+m\d+s|\d+h\d+m|\d+ s\b/g, 'DURATION')
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, 'UUID')
}

describe('fast path and oclif print the same', function () {
  this.timeout(90_000)
  let w: World
  before(async () => {
    w = await startWorld()
    await w.bootstrap()
  })
  after(async () => w?.stop())

  async function both(args: (tokenFile: string) => string[], tokenClaims: Record<string, unknown> = {}) {
    const dir = tempDir()
    const a = join(dir, 'a')
    const b = join(dir, 'b')
    writeFileSync(a, await w.gh.mint(tokenClaims), {mode: 0o600})
    writeFileSync(b, await w.gh.mint(tokenClaims), {mode: 0o600})
    const fast = await sshca(args(a), {env: w.env})
    const slow = await sshca(args(b), {env: {...w.env, SSHCA_NO_FAST_PATH: '1'}})
    return {fast, slow}
  }

  for (const extra of [
    [],
    ['--json'],
    ['--kty', 'ecdsa'],
    ['--force', '--json'],
    ['--context', 'test'],
    ['--provisioner', 'ci'],
  ]) {
    it(`login --identity-token-file F ${extra.join(' ')}`, async () => {
      const {fast, slow} = await both((f) => ['login', '--identity-token-file', f, ...extra])
      assert.equal(fast.code, 0, fast.stderr)
      assert.equal(slow.code, 0, slow.stderr)
      assert.equal(norm(fast.stdout), norm(slow.stdout))
      assert.equal(norm(fast.stderr), norm(slow.stderr))
    })
  }

  it('login --no-agent --out F: same files, same output', async () => {
    const dir = tempDir()
    const {fast, slow} = await both((f) => [
      'login',
      '--identity-token-file',
      f,
      '--no-agent',
      '--out',
      join(dir, f.endsWith('a') ? 'ka' : 'kb'),
    ])
    assert.equal(fast.code, 0, fast.stderr)
    assert.equal(norm(fast.stdout).replace(/\/k[ab]/g, '/K'), norm(slow.stdout).replace(/\/k[ab]/g, '/K'))
  })

  it('the same errors and exit codes: CA denial, empty token, missing file, unknown context', async () => {
    const denied = await both((f) => ['login', '--identity-token-file', f], {repository: 'acme/other'})
    assert.equal(denied.fast.code, 7)
    assert.equal(norm(denied.fast.stderr), norm(denied.slow.stderr))
    const dir = tempDir()
    writeFileSync(join(dir, 'empty'), '', {mode: 0o600})
    for (const args of [
      ['login', '--identity-token-file', join(dir, 'empty')],
      ['login', '--identity-token-file', join(dir, 'missing')],
      ['login', '--identity-token-file', join(dir, 'empty'), '--context', 'nope'],
      ['login', '--identity-token-file', join(dir, 'missing'), '--json'],
    ]) {
      const fast = await sshca(args, {env: w.env})
      const slow = await sshca(args, {env: {...w.env, SSHCA_NO_FAST_PATH: '1'}})
      assert.notEqual(fast.code, 0)
      assert.deepEqual(
        {code: fast.code, out: fast.stdout, err: fast.stderr},
        {code: slow.code, out: slow.stdout, err: slow.stderr},
        args.join(' '),
      )
    }
  })

  it('hands oclif what it does not fully understand: help, usage errors, other flags', async () => {
    for (const args of [
      ['login', '--identity-token-file', 'x', '--help'],
      ['login', '--identity-token-file', 'x', '--kty', 'dsa'],
      ['login', '--identity-token-file', 'x', '--no-agent'],
      ['login', '--identity-token-file'],
      ['login', '--identity-token-file', 'x', '--bogus'],
    ]) {
      const fast = await sshca(args, {env: w.env})
      const slow = await sshca(args, {env: {...w.env, SSHCA_NO_FAST_PATH: '1'}})
      assert.deepEqual(
        {code: fast.code, out: fast.stdout, err: fast.stderr},
        {code: slow.code, out: slow.stdout, err: slow.stderr},
        args.join(' '),
      )
    }
  })

  it('bin/run.js, the entry units and scripts of sshca 0.1 name, still runs the CLI (through bin/run.cjs)', async () => {
    // nothing here depends on the second it runs in (list's JSON counts the seconds left)
    for (const args of [['list', '--raw'], ['--version'], ['ca', '--help']]) {
      const old = await runProcess(process.execPath, [join(ROOT, 'bin', 'run.js'), ...args], {
        env: {...process.env, ...w.env},
      })
      const now = await sshca(args, {env: w.env})
      assert.equal(old.code, 0, old.stderr)
      assert.deepEqual({code: old.code, out: old.stdout}, {code: now.code, out: now.stdout}, args.join(' '))
    }
  })

  it('list and login load their bundle from dist/fast and nothing else of the package: no oclif, no other module; list not even node:crypto', async () => {
    // a module hook (node --import) that writes down every file module the process loads (import and
    // require), then whether node:crypto was loaded (src/util/node-crypto.ts says why list must not)
    const dir = tempDir()
    const hook = join(dir, 'hook.mjs')
    writeFileSync(
      hook,
      `import {registerHooks} from 'node:module'
import fs, {appendFileSync} from 'node:fs'
const seen = new Set()
registerHooks({resolve(s, c, next) { const r = next(s, c); seen.add(r.url); return r }})
// bin/run.cjs compiles its bundle itself (to keep V8's code for it): what it reads of the package counts too
const open = fs.openSync
fs.openSync = (f, ...rest) => { if (typeof f === 'string' && /\\.c?js$/.test(f)) seen.add('file://' + f); return open(f, ...rest) }
process.on('exit', () => appendFileSync(process.env.LOADED_OUT, JSON.stringify({files: [...seen].filter((u) => u.startsWith('file:')), crypto: process.moduleLoadList.includes('NativeModule crypto')}) + '\\n'))
`,
    )
    const token = join(dir, 'token')
    writeFileSync(token, await w.gh.mint(), {mode: 0o600})
    let runs = 0
    const run = async (args: string[]): Promise<{files: string[]; crypto: boolean}> => {
      const out = join(dir, `loaded-${++runs}.json`)
      const r = await sshca(args, {env: {...w.env, NODE_OPTIONS: `--import ${hook}`, LOADED_OUT: out}})
      assert.equal(r.code, 0, r.stderr)
      const seen = JSON.parse(readFileSync(out, 'utf8')) as {files: string[]; crypto: boolean}
      const files = seen.files.map((u) => u.replace(`file://${ROOT}/`, '')).filter((u) => !u.endsWith('/hook.mjs'))
      return {files, crypto: seen.crypto}
    }
    for (const args of [['list'], ['list', '--json'], ['login', '--identity-token-file', token]]) {
      // one file, where the unbundled module graph has 18 (list) and 26 or more (login)
      const {files} = await run(args)
      assert.deepEqual(files, ['bin/run.cjs', `dist/fast/${args[0]}.cjs`], args.join(' '))
    }
    // the table names the context by comparing CA keys whole; only --json prints (hashes) fingerprints
    assert.equal((await run(['list'])).crypto, false)
    assert.equal((await run(['list', '--json'])).crypto, true)
    // ssh's Match exec runs `login --ensure` before every connection: with the certificate held, no hash either
    assert.deepEqual(await run(['login', '--ensure']), {files: ['bin/run.cjs', 'dist/fast/login.cjs'], crypto: false})
  })

  it('login writes the KRL only when it changed; an unchanged one gets a new time, not a write', async () => {
    const dir = tempDir()
    const krl = join(w.home, 'contexts', 'test', 'revoked_host_keys.krl')
    const login = async (): Promise<void> => {
      const f = join(dir, `t${Math.random()}`)
      writeFileSync(f, await w.gh.mint(), {mode: 0o600})
      const r = await sshca(['login', '--identity-token-file', f], {env: w.env})
      assert.equal(r.code, 0, r.stderr)
    }
    await login()
    const first = statSync(krl)
    const bytes = readFileSync(krl)
    await login()
    const second = statSync(krl)
    // written files are replaced (a new inode, by rename); this one was not, and is as fresh
    assert.equal(second.ino, first.ino)
    assert.ok(second.mtimeMs >= first.mtimeMs)
    assert.deepEqual(readFileSync(krl), bytes)
    await revoke({configPath: w.t.init.config, keyId: 'gha:acme/app:fast-path-test', reason: 'test'})
    await login()
    const third = statSync(krl)
    assert.notEqual(third.ino, first.ino)
    assert.notDeepEqual(readFileSync(krl), bytes)
    assert.equal(third.mode & 0o777, 0o600)
  })
})
