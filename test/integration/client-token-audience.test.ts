/**
 * A CA names the audience its clients ask identity providers for (GET /provisioners), so a hostile
 * or compromised CA could name another CA's and spend the token it is sent there. A context
 * remembers the (issuer, audience) of the tokens it sent its CA, and a token another context (of
 * another root) remembers is never sent: two real CAs with different roots that accept the same
 * issuer and audience, one $SSHCA_HOME, the built CLI.
 */
import assert from 'node:assert/strict'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {startTestCa, type TestCa} from '../helpers/ca.ts'
import {sshca} from '../helpers/cli.ts'
import {tempDir} from '../helpers/tmp.ts'
import {startWorld, worldPolicy, type World} from '../helpers/world.ts'

describe('an ID token another context sends its CA is never sent to this one', function () {
  this.timeout(120_000)
  let w: World
  let staging: TestCa

  before(async () => {
    w = await startWorld()
    // another CA (another root) for the same issuers and audiences: as a hostile CA would name them
    staging = await startTestCa(worldPolicy(w.idp.issuer, w.gh.issuer), {workers: 0})
    await w.bootstrap('prod')
    const r = await sshca(
      ['bootstrap', '--ca-url', staging.url, '--fingerprint', staging.init.rootFingerprint, '--context', 'staging'],
      {env: w.env},
    )
    assert.equal(r.code, 0, r.stderr)
  })
  after(async () => {
    await staging?.stop()
    await w?.stop()
  })

  const tokenFile = async (): Promise<string> => {
    const f = join(tempDir('sshca-aud-'), 'token')
    writeFileSync(f, `${await w.gh.mint()}\n`, {mode: 0o600})
    return f
  }
  const login = async (context: string) =>
    sshca(['login', '--context', context, '--identity-token-file', await tokenFile(), '--force', '--json'], {
      env: w.env,
    })

  it("refuses, before sending it, a token for the issuer and audience prod's CA is sent; the same CA under another name is fine", async () => {
    assert.equal((await login('prod')).code, 0)
    const saved = JSON.parse(readFileSync(join(w.home, 'contexts', 'prod', 'context.json'), 'utf8')) as {
      tokenAudiences: unknown
    }
    assert.deepEqual(saved.tokenAudiences, [{issuer: w.gh.issuer, audience: 'sshca-ci'}])

    const lines = staging.audit().length
    const r = await login('staging')
    assert.equal(r.code, 4, r.stdout + r.stderr)
    const err = (JSON.parse(r.stdout) as {error: {code: string; message: string; hint: string}}).error
    assert.equal(err.code, 'ERR_TRUST_TOKEN_AUDIENCE')
    assert.match(err.message, /good at the CA of "prod"/)
    assert.match(err.hint, /sshca context remove prod/)
    assert.equal(staging.audit().length, lines, 'staging was sent nothing')

    // the other commands that send a token: hosts and check-host (as a Bearer), a host certificate
    for (const args of [['hosts'], ['check-host', 'web1.example.com']]) {
      const refused = await sshca(
        [...args, '--context', 'staging', '--identity-token-file', await tokenFile(), '--json'],
        {
          env: w.env,
        },
      )
      assert.equal(refused.code, 4, `${args[0]}: ${refused.stdout}${refused.stderr}`)
      assert.match(refused.stdout, /ERR_TRUST_TOKEN_AUDIENCE/)
    }
    assert.equal(staging.audit().length, lines, 'staging was sent nothing')

    // prod's CA under a second name: the same root, the same tokens
    assert.equal((await w.bootstrap('prod-again'), (await login('prod-again')).code), 0)
    assert.equal((await login('prod')).code, 0, 'prod itself signs in as before')
  })

  it('once the other context is gone, the token goes to the CA it is for', async () => {
    for (const c of ['prod', 'prod-again'])
      assert.equal((await sshca(['context', 'remove', c, '--json'], {env: w.env})).code, 0)
    const r = await login('staging')
    assert.equal(r.code, 0, r.stderr)
  })
})
