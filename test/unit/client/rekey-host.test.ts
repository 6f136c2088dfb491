/**
 * `sshca rekey` (src/client/host/possession.ts rekeyHost) against a scripted CA: the certificate it returns
 * is checked like enrollment's and renewal's before the host key is replaced — which cannot be undone,
 * since the CA has moved the host's lineage to the new key.
 */
import assert from 'node:assert/strict'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {bootstrap} from '../../../src/client/setup/bootstrap.ts'
import type {SshcaError} from '../../../src/errors.ts'
import {rekeyHost} from '../../../src/client/host/possession.ts'
import {certificateLine, signCertificate} from '../../../src/ssh/cert.ts'
import {PublicKey} from '../../../src/ssh/keys.ts'
import {formatOpenSshPrivateKey, generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {json, startScriptedCa, type ScriptedCa} from '../../helpers/scripted-server.ts'
import {tempDir} from '../../helpers/tmp.ts'

describe('sshca rekey: the new certificate is checked before the host key is replaced', function () {
  this.timeout(30_000)
  const hostCa = generatePrivateKey('ed25519')
  const b64 = (k: PublicKey): string => k.blob.toString('base64')
  const now = (): bigint => BigInt(Math.floor(Date.now() / 1000))
  let ca: ScriptedCa
  /** The validity the scripted CA gives the rekeyed certificate. */
  let validity: () => [bigint, bigint]
  /** The last rekey request: its proof token's claims and the new key. */
  let asked: {claims: Record<string, unknown>; publicKey: string} | undefined

  before(async () => {
    ca = await startScriptedCa()
    ca.roots = json({userKey: [b64(generatePrivateKey('ed25519').publicKey)], hostKey: [b64(hostCa.publicKey)]})
    const scripted = ca.server.answer
    ca.server.answer = async (path, body) => {
      if (path === '/ssh/rekey') {
        const {publicKey, ott} = JSON.parse(body) as {publicKey: string; ott: string}
        asked = {
          claims: JSON.parse(Buffer.from(ott.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>,
          publicKey,
        }
        const [validAfter, validBefore] = validity()
        const cert = await signCertificate(
          {
            type: 'host',
            publicKey: PublicKey.fromBlob(Buffer.from(publicKey, 'base64')),
            serial: 99n,
            keyId: 'host:web1',
            principals: ['web1'],
            validAfter,
            validBefore,
          },
          keySigner(hostCa.keyObject),
        )
        return json({crt: cert.blob.toString('base64')}, 201)
      }
      if (path.startsWith('/provisioners'))
        return json({provisioners: [{type: 'sshpop', name: 'renewals'}], nextCursor: ''})
      return scripted(path, body)
    }
  })
  after(async () => ca?.server.stop())

  /** A home that trusts the scripted CA, and a host key with a valid certificate in a stand-in /etc/ssh. */
  async function host(): Promise<{home: string; file: string; before: string[]}> {
    const home = join(tempDir('sshca-rekey-home-'), 'sshca')
    await bootstrap(home, {caUrl: ca.server.url, fingerprint: ca.fingerprint, context: 'demo'})
    const key = generatePrivateKey('ed25519')
    const file = join(tempDir('sshca-rekey-etc-'), 'ssh_host_ed25519_key')
    writeFileSync(file, formatOpenSshPrivateKey(key, 'host:web1'), {mode: 0o600})
    writeFileSync(`${file}.pub`, `${key.publicKey.toLine('host:web1')}\n`)
    const cert = await signCertificate(
      {
        type: 'host',
        publicKey: key.publicKey,
        serial: 1n,
        keyId: 'host:web1',
        principals: ['web1'],
        validAfter: now() - 60n,
        validBefore: now() + 86_400n,
      },
      keySigner(hostCa.keyObject),
    )
    writeFileSync(`${file}-cert.pub`, `${certificateLine(cert)}\n`)
    return {home, file, before: [file, `${file}.pub`, `${file}-cert.pub`].map((f) => readFileSync(f, 'utf8'))}
  }
  const files = (file: string): string[] =>
    [file, `${file}.pub`, `${file}-cert.pub`].map((f) => readFileSync(f, 'utf8'))

  for (const [what, v] of [
    ['already expired', (): [bigint, bigint] => [now() - 7200n, now() - 1n]],
    ['starting in ten minutes', (): [bigint, bigint] => [now() + 600n, now() + 7200n]],
  ] as const) {
    it(`a certificate ${what}: ERR_CA_BAD_RESPONSE with a hint about clocks; key, .pub and certificate untouched`, async () => {
      const h = await host()
      validity = v
      await assert.rejects(rekeyHost(h.home, {certFile: `${h.file}-cert.pub`, keyFile: h.file}), (err: SshcaError) => {
        assert.equal(err.code, 'ERR_CA_BAD_RESPONSE', err.message)
        assert.match(String(err.hint), /clock/)
        return true
      })
      assert.deepEqual(files(h.file), h.before)
    })
  }

  it('a certificate valid now: the key, .pub and certificate are replaced', async () => {
    const h = await host()
    validity = () => [now() - 60n, now() + 86_400n]
    const r = await rekeyHost(h.home, {certFile: `${h.file}-cert.pub`, keyFile: h.file})
    assert.equal(r.serial, '99')
    const after = files(h.file)
    assert.ok(after.every((text, i) => text !== h.before[i]))
    // the proof names the new key (cnf.kid): a token taken in flight rekeys to no other key
    const fresh = PublicKey.fromBlob(Buffer.from(asked!.publicKey, 'base64'))
    assert.deepEqual(asked!.claims.cnf, {kid: fresh.fingerprint()})
    assert.equal(PublicKey.parseLine(after[1]!).key.fingerprint(), fresh.fingerprint())
  })
})
