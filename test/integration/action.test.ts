/**
 * The GitHub Action (action.yml → action/run.sh) in a faked runner: GITHUB_ENV/OUTPUT/PATH files,
 * RUNNER_TEMP, and the job's OIDC endpoint (ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN) served by a
 * GitHub-shaped test issuer, against a real test CA and a real ssh-agent the script starts itself.
 * sshca is the checkout's (install: none); the npm and executable installs are what test:dist covers.
 */
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:https'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'
import {parse} from 'yaml'
import {createIntermediate, createRoot, createTlsCert} from '../../src/ca/keys/pki.ts'
import {BIN, ROOT} from '../helpers/cli.ts'
import {sshAdd} from '../helpers/openssh.ts'
import {run} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {startWorld, type World} from '../helpers/world.ts'

const SCRIPT = join(ROOT, 'action', 'run.sh')

/** The `name=value` lines of a GITHUB_ENV / GITHUB_OUTPUT file. */
const lines = (file: string): Record<string, string> =>
  Object.fromEntries(
    readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  )

describe('the GitHub Action', function () {
  this.timeout(120_000)
  let w: World
  before(async () => {
    w = await startWorld()
  })
  after(async () => w?.stop())

  /** A runner's step environment; sshca on PATH is a wrapper around the checkout's bin/run.js. */
  function runner(inputs: Record<string, string>) {
    const dir = tempDir('sshca-runner-')
    const bin = join(dir, 'bin')
    mkdirSync(bin)
    writeFileSync(join(bin, 'sshca'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`)
    chmodSync(join(bin, 'sshca'), 0o755)
    const files = {env: join(dir, 'env'), output: join(dir, 'output'), path: join(dir, 'path')}
    for (const f of Object.values(files)) writeFileSync(f, '')
    const temp = join(dir, 'runner-temp')
    mkdirSync(temp)
    const env: NodeJS.ProcessEnv = {
      PATH: `${bin}:/usr/local/bin:/usr/bin:/bin`,
      HOME: join(dir, 'home'),
      NO_COLOR: '1',
      GITHUB_ENV: files.env,
      GITHUB_OUTPUT: files.output,
      GITHUB_PATH: files.path,
      GITHUB_ACTION_PATH: ROOT,
      RUNNER_TEMP: temp,
      ACTIONS_ID_TOKEN_REQUEST_URL: `${w.gh.issuer}/token?api-version=2.0`,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: w.gh.requestToken,
      DBUS_SESSION_BUS_ADDRESS: '',
      ...Object.fromEntries(Object.entries(inputs).map(([k, v]) => [`INPUT_${k.toUpperCase().replace(/-/g, '_')}`, v])),
    }
    return {env, files, temp}
  }

  it('action.yml passes every input to the script as INPUT_*, and takes its outputs from the step', () => {
    const action = parse(readFileSync(join(ROOT, 'action.yml'), 'utf8'))
    assert.equal(action.runs.using, 'composite')
    const step = action.runs.steps[0]
    assert.equal(step.run, '"$GITHUB_ACTION_PATH/action/run.sh"')
    for (const name of Object.keys(action.inputs)) {
      assert.equal(step.env[`INPUT_${name.toUpperCase().replace(/-/g, '_')}`], `\${{ inputs.${name} }}`, name)
    }
    for (const name of ['ca-url', 'fingerprint', 'provisioner', 'audience']) assert.ok(action.inputs[name], name)
    for (const name of ['principals', 'expires'])
      assert.equal(action.outputs[name].value, `\${{ steps.${step.id}.outputs.${name} }}`)
    const script = readFileSync(SCRIPT, 'utf8')
    for (const name of Object.keys(action.inputs))
      assert.match(script, new RegExp(`INPUT_${name.toUpperCase().replace(/-/g, '_')}\\b`), `run.sh ignores ${name}`)
  })

  it('end to end: starts an agent, bootstraps by fingerprint, logs in with the job token, writes outputs and env', async () => {
    const r = runner({
      'ca-url': w.t.url,
      fingerprint: w.t.init.rootFingerprint,
      provisioner: 'ci',
      audience: 'sshca-ci',
      install: 'none',
      'host-pattern': '*.example.com',
    })
    const res = await run('bash', [SCRIPT], {env: r.env, timeoutMs: 60_000})
    const env = lines(r.files.env)
    try {
      assert.equal(res.code, 0, res.stderr)
      const out = lines(r.files.output)
      assert.ok(out.principals && out.principals.length > 0)
      assert.match(out['key-id']!, /^gha:acme\/app:\d+$/)
      assert.ok(
        Date.parse(out.expires!) > Date.now() && Date.parse(out.expires!) <= Date.now() + 15 * 60_000,
        out.expires,
      )
      assert.match(out.serial!, /^\d+$/)
      assert.equal(env.SSHCA_HOME, join(r.temp, 'sshca-home'))
      assert.ok(env.SSH_AUTH_SOCK!.startsWith(r.temp))
      assert.match(env.SSH_AGENT_PID!, /^\d+$/)
      // sshca config ran: the job's ssh trusts the CA's host certificates
      assert.match(
        readFileSync(join(r.env.HOME!, '.ssh', 'known_hosts'), 'utf8'),
        /^@cert-authority \*\.example\.com ssh-/m,
      )
      const keys = await sshAdd({socket: env.SSH_AUTH_SOCK!}, ['-L'])
      assert.match(keys.stdout, /cert-v01@openssh\.com/)
      // a later step's `sshca list` sees it through what the action exported
      const list = await run(process.execPath, [BIN, 'list', '--json'], {
        env: {...r.env, SSHCA_HOME: env.SSHCA_HOME, SSH_AUTH_SOCK: env.SSH_AUTH_SOCK},
      })
      assert.equal(JSON.parse(list.stdout).certificates[0].keyId, out['key-id'])
    } finally {
      if (env.SSH_AGENT_PID) process.kill(Number(env.SSH_AGENT_PID), 'SIGTERM')
    }
  })

  it('a wrong fingerprint stops it before any login: an ::error line, a failed step, no outputs', async () => {
    const r = runner({'ca-url': w.t.url, fingerprint: 'ab'.repeat(32), install: 'none'})
    const res = await run('bash', [SCRIPT], {env: r.env, timeoutMs: 60_000})
    const env = lines(r.files.env)
    if (env.SSH_AGENT_PID) process.kill(Number(env.SSH_AGENT_PID), 'SIGTERM')
    assert.notEqual(res.code, 0)
    assert.match(res.stderr, /ERR_FINGERPRINT_MISMATCH|fingerprint/i)
    assert.equal(readFileSync(r.files.output, 'utf8'), '')
  })

  it('install: executable downloads over https, runs it only when its SHA-256 matches', async () => {
    // the "executable" is a wrapper around the checkout's CLI, served from a loopback https server
    const exe = Buffer.from(`#!/bin/sh\nexec "${process.execPath}" "${BIN}" "$@"\n`)
    const root = await createRoot('Action test downloads')
    const mid = await createIntermediate('Action test downloads', root)
    const leaf = await createTlsCert(['127.0.0.1'], mid)
    const server = createServer(
      {key: leaf.key.export({type: 'pkcs8', format: 'pem'}) as string, cert: leaf.pem + mid.pem},
      (_req, res) => res.end(exe),
    )
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/sshca-linux-x64`
    const caFile = join(tempDir(), 'root.pem')
    writeFileSync(caFile, root.pem)
    const sha = createHash('sha256').update(exe).digest('hex')
    try {
      const inputs = {
        'ca-url': w.t.url,
        fingerprint: w.t.init.rootFingerprint,
        audience: 'sshca-ci',
        install: 'executable',
        'executable-url': url,
        'ssh-config': 'false',
      }
      // a different file than the one named: refused before it runs, and not left on PATH
      const bad = runner({...inputs, 'executable-sha256': createHash('sha256').update('something else').digest('hex')})
      bad.env.PATH = '/usr/local/bin:/usr/bin:/bin'
      bad.env.CURL_CA_BUNDLE = caFile
      const refused = await run('bash', [SCRIPT], {env: bad.env, timeoutMs: 60_000})
      assert.equal(refused.code, 1, refused.stderr)
      assert.match(refused.stderr, /does not have the SHA-256 executable-sha256 names: not run/)
      assert.deepEqual(readdirSync(join(bad.temp, 'sshca-bin')), [])
      assert.equal(readFileSync(bad.files.path, 'utf8'), '')
      // the right one: installed 0755 on the job's PATH, and the login goes through
      const good = runner({...inputs, 'executable-sha256': sha.toUpperCase()})
      good.env.PATH = '/usr/local/bin:/usr/bin:/bin'
      good.env.CURL_CA_BUNDLE = caFile
      const ok = await run('bash', [SCRIPT], {env: good.env, timeoutMs: 60_000})
      const env = lines(good.files.env)
      if (env.SSH_AGENT_PID) process.kill(Number(env.SSH_AGENT_PID), 'SIGTERM')
      assert.equal(ok.code, 0, ok.stderr)
      assert.equal(readFileSync(good.files.path, 'utf8'), `${join(good.temp, 'sshca-bin')}\n`)
      assert.equal(statSync(join(good.temp, 'sshca-bin', 'sshca')).mode & 0o777, 0o755)
      assert.match(lines(good.files.output)['key-id']!, /^gha:acme\/app:/)
      assert.equal(existsSync(join(good.env.HOME!, '.ssh')), false, 'ssh-config: false leaves ~/.ssh alone')
    } finally {
      server.close()
    }
  })

  it('refuses bad inputs: no fingerprint, an http:// CA, an executable without its SHA-256', async () => {
    for (const [inputs, message] of [
      [{'ca-url': w.t.url, install: 'none'}, /the fingerprint input is required/],
      [
        {'ca-url': w.t.url.replace('https:', 'http:'), fingerprint: w.t.init.rootFingerprint, install: 'none'},
        /ca-url must be https:\/\//,
      ],
      [
        {
          'ca-url': w.t.url,
          fingerprint: w.t.init.rootFingerprint,
          install: 'executable',
          'executable-url': 'https://example.invalid/sshca',
        },
        /needs executable-url and executable-sha256/,
      ],
      [
        {'ca-url': w.t.url, fingerprint: w.t.init.rootFingerprint, install: 'npm', version: 'latest; rm -rf /'},
        /version must be an exact sshca version/,
      ],
    ] as const) {
      const r = runner(inputs)
      const res = await run('bash', [SCRIPT], {env: r.env})
      assert.equal(res.code, 1, res.stderr)
      assert.match(res.stderr, /^::error title=sshca::/m)
      assert.match(res.stderr, message)
    }
  })
})
