/**
 * `sshca login` / `logout` / `list` as processes against the real IdP, a real CA and a real ssh-agent.
 * The browser is driven with plain HTTP here (the Chromium test is browser-login.test.ts).
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {existsSync, readFileSync, readdirSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {driveDevSignIn} from '../../src/demo/idp-driver.ts'
import {parseCertificateLine} from '../../src/ssh/cert.ts'
import {sshca} from '../helpers/cli.ts'
import {idToken} from '../helpers/idp-token.ts'
import {keygenShow, sshAdd} from '../helpers/openssh.ts'
import {tempDir} from '../helpers/tmp.ts'
import {spawnSshca, startWorld, type World} from '../helpers/world.ts'

describe('sshca login', function () {
  this.timeout(90_000)
  let w: World
  before(async () => {
    w = await startWorld()
    await w.bootstrap()
  })
  after(async () => w?.stop())
  beforeEach(async () => {
    await sshAdd(w.agent, ['-D'])
  })

  /** A new $SSHCA_HOME with the CA bootstrapped and no saved sign-in. */
  async function fresh(): Promise<NodeJS.ProcessEnv> {
    const env = {...w.env, SSHCA_HOME: join(tempDir('sshca-home-'), 'home')}
    const r = await sshca(
      ['bootstrap', '--ca-url', w.t.url, '--fingerprint', w.t.init.rootFingerprint, '--context', 'test'],
      {env},
    )
    assert.equal(r.code, 0, r.stderr)
    return env
  }

  const agentCerts = async () =>
    (await sshAdd(w.agent, ['-L'])).stdout
      .split('\n')
      .filter((l) => l.includes('-cert-v01@'))
      .map((l) => parseCertificateLine(l))

  it('reads an ID token on stdin as the token, not as the IDENTITY argument (oclif reads stdin into omitted args)', async () => {
    const r = await sshca(['login', '--identity-token-file', '-'], {env: w.env, input: `${await w.gh.mint()}\n`})
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /via identity token/)
  })

  it("--identity-token-file: key + certificate in the agent for the certificate's lifetime", async () => {
    const r = await sshca(['login', '--identity-token-file', '-', '--json'], {env: w.env, input: await w.gh.mint()})
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.equal(doc.method, 'identity-token')
    assert.equal(doc.agent.added, true)
    assert.ok(doc.agent.lifetimeSeconds > 590 && doc.agent.lifetimeSeconds <= 600)
    const [c] = await agentCerts()
    assert.equal(c!.cert.criticalOptions['force-command'], 'echo deployed-by-ci')
    assert.equal(c!.comment, 'sshca:test:token')
    assert.equal(c!.cert.serial.toString(), doc.certificate.serial)
  })

  it('--github-actions: fetches the job token from ACTIONS_ID_TOKEN_REQUEST_URL with the audience', async () => {
    const env = {
      ...w.env,
      ACTIONS_ID_TOKEN_REQUEST_URL: `${w.gh.issuer}/token?api-version=2.0`,
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: w.gh.requestToken,
    }
    const r = await sshca(['login', '--github-actions', '--audience', 'sshca-ci'], {env})
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /via GitHub Actions token/)
    assert.match((await agentCerts())[0]!.cert.keyId, /^gha:acme\/app:\d+$/)
    const bad = await sshca(['login', '--github-actions', '--audience', 'sshca-ci'], {env: w.env})
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /ERR_GITHUB_ACTIONS_ENV[\s\S]*id-token: write/)
  })

  it('browser flow over loopback: prints the URL, signs in, saves the refresh token; next login refreshes without a browser; then skips', async () => {
    const env = await fresh()
    const p = spawnSshca(['login', '--provisioner', 'sso'], env)
    const [url] = await p.waitFor(/^http:\/\/127\.0\.0\.1:\d+\/auth\?\S+$/m)
    const u = new URL(url)
    assert.equal(u.searchParams.get('code_challenge_method'), 'S256')
    assert.match(u.searchParams.get('redirect_uri')!, /^http:\/\/127\.0\.0\.1:\d+\/callback$/)
    assert.ok(u.searchParams.get('state') && u.searchParams.get('nonce'))
    assert.equal(u.searchParams.get('scope'), 'openid email profile offline_access')
    await driveDevSignIn(url, {login: 'alice@example.com'})
    const done = await p.exit()
    assert.equal(done.code, 0, done.stderr)
    assert.match(done.stdout, /Certificate for alice, .* via browser sign-in/)
    assert.deepEqual((await agentCerts())[0]!.cert.principals.slice(0, 1), ['alice'])
    const tokens = join(env.SSHCA_HOME!, 'tokens')
    assert.deepEqual(readdirSync(tokens), ['test~sso.json'])
    assert.equal(statSync(join(tokens, 'test~sso.json')).mode & 0o777, 0o600)

    const again = await sshca(['login', '--provisioner', 'sso', '--force'], {env})
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stderr, /Renewing your sign-in/)
    assert.doesNotMatch(again.stderr, /http:\/\/127\.0\.0\.1:\d+\/auth/)
    assert.match(again.stdout, /via saved sign-in/)

    const skip = await sshca(['login', '--provisioner', 'sso', 'alice', '--json'], {env})
    assert.equal(skip.code, 0, skip.stderr)
    assert.equal(JSON.parse(skip.stdout).skipped, true)
    const human = await sshca(['login', '--provisioner', 'sso'], {env})
    assert.match(human.stdout, /You already have a certificate from "test"[\s\S]*--force/)
    // another identity does not count as "already signed in"
    const other = spawnSshca(['login', '--provisioner', 'sso', 'carol'], {...env, SSHCA_KEYRING: 'file'})
    await other.waitFor(/Renewing your sign-in/)
    assert.equal((await other.exit()).code, 0)
  })

  it('--console: the device flow prints a code and completes when it is confirmed', async () => {
    const p = spawnSshca(['login', '--provisioner', 'sso', '--console'], await fresh())
    const [, uri, code] = await p.waitFor(/open (http:\/\/127\.0\.0\.1:\d+\/device) and enter the code:\s+(\S+)/)
    await driveDevSignIn(uri!, {login: 'bob@example.com', userCode: code!})
    const done = await p.exit()
    assert.equal(done.code, 0, done.stderr)
    assert.match(done.stdout, /Certificate for bob, .* via device code/)
  })

  it('over SSH (no browser can reach 127.0.0.1 here), login says so and uses the device code by itself', async () => {
    // BROWSER unset: the person has said nothing about how to open URLs
    const p = spawnSshca(['login', '--provisioner', 'sso'], {
      ...(await fresh()),
      SSH_CONNECTION: '10.0.0.9 50000 10.0.0.1 22',
      BROWSER: undefined,
    })
    await p.waitFor(
      /No browser here: this is an SSH session, so your browser cannot reach this machine's 127\.0\.0\.1\. Using a device code instead \(what --console does\)\./,
    )
    const [, uri, code] = await p.waitFor(/open (http:\/\/127\.0\.0\.1:\d+\/device) and enter the code:\s+(\S+)/)
    await driveDevSignIn(uri!, {login: 'bob@example.com', userCode: code!})
    const done = await p.exit()
    assert.equal(done.code, 0, done.stderr)
    assert.match(done.stdout, /via device code/)
    assert.doesNotMatch(done.stderr, /\/auth\?/, 'no loopback URL was printed')
  })

  it('says once that the refresh token went to a file (no keyring), not at every login', async () => {
    const env = await fresh()
    const first = spawnSshca(['login', '--provisioner', 'sso', '--console'], env)
    const [, uri, code] = await first.waitFor(/open (http:\/\/127\.0\.0\.1:\d+\/device) and enter the code:\s+(\S+)/)
    await driveDevSignIn(uri!, {login: 'bob@example.com', userCode: code!})
    const one = await first.exit()
    assert.equal(one.code, 0, one.stderr)
    assert.match(
      one.stderr,
      new RegExp(
        `No OS keyring here: your refresh token is kept in ${env.SSHCA_HOME}/tokens/test~sso\\.json \\(0600\\)`,
      ),
    )
    const again = await sshca(['login', '--provisioner', 'sso', '--force'], {env})
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stderr, /Renewing your sign-in/)
    assert.doesNotMatch(again.stderr, /No OS keyring here/)
  })

  it("a callback without this sign-in's state (any local process can send one) is answered 400 and ignored; the sign-in still completes", async () => {
    const env = await fresh()
    const mark = w.t.mark()
    const p = spawnSshca(['login', '--provisioner', 'sso', '--json'], env)
    const [url] = await p.waitFor(/^http:\/\/127\.0\.0\.1:\d+\/auth\?\S+$/m)
    const redirect = new URL(new URL(url).searchParams.get('redirect_uri')!)
    // the attack: a wrong state (with a code), no state at all, and a forged error response
    const forgeries: Record<string, string>[] = [
      {code: 'stolen-code', state: 'not-the-state'},
      {code: 'stolen-code'},
      {error: 'access_denied', state: 'guess'},
    ]
    for (const q of forgeries) {
      const forged = new URL(redirect)
      forged.search = new URLSearchParams(q).toString()
      const page = await fetch(forged)
      assert.equal(page.status, 400)
      assert.match(await page.text(), /did not belong to the sign-in sshca is waiting for, and was ignored/)
    }
    await p.waitFor(/Ignored a request to the sign-in listener[\s\S]*Ignored[\s\S]*Ignored/)
    assert.equal(p.child.exitCode, null, 'still waiting for the real callback')
    await driveDevSignIn(url, {login: 'frank@example.com'})
    const done = await p.exit()
    assert.equal(done.code, 0, done.stderr)
    assert.equal(JSON.parse(done.stdout).method, 'browser')
    assert.deepEqual(
      (await agentCerts()).map((c) => c.cert.keyId),
      ['frank@example.com'],
    )
    assert.deepEqual(
      w.t
        .since(mark)
        .filter((l) => l.event === 'certificate_issued')
        .map((l) => l.key_id),
      ['frank@example.com'],
    )
  })

  it('an error response from the IdP: ERR_IDP_ERROR (exit 8)', async () => {
    const p = spawnSshca(['login', '--provisioner', 'sso'], await fresh())
    const [url] = await p.waitFor(/^http:\/\/127\.0\.0\.1:\d+\/auth\?\S+$/m)
    const u = new URL(url)
    const redirect = new URL(u.searchParams.get('redirect_uri')!)
    redirect.search = new URLSearchParams({
      error: 'access_denied',
      error_description: 'the user said no',
      state: u.searchParams.get('state')!,
    }).toString()
    assert.equal((await fetch(redirect)).status, 400)
    const done = await p.exit()
    assert.equal(done.code, 8)
    assert.match(done.stderr, /ERR_IDP_ERROR.*access_denied \(the user said no\)/)
  })

  it('a sign-in nobody completes times out (exit 8) with a hint', async () => {
    const r = await sshca(['login', '--provisioner', 'sso', '--timeout', '2'], {env: await fresh()})
    assert.equal(r.code, 8)
    assert.match(r.stderr, /ERR_LOGIN_TIMEOUT\]: no sign-in within 2 s/)
    assert.match(r.stderr, /--console/)
  })

  it('Ctrl-C while waiting exits cleanly with 130', async () => {
    const p = spawnSshca(['login', '--provisioner', 'sso'], await fresh())
    await p.waitFor(/Waiting for you to sign in/)
    p.child.kill('SIGINT')
    const done = await p.exit()
    assert.equal(done.code, 130)
    assert.match(done.stderr, /ERR_LOGIN_CANCELLED/)
  })

  it('a CA denial says the policy denied, with the request id (exit 7)', async () => {
    const {idToken: ott} = await idToken(w.idp.issuer, {clientId: 'sshca-cli', login: 'mallory@evil.io'})
    const r = await sshca(['login', '--identity-token-file', '-'], {env: w.env, input: ott})
    assert.equal(r.code, 7)
    assert.match(r.stderr, /ERR_CA_DENIED\]: the CA policy denied the request: .* \(request id [0-9a-f-]{36}\)/)
    const id = /request id ([0-9a-f-]{36})/.exec(r.stderr)![1]
    assert.ok(w.t.audit().some((l) => l.request_id === id && l.reason === 'no_rule_matched'))
  })

  it('without an agent: ERR_AGENT_UNAVAILABLE (exit 5) before any browser', async () => {
    const r = await sshca(['login', '--provisioner', 'sso'], {env: {...w.env, SSH_AUTH_SOCK: ''}})
    assert.equal(r.code, 5)
    assert.match(r.stderr, /ERR_AGENT_UNAVAILABLE[\s\S]*ssh-agent -s/)
    assert.doesNotMatch(r.stderr, /\/auth\?/)
  })

  for (const args of [['login'], ['hosts'], ['check-host', 'web1.example.com']]) {
    // once, sshca waited in its read of a FIFO nobody wrote to (and Ctrl-C did nothing): a token file
    // must now be a regular file only its owner can read, so a FIFO is refused before any read
    it(`\`sshca ${args[0]}\` refuses a FIFO as its identity token file at once, without waiting on it`, async () => {
      const env = await fresh()
      const fifo = join(tempDir(), 'token')
      assert.equal(spawnSync('mkfifo', ['-m', '600', fifo]).status, 0)
      const p = spawnSshca([...args, '--identity-token-file', fifo], env)
      try {
        // the test's timeout bounds it: nobody ever writes to the FIFO
        const r = await p.exit()
        assert.notEqual(r.code, 0)
        assert.match(r.stderr, /ERR_INPUT\][^\n]*not a regular file/)
      } finally {
        p.child.kill('SIGKILL')
      }
    })
  }

  it('--no-agent --out writes the key (0600) and FILE-cert.pub', async () => {
    const out = join(tempDir(), 'deploy_key')
    const r = await sshca(['login', '--identity-token-file', '-', '--no-agent', '--out', out], {
      env: {...w.env, SSH_AUTH_SOCK: ''},
      input: await w.gh.mint(),
    })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(statSync(out).mode & 0o777, 0o600)
    const shown = await keygenShow(`${out}-cert.pub`)
    assert.deepEqual(shown.criticalOptions, ['force-command echo deployed-by-ci', 'source-address 127.0.0.1/32'])
    assert.match(readFileSync(out, 'utf8'), /^-----BEGIN OPENSSH PRIVATE KEY-----/)
  })

  it('list names the bootstrapped CA; logout removes its certificates and forgets the saved sign-in', async () => {
    const env = await fresh()
    const p = spawnSshca(['login', '--provisioner', 'sso'], env)
    await driveDevSignIn((await p.waitFor(/^http:\/\/127\.0\.0\.1:\d+\/auth\?\S+$/m))[0], {login: 'dave@example.com'})
    assert.equal((await p.exit()).code, 0)
    assert.equal(existsSync(join(env.SSHCA_HOME!, 'tokens', 'test~sso.json')), true)
    await sshca(['login', '--identity-token-file', '-'], {env, input: await w.gh.mint()})
    const list = await sshca(['list'], {env})
    assert.match(list.stdout, /gha:acme\/app:\d+\s+\S+\s+.*\s+test$/m)
    const out = await sshca(['logout', '--json'], {env})
    assert.equal(out.code, 0, out.stderr)
    const doc = JSON.parse(out.stdout)
    assert.equal(doc.removed.length, 2)
    assert.equal(doc.forgottenRefreshTokens, 1)
    assert.deepEqual(await agentCerts(), [])
    assert.equal(existsSync(join(env.SSHCA_HOME!, 'tokens', 'test~sso.json')), false)
  })

  it('logout without an agent still forgets the saved sign-in, then says the agent was out of reach', async () => {
    const env = await fresh()
    const p = spawnSshca(['login', '--provisioner', 'sso'], env)
    await driveDevSignIn((await p.waitFor(/^http:\/\/127\.0\.0\.1:\d+\/auth\?\S+$/m))[0], {login: 'erin@example.com'})
    assert.equal((await p.exit()).code, 0)
    const saved = join(env.SSHCA_HOME!, 'tokens', 'test~sso.json')
    assert.equal(existsSync(saved), true)
    // once, logout failed on the agent first and kept the refresh token: the next login needed no password
    const out = await sshca(['logout', '--json'], {env: {...env, SSH_AUTH_SOCK: ''}})
    assert.equal(out.code, 5, out.stderr)
    const {error} = JSON.parse(out.stdout)
    assert.equal(error.code, 'ERR_AGENT_UNAVAILABLE')
    assert.match(
      error.message,
      /^forgot 1 saved sign-in\(s\).*could not remove certificates from the ssh-agent: no ssh-agent/,
    )
    assert.equal(error.details.forgottenRefreshTokens, 1)
    assert.equal(existsSync(saved), false)
    // the certificate is still in the agent it could not reach: the next logout with it removes it
    assert.equal((await agentCerts()).length, 1)
    const again = await sshca(['logout', '--json'], {env})
    assert.equal(again.code, 0, again.stderr)
    assert.equal(JSON.parse(again.stdout).removed.length, 1)
  })
})
