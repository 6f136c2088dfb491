/**
 * `sshca rekey` (src/client/host/possession.ts rekeyHost) against a scripted CA: the certificate it returns
 * is checked like enrollment's and renewal's before the host key is replaced — which cannot be undone,
 * since the CA has moved the host's lineage to the new key.
 */
import assert from 'node:assert/strict'
import {chmodSync, existsSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {bootstrap} from '../../../src/client/setup/bootstrap.ts'
import type {SshcaError} from '../../../src/errors.ts'
import {rekeyHost} from '../../../src/client/host/possession.ts'
import {certificateLine, signCertificate} from '../../../src/ssh/cert.ts'
import {PublicKey} from '../../../src/ssh/keys.ts'
import {formatOpenSshPrivateKey, generatePrivateKey, parsePrivateKeyFile} from '../../../src/ssh/private-key.ts'
import {SUPERSEDED_MESSAGE} from '../../../src/protocol/api.ts'
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
  /** A 403 message the scripted CA answers the rekey with, when set. */
  let refuse: string | undefined

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
        if (refuse) return json({status: 403, message: refuse, request_id: 'req-1'}, 403)
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

  it('a rekey that did not finish keeps its new key (KEY.rekey, 0600) and asks for that key again; done, the file goes', async () => {
    const h = await host()
    validity = () => [now() - 7200n, now() - 1n]
    await assert.rejects(rekeyHost(h.home, {certFile: `${h.file}-cert.pub`, keyFile: h.file}))
    const first = asked!.publicKey
    const pending = `${h.file}.rekey`
    assert.equal(statSync(pending).mode & 0o777, 0o600)
    assert.equal(parsePrivateKeyFile(readFileSync(pending, 'utf8')).key.publicKey.blob.toString('base64'), first)
    validity = () => [now() - 60n, now() + 86_400n]
    await rekeyHost(h.home, {certFile: `${h.file}-cert.pub`, keyFile: h.file})
    assert.equal(asked!.publicKey, first, 'the same new key, asked again')
    assert.equal(PublicKey.parseLine(files(h.file)[1]!).key.blob.toString('base64'), first)
    assert.ok(!existsSync(pending))
  })

  it('a KEY.rekey others may read, of another kind, or the old key itself is not used: a new key is made in its place', async () => {
    const h = await host()
    validity = () => [now() - 7200n, now() - 1n]
    const pending = `${h.file}.rekey`
    const old = parsePrivateKeyFile(readFileSync(h.file, 'utf8')).key
    for (const [key, mode] of [
      [generatePrivateKey('ed25519'), 0o644],
      [generatePrivateKey('ecdsa'), 0o600],
      [old, 0o600],
    ] as const) {
      writeFileSync(pending, formatOpenSshPrivateKey(key, 'planted'), {mode})
      chmodSync(pending, mode)
      await assert.rejects(rekeyHost(h.home, {certFile: `${h.file}-cert.pub`, keyFile: h.file}))
      assert.notEqual(asked!.publicKey, key.publicKey.blob.toString('base64'))
      assert.equal(statSync(pending).mode & 0o777, 0o600)
    }
  })

  it("the CA's 403 superseded: ERR_CA_DENIED that says so and gives the commands that enrol the host again", async () => {
    const h = await host()
    refuse = `${SUPERSEDED_MESSAGE}: a newer certificate of this host key exists`
    try {
      await assert.rejects(rekeyHost(h.home, {certFile: `${h.file}-cert.pub`, keyFile: h.file}), (err: SshcaError) => {
        assert.equal(err.code, 'ERR_CA_DENIED')
        assert.match(
          err.message,
          /^the CA will not rekey .*-cert\.pub: it is no longer the newest certificate of this host key/,
        )
        assert.match(err.message, /\(request id req-1\)$/)
        assert.equal(
          err.hint,
          `enrol this host again. On the CA: sshca ca token --host web1 --key ${h.file}.pub (with the CA's --config and --password-file); then here: sshca certificate --host --sign --token-file FILE web1 ${h.file}.pub`,
        )
        return true
      })
      // any other 403 stays the CA's general refusal
      refuse = 'the CA policy does not allow a certificate for this request'
      await assert.rejects(rekeyHost(h.home, {certFile: `${h.file}-cert.pub`, keyFile: h.file}), (err: SshcaError) => {
        assert.equal(err.code, 'ERR_CA_DENIED')
        assert.match(err.message, /^the CA policy denied the request/)
        return true
      })
    } finally {
      refuse = undefined
    }
    assert.deepEqual(files(h.file), h.before)
  })

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
