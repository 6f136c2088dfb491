/**
 * The browser flow for real: `sshca login` prints the authorization URL; headless Chromium signs in
 * on oidc-provider's own pages and follows the redirect to the CLI's 127.0.0.1 listener, which shows
 * the success page; the certificate ends up in a real ssh-agent. And another local user (uid 65534)
 * who reads that URL off the browser's command line tries to complete or abort the sign-in.
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import type {Browser} from 'playwright-core'
import {driveDevSignIn} from '../../src/demo/idp-driver.ts'
import {parseCertificateLine} from '../../src/ssh/cert.ts'
import {launchChromium} from '../helpers/browser.ts'
import {sshca} from '../helpers/cli.ts'
import {sshAdd} from '../helpers/openssh.ts'
import {tempDir} from '../helpers/tmp.ts'
import {spawnSshca, startWorld, type World} from '../helpers/world.ts'

describe('sshca login in a real browser (headless Chromium)', function () {
  this.timeout(120_000)
  let w: World
  let browser: Browser

  before(async () => {
    w = await startWorld()
    browser = await launchChromium()
  })
  after(async () => {
    await browser?.close()
    await w?.stop()
  })

  async function signIn(url: string, login: string): Promise<string> {
    const page = await browser.newPage()
    try {
      await page.goto(url)
      await page.fill('input[name="login"]', login)
      await page.fill('input[name="password"]', 'any password')
      await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')])
      // the consent page
      await page.waitForSelector('button[type="submit"]')
      await Promise.all([
        page.waitForURL(/^http:\/\/127\.0\.0\.1:\d+\/callback\?/),
        page.click('button[type="submit"]'),
      ])
      return (await page.textContent('body')) ?? ''
    } finally {
      await page.close()
    }
  }

  it("signs in on the IdP's pages and ends with a certificate in ssh-agent", async () => {
    const env = {...w.env, SSHCA_HOME: join(tempDir('sshca-home-'), 'home')}
    assert.equal(
      (
        await sshca(
          ['bootstrap', '--ca-url', w.t.url, '--fingerprint', w.t.init.rootFingerprint, '--context', 'browser'],
          {env},
        )
      ).code,
      0,
    )
    const p = spawnSshca(['login', '--json'], env)
    const [url] = await p.waitFor(/^http:\/\/127\.0\.0\.1:\d+\/auth\?\S+$/m)
    const body = await signIn(url, 'erin@example.com')
    assert.match(body, /You are signed in to sshca/)
    const done = await p.exit()
    assert.equal(done.code, 0, done.stderr)
    const result = JSON.parse(done.stdout)
    assert.equal(result.method, 'browser')
    assert.equal(result.provisioner, 'sso')
    const line = (await sshAdd(w.agent, ['-L'])).stdout.split('\n').find((l) => l.endsWith(' sshca:browser:sso'))!
    const {cert, comment} = parseCertificateLine(line)
    assert.deepEqual(cert.principals[0], 'erin')
    assert.equal(cert.keyId, 'erin@example.com')
    assert.equal(comment, 'sshca:browser:sso')
  })

  /**
   * Another local user's program (uid 65534): `find` prints the first command line in /proc that holds
   * an authorization URL, as `ps` shows it to everyone; `get URL` sends a request and prints the status;
   * `get-and-close URL` sends it and closes its socket at once, not waiting for the answer (a closed
   * socket is listed in /proc/net/tcp as uid 0's, root's).
   */
  function asAnotherUser(...args: string[]): Promise<string> {
    const script = `
      const fs = require('node:fs')
      const [mode, url] = process.argv.slice(1)
      if (mode === 'find') {
        const sleep = new Int32Array(new SharedArrayBuffer(4))
        let found
        for (const end = Date.now() + 20000; !found && Date.now() < end; Atomics.wait(sleep, 0, 0, 20)) {
          for (const pid of fs.readdirSync('/proc').filter((p) => /^[0-9]+$/.test(p))) {
            let argv = []
            try { argv = fs.readFileSync('/proc/' + pid + '/cmdline', 'utf8').split('\\0') } catch {}
            found ??= argv.find((a) => a.startsWith('http') && a.includes('code_challenge='))
          }
        }
        process.stdout.write(found ?? '')
      } else if (mode === 'get') {
        fetch(url).then((r) => process.stdout.write(String(r.status)))
      } else {
        const u = new URL(url)
        const s = require('node:net').connect(Number(u.port), u.hostname, () => {
          s.write('GET ' + u.pathname + u.search + ' HTTP/1.1\\r\\nhost: ' + u.host + '\\r\\n\\r\\n', () => s.destroy())
        })
        s.on('close', () => process.stdout.write('closed'))
      }`
    // another user cannot write c8's coverage files: empty, not left out (spawn would put this process's back)
    const child = spawn(process.execPath, ['-e', script, ...args], {
      env: {...process.env, NODE_V8_COVERAGE: ''},
      stdio: ['ignore', 'pipe', 'inherit'],
      uid: 65534,
      gid: 65534,
    })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    return new Promise((resolve) => child.on('close', () => resolve(out)))
  }

  it("another local user who reads the sign-in URL off the browser's command line can neither complete nor abort the sign-in (Linux: the callback's socket must be the person's)", async function () {
    // another uid needs root to switch to
    if (process.platform !== 'linux' || process.getuid!() !== 0) this.skip()
    const dir = tempDir('sshca-browser-')
    const env = {...w.env, SSHCA_HOME: join(dir, 'home')}
    assert.equal(
      (
        await sshca(
          ['bootstrap', '--ca-url', w.t.url, '--fingerprint', w.t.init.rootFingerprint, '--context', 'victim'],
          {env},
        )
      ).code,
      0,
    )
    // the browser sshca opens holds the URL on its command line, as one that xdg-open starts does
    const opener = join(dir, 'browser')
    writeFileSync(opener, `#!/bin/sh\necho $$ > ${dir}/browser.pid\nsleep 120\n`, {mode: 0o700})
    const mark = w.t.mark()
    const p = spawnSshca(['login', '--json'], {
      ...env,
      BROWSER: opener,
      DISPLAY: ':0',
      CI: undefined,
      SSH_CONNECTION: undefined,
      SSH_TTY: undefined,
    })
    try {
      const [url] = await p.waitFor(/^http:\/\/127\.0\.0\.1:\d+\/auth\?\S+$/m)
      await p.waitFor(/A browser window was opened/)
      // the attack: L reads the URL from /proc, signs in with it at the IdP as L (the code is bound to
      // the person's PKCE challenge, state and nonce), and sends L's code to the person's listener
      assert.equal(await asAnotherUser('find'), url)
      const u = new URL(url)
      const redirect = u.searchParams.get('redirect_uri')!
      const stolen = await driveDevSignIn(url, {login: 'mallory@example.com', stopAt: redirect})
      assert.match(stolen, /[?&]code=[^&]+/)
      assert.equal(await asAnotherUser('get', stolen), '403')
      const abort = new URL(redirect)
      abort.search = new URLSearchParams({error: 'access_denied', state: u.searchParams.get('state')!}).toString()
      assert.equal(await asAnotherUser('get', abort.href), '403')
      assert.equal(await asAnotherUser('get-and-close', stolen), 'closed')
      await p.waitFor(/(did not come from a program of yours[\s\S]*){3}/)
      assert.equal(p.child.exitCode, null, 'still waiting for the real callback')
      // the person's own browser (same user as sshca) completes it
      assert.match(await signIn(url, 'grace@example.com'), /You are signed in to sshca/)
      const done = await p.exit()
      assert.equal(done.code, 0, done.stderr)
      assert.equal(JSON.parse(done.stdout).certificate.keyId, 'grace@example.com')
      assert.deepEqual(
        w.t
          .since(mark)
          .filter((l) => l.event === 'certificate_issued')
          .map((l) => l.key_id),
        ['grace@example.com'],
      )
      const held = (await sshAdd(w.agent, ['-L'])).stdout
      assert.doesNotMatch(held, /mallory/)
    } finally {
      p.child.kill()
      try {
        process.kill(-Number(readFileSync(join(dir, 'browser.pid'), 'utf8')), 'SIGKILL')
      } catch {
        // never started, or already gone
      }
    }
  })
})
