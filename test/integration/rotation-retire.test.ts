/**
 * When `ca rotate retire` may drop the old SSH CA key without --force: only once nothing it signed
 * still lets anyone in. Real certificates from a running CA, the rotation steps as the command runs
 * them, the clock moved forward instead of waiting for certificates to expire.
 */
import assert from 'node:assert/strict'
import {revoke} from '../../src/ca/admin.ts'
import {rotate} from '../../src/ca/rotate.ts'
import {request} from 'undici'
import {parseCertificate} from '../../src/ssh/cert.ts'
import {parseKrl} from '../../src/ssh/krl.ts'
import {PublicKey} from '../../src/ssh/keys.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {PASSWORD, startTestCa, type TestCa} from '../helpers/ca.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {waitFor} from '../helpers/proc.ts'

describe('ca rotate retire: refused while a certificate of the old key is valid, allowed once none is', function () {
  this.timeout(120_000)
  let gh: GithubIssuer
  let t: TestCa
  const TTL = 600

  async function issue(actor: string): Promise<{serial: string; signer: string; validBefore: number}> {
    const r = await t.call('POST', '/ssh/sign', {
      publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'),
      ott: await gh.mint({actor}),
      certType: 'user',
    })
    assert.equal(r.status, 201, r.text)
    const cert = parseCertificate(Buffer.from((r.json as {crt: string}).crt, 'base64'))
    return {
      serial: cert.serial.toString(),
      signer: cert.signatureKey.fingerprint(),
      validBefore: Number(cert.validBefore),
    }
  }
  const userKeys = async () =>
    ((await t.call('GET', '/ssh/roots')).json as {userKey: string[]}).userKey.map((k) =>
      PublicKey.fromBlob(Buffer.from(k, 'base64')).fingerprint(),
    )

  before(async () => {
    gh = await startGithubIssuer()
    t = await startTestCa(
      {
        provisioners: [
          {
            name: 'ci',
            type: 'oidc',
            issuer: gh.issuer,
            audience: 'sshca-ci',
            rules: [
              {
                name: 'deploy',
                match: {repository: 'acme/app'},
                certificate: {principals: ['deploy'], keyId: '${actor}', ttl: `${TTL}s`},
              },
            ],
          },
        ],
        limits: {rate: false},
      },
      {keysIntervalMs: 100},
    )
  })
  after(async () => {
    await t?.stop()
    await gh?.stop()
  })

  it('counts only unexpired, unrevoked certificates of the old key; an expired or revoked one does not hold retire up', async () => {
    const [oldKey] = await userKeys()
    const a = await issue('ann')
    const b = await issue('bob')
    assert.equal(a.signer, oldKey)
    const configPath = t.init.config
    await rotate({configPath, password: PASSWORD, step: 'prepare', kinds: ['user']})
    await rotate({configPath, step: 'activate', kinds: ['user']})
    await waitFor('the CA to sign with the new user key', async () => (await userKeys())[0] !== oldKey, 20_000)
    const c = await issue('cem')
    assert.notEqual(c.signer, oldKey, 'after activate the new key signs')

    // both of the old key's certificates are valid: refused, and nothing changed
    await assert.rejects(
      rotate({configPath, step: 'retire', kinds: ['user']}),
      (e: {code?: string; message: string}) =>
        e.code === 'ERR_ROTATION_STATE' && /2 user certificate\(s\) signed by user-1 are still valid/.test(e.message),
    )
    assert.deepEqual(
      (await rotate({configPath, step: 'status'})).keys.user.map((k) => k.state),
      ['previous', 'active'],
    )

    // one revoked: the other still holds it up
    await revoke({configPath, serial: a.serial, reason: 'key compromise'})
    await assert.rejects(
      rotate({configPath, step: 'retire', kinds: ['user']}),
      (e: {code?: string; message: string}) =>
        e.code === 'ERR_ROTATION_STATE' && /1 user certificate\(s\) signed by user-1/.test(e.message),
    )

    // a second before the other expires: still refused; once it has: retired without --force
    const at = (s: number) => () => s * 1000
    await assert.rejects(
      rotate({configPath, step: 'retire', kinds: ['user'], clock: at(b.validBefore - 1)}),
      /1 user certificate/,
    )
    const done = await rotate({configPath, step: 'retire', kinds: ['user'], clock: at(b.validBefore)})
    assert.deepEqual(done.stranded, [])
    assert.deepEqual(
      done.changed.map((x) => [x.kind, x.key, x.state]),
      [['user', 'user-1', 'retired']],
    )
    // the certificate of the new key never counted against the old one, and the CA stops publishing the old key
    await waitFor('the CA to drop the old user key', async () => (await userKeys()).length === 1, 20_000)
    assert.notEqual((await userKeys())[0], oldKey)
    await waitFor(
      'the retirement in the audit log',
      () => t.audit().some((l) => l.event === 'ca_key_retired' && l.forced === false),
      20_000,
    )
    // the revocation of ann's certificate outlives its key's retirement: an sshd that still trusts the
    // old key (a hand-written TrustedUserCAKeys) must still refuse it, so the KRL keeps that key's section
    const res = await request(`${t.url}/ssh/krl`, {dispatcher: t.dispatcher})
    const krl = parseKrl(Buffer.from(await res.body.arrayBuffer()))
    const sectionOf = (fp: string) => krl.sections.find((x) => PublicKey.fromBlob(x.caKeyBlob).fingerprint() === fp)
    assert.ok(sectionOf(oldKey!)?.serials.includes(BigInt(a.serial)), 'the retired key keeps its section')
    assert.ok(sectionOf((await userKeys())[0]!), 'and the active key has one')
  })
})
