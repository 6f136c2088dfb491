/**
 * `npm run test:dist` (not part of `npm test`): the single executable `npm run build:sea` makes,
 * run with no `node` anywhere on PATH against a real test CA, GitHub-shaped issuer and ssh-agent:
 * --version, bootstrap, login --identity-token-file (the fast path, and oclif's), list, inspect, and
 * the keyring it does not carry. Builds it first unless SSHCA_SEA_BIN names one already built.
 * Prints its size and its start-up time next to bare Node.js's.
 */
import assert from 'node:assert/strict'
import {execFileSync, spawn} from 'node:child_process'
import {existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {ROOT} from '../helpers/cli.ts'
import {sshAdd} from '../helpers/openssh.ts'
import {run, runOk, waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {startWorld, type World} from '../helpers/world.ts'

const NODE_24 = join(ROOT, 'node_modules', 'node', 'bin', 'node')
const {version} = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {version: string}

/** A PATH of one folder holding only the OpenSSH tools sshca runs: no node. */
function pathWithoutNode(): string {
  const dir = tempDir('sshca-sea-path-')
  const bin = join(dir, 'bin')
  mkdirSync(bin)
  for (const tool of ['ssh', 'ssh-add', 'ssh-agent', 'ssh-keygen']) {
    const real = execFileSync('sh', ['-c', `command -v ${tool}`], {encoding: 'utf8'}).trim()
    symlinkSync(real, join(bin, tool))
  }
  return bin
}

/** Median wall time of `n` runs of a command, in ms. */
function medianMs(cmd: string, args: string[], n = 7, env: NodeJS.ProcessEnv = process.env): number {
  const times: number[] = []
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint()
    execFileSync(cmd, args, {stdio: 'ignore', env})
    times.push(Number(process.hrtime.bigint() - t) / 1e6)
  }
  return times.sort((a, b) => a - b)[Math.floor(n / 2)]!
}

describe('the single executable', function () {
  this.timeout(300_000)
  let exe = process.env.SSHCA_SEA_BIN ?? ''
  let w: World
  let env: NodeJS.ProcessEnv

  before(async function () {
    this.timeout(300_000)
    if (!exe) {
      const started = Date.now()
      const r = await runOk(NODE_24, [join(ROOT, 'scripts', 'sea', 'build.ts')], {cwd: ROOT, timeoutMs: 280_000})
      process.stderr.write(
        `      (${r.stdout.trim()}; the test waited ${((Date.now() - started) / 1000).toFixed(1)} s)\n`,
      )
      exe = join(ROOT, 'build', 'sea', 'sshca')
    }
    assert.ok(existsSync(exe), `${exe} is missing`)
    w = await startWorld()
    // only what a machine without Node.js has: the OpenSSH tools, and HOME/SSHCA_HOME/SSH_AUTH_SOCK
    env = {...w.env, PATH: pathWithoutNode(), NO_COLOR: '1'}
    delete env.SSHCA_KEYRING // the executable's own choice is under test
  })
  after(async () => w?.stop())

  const sea = (args: string[], extra: NodeJS.ProcessEnv = {}) =>
    run(exe, args, {env: {...env, ...extra}, timeoutMs: 60_000})

  it('has no node to fall back on', async () => {
    const r = await run('/bin/sh', ['-c', 'command -v node || echo none'], {env})
    assert.equal(r.stdout.trim(), 'none')
  })

  it('--version says it is the single executable, which Node.js is inside, and where refresh tokens go', async () => {
    const r = await sea(['--version'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(
      r.stdout,
      new RegExp(
        `^sshca ${version.replace(/\./g, '\\.')}\n {2}installed: +the single executable ${exe} \\(Node\\.js v24\\.`,
      ),
    )
    assert.match(
      r.stdout,
      /refresh tokens: 0600 files under \$SSHCA_HOME\/tokens \(the single executable carries no OS keyring module\)/,
    )
    const json = JSON.parse((await sea(['--version', '--json'])).stdout)
    assert.equal(json.installed.kind, 'single-executable')
  })

  it('bootstraps, then logs in with an identity token (fast path) and lists the certificate in the agent', async () => {
    const boot = await sea([
      'bootstrap',
      '--ca-url',
      w.t.url,
      '--fingerprint',
      w.t.init.rootFingerprint,
      '--context',
      'test',
    ])
    assert.equal(boot.code, 0, boot.stderr)
    const dir = tempDir()
    writeFileSync(join(dir, 'token'), await w.gh.mint({}), {mode: 0o600})
    const login = await sea(['login', '--identity-token-file', join(dir, 'token'), '--json'])
    assert.equal(login.code, 0, login.stderr)
    assert.ok(JSON.parse(login.stdout).certificate.principals.length > 0, login.stdout)
    assert.match((await sshAdd(w.agent, ['-L'])).stdout, /cert-v01@openssh\.com/)
    const list = await sea(['list', '--json'])
    assert.equal(list.code, 0, list.stderr)
    assert.ok(
      JSON.parse(list.stdout).certificates.some((c: {keyId: string}) => /^gha:acme\/app:/.test(c.keyId)),
      list.stdout,
    )
  })

  it('takes the oclif path too: login --no-agent --out (no fast path), then inspect checks the file', async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'token'), await w.gh.mint({}), {mode: 0o600})
    const login = await sea(
      ['login', '--identity-token-file', join(dir, 'token'), '--no-agent', '--out', join(dir, 'k')],
      {SSHCA_NO_FAST_PATH: '1'},
    )
    assert.equal(login.code, 0, login.stderr)
    assert.equal(statSync(join(dir, 'k')).mode & 0o777, 0o600)
    const inspect = await sea(['inspect', join(dir, 'k-cert.pub')])
    assert.equal(inspect.code, 0, inspect.stderr)
    assert.match(inspect.stdout, /Key ID: "gha:acme\/app:/)
    assert.match(inspect.stdout, /signature.*(valid|good|verified)/i)
    const denied = await sea(['login', '--identity-token-file', join(dir, 'token')])
    assert.equal(denied.code, 7, 'the same token twice is a replay the CA refuses')
    // oclif's help, through the help class the executable carries (src/cli/help.ts)
    assert.match((await sea(['list', '--help'])).stdout, /USAGE/)
    const unknown = await sea(['lsit', '--help'])
    assert.equal(unknown.code, 2, unknown.stderr)
    assert.match(unknown.stderr, /ERR_USAGE.*"lsit" is not an sshca command/)
  })

  it('refuses SSHCA_KEYRING=keyring plainly (exit 9), since it carries no keyring', async () => {
    const r = await sea(['logout', '--all'], {SSHCA_KEYRING: 'keyring'})
    assert.equal(r.code, 9, r.stderr)
    assert.match(r.stderr, /ERR_KEYRING_UNAVAILABLE/)
  })

  it('runs a CA: ca init, ca serve (its SQLite checkpointer worker included), and a bootstrap against it', async () => {
    const dir = tempDir('sshca-sea-ca-')
    writeFileSync(join(dir, 'pw'), 'correct horse battery staple\n', {mode: 0o600})
    const init = await sea(['ca', 'init', '--dir', join(dir, 'ca'), '--password-file', join(dir, 'pw'), '--json'])
    assert.equal(init.code, 0, init.stderr)
    const {rootFingerprint} = JSON.parse(init.stdout) as {rootFingerprint: string}
    const child = spawn(
      exe,
      [
        'ca',
        'serve',
        '--config',
        join(dir, 'ca', 'ca.yaml'),
        '--password-file',
        join(dir, 'pw'),
        '--address',
        '127.0.0.1:0',
        '--json',
      ],
      {env, stdio: ['ignore', 'pipe', 'pipe']},
    )
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    try {
      await waitFor(
        'ca serve to print its address',
        () => child.exitCode !== null || /"url": "https:\/\/127\.0\.0\.1:\d+"/.test(out),
        60_000,
      )
      assert.equal(child.exitCode, null, `ca serve exited ${child.exitCode}: ${err}`)
      const url = /"url": "(https:\/\/127\.0\.0\.1:\d+)"/.exec(out)![1]!
      const boot = await sea(['bootstrap', '--ca-url', url, '--fingerprint', rootFingerprint, '--context', 'own'])
      assert.equal(boot.code, 0, boot.stderr)
      // the checkpointer's worker starts with the server (it crashed it when started from a file the
      // executable does not have): still serving for a second client, and nothing on stderr but warnings
      const again = await sea(['bootstrap', '--ca-url', url, '--fingerprint', rootFingerprint, '--context', 'own2'])
      assert.equal(again.code, 0, again.stderr)
      assert.equal(child.exitCode, null, `ca serve exited ${child.exitCode}: ${err}`)
      assert.doesNotMatch(err, /Error|SyntaxError/)
    } finally {
      child.kill('SIGTERM')
      await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)))
    }
  })

  it('sshca demo --auto: the development IdP (oidc-provider) is in the bundle too', async () => {
    const r = await sea(['demo', '--auto', '--json'], {SSH_AUTH_SOCK: '', DISPLAY: ''})
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.equal(doc.list.certificates.length, 1)
    assert.equal(doc.agent, 'private')
  })

  it('size and start-up time, next to bare Node.js (printed)', () => {
    const size = statSync(exe).size
    const bare = medianMs(NODE_24, ['-e', ''])
    const version = medianMs(exe, ['--version'])
    const help = medianMs(exe, ['list', '--help'], 5)
    const list = medianMs(exe, ['list', '--json'], 7, env)
    const npmVersion = medianMs(NODE_24, [join(ROOT, 'bin', 'run.js'), '--version'])
    process.stderr.write(
      `      (size ${(size / 1024 / 1024).toFixed(1)} MB; median start-up: bare node -e '' ${bare.toFixed(0)} ms, ` +
        `sshca --version ${version.toFixed(0)} ms (×${(version / bare).toFixed(1)}), sshca list --json (fast path, one certificate) ${list.toFixed(0)} ms (×${(list / bare).toFixed(1)}), sshca list --help (oclif) ${help.toFixed(0)} ms (×${(help / bare).toFixed(1)}); ` +
        `the checkout's bin/run.js --version ${npmVersion.toFixed(0)} ms)\n`,
    )
    assert.ok(size > 0)
  })
})
