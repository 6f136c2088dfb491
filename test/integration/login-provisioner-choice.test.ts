/**
 * A CA with several provisioners people sign in with: nothing to ask on (ssh's Match exec, proxycommand,
 * no terminal) and none named is a usage error that says how to choose; a sign-in with --provisioner is
 * remembered by the context, and the next login that names none — `login --ensure` before an ssh
 * connection — signs in that way. Real IdP (two clients), CA, agent.
 */
import assert from 'node:assert/strict'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {driveDevSignIn} from '../../src/demo/idp-driver.ts'
import {sshca} from '../helpers/cli.ts'
import {sshAdd} from '../helpers/openssh.ts'
import {spawnSshca, startWorld, type World} from '../helpers/world.ts'

describe('login with several provisioners', function () {
  this.timeout(90_000)
  let w: World
  before(async () => {
    w = await startWorld(
      {},
      {
        clients: ['sshca-cli-2'],
        provisioners: (issuer) => [
          {
            name: 'sso2',
            type: 'oidc',
            issuer,
            clientId: 'sshca-cli-2',
            rules: [
              {
                name: 'contractors',
                match: {email_verified: true, email: {domain: 'example.com'}},
                certificate: {principals: ['${email.local}'], keyId: 'sso2:${email}', ttl: '1h'},
              },
            ],
          },
        ],
      },
    )
    await w.bootstrap()
  })
  after(async () => w?.stop())

  const context = () => JSON.parse(readFileSync(join(w.home, 'contexts', 'test', 'context.json'), 'utf8'))

  it('none named and no terminal: exit 2 saying how to choose; then one sign-in with --provisioner is remembered for login --ensure', async () => {
    const refused = await sshca(['login', '--ensure', '--json'], {env: w.env})
    assert.equal(refused.code, 2, refused.stderr)
    const err = JSON.parse(refused.stdout).error
    assert.equal(err.code, 'ERR_PROVISIONER_AMBIGUOUS')
    assert.match(err.hint, /sshca login --provisioner NAME --context test/)
    assert.equal(context().provisioner, undefined)

    const p = spawnSshca(['login', '--provisioner', 'sso2'], w.env)
    const [url] = await p.waitFor(/^http:\/\/127\.0\.0\.1:\d+\/auth\?\S+$/m)
    assert.equal(new URL(url).searchParams.get('client_id'), 'sshca-cli-2')
    await driveDevSignIn(url, {login: 'alice@example.com'})
    const done = await p.exit()
    assert.equal(done.code, 0, done.stderr)
    assert.equal(context().provisioner, 'sso2')

    // the certificate gone, login --ensure signs in again the remembered way: sso2's saved sign-in, no browser
    await sshAdd(w.agent, ['-D'])
    const again = await sshca(['login', '--ensure', '--json'], {env: w.env})
    assert.equal(again.code, 0, again.stderr)
    const result = JSON.parse(again.stdout)
    assert.equal(result.provisioner, 'sso2')
    assert.equal(result.method, 'refresh')
    assert.match(result.certificate.keyId, /^sso2:/)
  })

  it('--provisioner changes what is remembered; a remembered name the CA no longer has counts for nothing', async () => {
    const p = spawnSshca(['login', '--provisioner', 'sso', '--force'], w.env)
    const [url] = await p.waitFor(/^http:\/\/127\.0\.0\.1:\d+\/auth\?\S+$/m)
    await driveDevSignIn(url, {login: 'alice@example.com'})
    assert.equal((await p.exit()).code, 0)
    assert.equal(context().provisioner, 'sso')

    const file = join(w.home, 'contexts', 'test', 'context.json')
    writeFileSync(file, JSON.stringify({...context(), provisioner: 'gone'}), {mode: 0o600})
    const refused = await sshca(['login', '--force', '--json'], {env: w.env})
    assert.equal(refused.code, 2, refused.stderr)
    assert.equal(JSON.parse(refused.stdout).error.code, 'ERR_PROVISIONER_AMBIGUOUS')
  })
})
