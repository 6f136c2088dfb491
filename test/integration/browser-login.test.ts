/**
 * The browser flow for real: `sshca login` prints the authorization URL; headless Chromium signs in
 * on oidc-provider's own pages and follows the redirect to the CLI's 127.0.0.1 listener, which shows
 * the success page; the certificate ends up in a real ssh-agent.
 */
import assert from 'node:assert/strict'
import {join} from 'node:path'
import type {Browser} from 'playwright-core'
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
})
