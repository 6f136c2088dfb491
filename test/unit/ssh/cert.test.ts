import assert from 'node:assert/strict'
import {
  FOREVER,
  certificateLine,
  encodeOptions,
  parseCertificate,
  parseCertificateLine,
  signCertificate,
  validityAt,
  verifyCertificate,
  type CertificateTemplate,
} from '../../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {SshReader, SshWriter} from '../../../src/ssh/wire.ts'

const ca = generatePrivateKey('ed25519')
const subject = generatePrivateKey('ecdsa')

function template(over: Partial<CertificateTemplate> = {}): CertificateTemplate {
  return {
    type: 'user',
    publicKey: subject.publicKey,
    serial: 12345678901234567890n,
    keyId: 'alice@example.com',
    principals: ['alice', 'alice@example.com'],
    validAfter: 1_700_000_000n,
    validBefore: 1_700_028_800n,
    criticalOptions: {'source-address': '10.0.0.0/8', 'force-command': '/usr/bin/deploy'},
    extensions: {'permit-pty': true, 'permit-agent-forwarding': true},
    ...over,
  }
}

describe('certificates', () => {
  it('sign → parse round-trips every field and verifies', async () => {
    const cert = await signCertificate(template(), keySigner(ca.keyObject))
    const parsed = parseCertificate(cert.blob)
    assert.equal(parsed.keyType, 'ecdsa-sha2-nistp256-cert-v01@openssh.com')
    assert.equal(parsed.type, 'user')
    assert.equal(parsed.serial, 12345678901234567890n)
    assert.equal(parsed.keyId, 'alice@example.com')
    assert.deepEqual(parsed.principals, ['alice', 'alice@example.com'])
    assert.equal(parsed.validAfter, 1_700_000_000n)
    assert.equal(parsed.validBefore, 1_700_028_800n)
    assert.deepEqual(parsed.criticalOptions, {'force-command': '/usr/bin/deploy', 'source-address': '10.0.0.0/8'})
    assert.deepEqual(parsed.extensions, {'permit-agent-forwarding': true, 'permit-pty': true})
    assert.ok(parsed.publicKey.equals(subject.publicKey))
    assert.ok(parsed.signatureKey.equals(ca.publicKey))
    assert.equal(parsed.nonce.length, 32)
    assert.deepEqual(verifyCertificate(parsed), {valid: true, algorithm: 'ssh-ed25519'})
  })

  it('sorts options by name on the wire, as PROTOCOL.certkeys requires', async () => {
    const names: string[] = []
    const r = new SshReader(encodeOptions({'source-address': 'a', 'force-command': 'b', 'verify-required': true}))
    while (r.remaining) {
      names.push(r.text())
      r.bytes()
    }
    assert.deepEqual(names, ['force-command', 'source-address', 'verify-required'])
  })

  it('wraps string options in an inner string and leaves flags empty', async () => {
    const enc = encodeOptions({'force-command': 'ls', 'permit-pty': true})
    const expected = new SshWriter()
      .string('force-command')
      .string(new SshWriter().string('ls').toBuffer())
      .string('permit-pty')
      .string(Buffer.alloc(0))
      .toBuffer()
    assert.deepEqual(enc, expected)
  })

  it('preserves unknown options byte for byte', async () => {
    const raw = Buffer.from('00000003626172', 'hex')
    const cert = await signCertificate(template({criticalOptions: {'x@example.com': raw}, extensions: {'y@example.com': true}}), keySigner(ca.keyObject))
    const parsed = parseCertificate(cert.blob)
    assert.deepEqual(parsed.criticalOptions['x@example.com'], raw)
    assert.equal(parsed.extensions['y@example.com'], true)
  })

  it('represents "forever" and host certificates', async () => {
    const cert = await signCertificate(template({type: 'host', validAfter: 0n, validBefore: FOREVER, principals: ['web1.example.com'], criticalOptions: {}, extensions: {}}), keySigner(ca.keyObject))
    const parsed = parseCertificate(cert.blob)
    assert.equal(parsed.type, 'host')
    assert.equal(parsed.validBefore, FOREVER)
    assert.equal(validityAt(parsed, 4_000_000_000n), 'valid')
  })

  it('applies OpenSSH validity: after <= now < before', async () => {
    const c = {validAfter: 100n, validBefore: 200n}
    assert.equal(validityAt(c, 99n), 'not-yet-valid')
    assert.equal(validityAt(c, 100n), 'valid')
    assert.equal(validityAt(c, 199n), 'valid')
    assert.equal(validityAt(c, 200n), 'expired')
  })

  it('refuses to sign empty validity, NUL in principals or an unknown type', async () => {
    const signer = keySigner(ca.keyObject)
    await assert.rejects(signCertificate(template({validAfter: 10n, validBefore: 10n}), signer), TypeError)
    await assert.rejects(signCertificate(template({principals: ['a\0b']}), signer), TypeError)
    await assert.rejects(signCertificate(template({type: 'other' as 'user'}), signer), TypeError)
  })

  it('fails verification when any single bit changes', async () => {
    const cert = await signCertificate(template(), keySigner(ca.keyObject))
    for (let bit = 0; bit < cert.blob.length * 8; bit++) {
      const tampered = Buffer.from(cert.blob)
      tampered[bit >> 3]! ^= 1 << (bit & 7)
      let valid = false
      try {
        valid = verifyCertificate(parseCertificate(tampered)).valid
      } catch (err) {
        assert.ok(['ERR_SSH_FORMAT', 'ERR_SSH_UNSUPPORTED'].includes((err as {code: string}).code), String(err))
      }
      assert.equal(valid, false, `bit ${bit} flipped and the certificate still verified`)
    }
  })

  it('refuses a certificate signed by another key than the one it names', async () => {
    const other = generatePrivateKey('ed25519')
    const signer = {publicKey: ca.publicKey, sign: keySigner(other.keyObject).sign}
    const cert = await signCertificate(template(), signer)
    assert.equal(verifyCertificate(parseCertificate(cert.blob)).valid, false)
  })

  it('refuses duplicate options, trailing bytes and chained certificates', async () => {
    const cert = await signCertificate(template(), keySigner(ca.keyObject))
    assert.throws(() => parseCertificate(Buffer.concat([cert.blob, Buffer.of(0)])), {code: 'ERR_SSH_FORMAT', message: /trailing/})
    const dupOptions = Buffer.concat([encodeOptions({'permit-pty': true}), encodeOptions({'permit-pty': true})])
    const signer = keySigner(ca.keyObject)
    const good = await signCertificate(template({extensions: {}}), signer)
    // rebuild the body by hand with duplicated extensions
    const r = new SshReader(good.blob)
    const w = new SshWriter().string(r.bytes()).string(r.bytes()).string(r.bytes()).string(r.bytes())
    w.u64(r.u64()).u32(r.u32()).string(r.bytes()).string(r.bytes()).u64(r.u64()).u64(r.u64()).string(r.bytes())
    r.bytes()
    w.string(dupOptions).string(r.bytes()).string(r.bytes()).string(r.bytes())
    assert.throws(() => parseCertificate(w.toBuffer()), {code: 'ERR_SSH_FORMAT', message: /appears twice/})
    // a certificate as the signature key
    const chained = await signCertificate(template(), {publicKey: {...ca.publicKey, blob: good.blob} as never, sign: signer.sign})
    assert.throws(() => parseCertificate(chained.blob), {code: 'ERR_SSH_FORMAT', message: /chained/})
  })

  it('reads and writes *-cert.pub lines', async () => {
    const cert = await signCertificate(template(), keySigner(ca.keyObject))
    const {cert: back, comment} = parseCertificateLine(certificateLine(cert, 'my comment'))
    assert.deepEqual(back.blob, cert.blob)
    assert.equal(comment, 'my comment')
    assert.throws(() => parseCertificateLine(subject.publicKey.toLine()), {code: 'ERR_SSH_FORMAT', message: /plain/})
  })
})
