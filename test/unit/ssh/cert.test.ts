import assert from 'node:assert/strict'
import {
  FOREVER,
  certificateLine,
  encodeOptions,
  isCertificateType,
  nowSeconds,
  parseCertificate,
  parseCertificateLine,
  signCertificate,
  validityAt,
  verifyCertificate,
  type CertificateTemplate,
} from '../../../src/ssh/cert.ts'
import {generatePrivateKey, type PrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {SshReader, SshWriter} from '../../../src/ssh/wire.ts'
import {throwsCode} from '../../helpers/assert.ts'
import {forgeCertificate, packStrings, rawOptions, type ForgedFields} from '../../helpers/forge.ts'

// made in before(), not at import: Stryker loads this file once and re-runs its tests per mutant
let ca: PrivateKey
let subject: PrivateKey

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
  before(() => {
    ca = generatePrivateKey('ed25519')
    subject = generatePrivateKey('ecdsa')
  })

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
    const cert = await signCertificate(
      template({criticalOptions: {'x@example.com': raw}, extensions: {'y@example.com': true}}),
      keySigner(ca.keyObject),
    )
    const parsed = parseCertificate(cert.blob)
    assert.deepEqual(parsed.criticalOptions['x@example.com'], raw)
    assert.equal(parsed.extensions['y@example.com'], true)
  })

  it('represents "forever" and host certificates', async () => {
    const cert = await signCertificate(
      template({
        type: 'host',
        validAfter: 0n,
        validBefore: FOREVER,
        principals: ['web1.example.com'],
        criticalOptions: {},
        extensions: {},
      }),
      keySigner(ca.keyObject),
    )
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
    assert.throws(() => parseCertificate(Buffer.concat([cert.blob, Buffer.of(0)])), {
      code: 'ERR_SSH_FORMAT',
      message: /trailing/,
    })
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
    const chained = await signCertificate(template(), {
      publicKey: {...ca.publicKey, blob: good.blob} as never,
      sign: signer.sign,
    })
    assert.throws(() => parseCertificate(chained.blob), {code: 'ERR_SSH_FORMAT', message: /chained/})
  })

  it('reads and writes *-cert.pub lines', async () => {
    const cert = await signCertificate(template(), keySigner(ca.keyObject))
    const {cert: back, comment} = parseCertificateLine(certificateLine(cert, 'my comment'))
    assert.deepEqual(back.blob, cert.blob)
    assert.equal(comment, 'my comment')
    assert.throws(() => parseCertificateLine(subject.publicKey.toLine()), {code: 'ERR_SSH_FORMAT', message: /plain/})
  })

  it('a comment from elsewhere (a CA-chosen provisioner name or key ID) stays on its line: no line of its own', async () => {
    const cert = await signCertificate(template(), keySigner(ca.keyObject))
    const hostile = 'sso\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE attacker\r\0\u2028x'
    for (const line of [certificateLine(cert, hostile), subject.publicKey.toLine(hostile)]) {
      assert.equal(line.split(/[\n\r\u2028]/).length, 1, JSON.stringify(line))
      assert.ok(line.endsWith(' sso ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE attacker   x'), line)
    }
    assert.equal(parseCertificateLine(certificateLine(cert, hostile)).cert.serial, cert.serial)
  })

  describe('parsing refuses what OpenSSH refuses, even with a valid signature', () => {
    const forge = (over: Partial<ForgedFields>) => forgeCertificate(ca, subject.publicKey, over)
    it('the forged certificates used here are well-formed and verify when their fields are', () => {
      const cert = parseCertificate(
        forge({principals: ['alice', 'root'], keyId: 'kid', extensions: rawOptions(['permit-pty', Buffer.alloc(0)])}),
      )
      assert.deepEqual(cert.principals, ['alice', 'root'])
      assert.equal(cert.keyId, 'kid')
      assert.deepEqual(cert.extensions, {'permit-pty': true})
      assert.equal(verifyCertificate(cert).valid, true)
    })

    it('a type code other than 1 (user) or 2 (host) is not a host certificate', () => {
      assert.equal(parseCertificate(forge({typeCode: 1})).type, 'user')
      assert.equal(parseCertificate(forge({typeCode: 2})).type, 'host')
      for (const code of [0, 3, 0x8000_0002, 0xffff_ffff]) {
        throwsCode(() => parseCertificate(forge({typeCode: code})), 'ERR_SSH_FORMAT')
      }
    })

    it('a NUL byte in a principal or the key ID (C code would see "alice" where we see more)', () => {
      throwsCode(() => parseCertificate(forge({principals: ['alice', 'root\0alice']})), 'ERR_SSH_FORMAT')
      throwsCode(() => parseCertificate(forge({principals: ['alice\0']})), 'ERR_SSH_FORMAT')
      throwsCode(() => parseCertificate(forge({keyId: 'alice\0@example.com'})), 'ERR_SSH_FORMAT')
    })

    it('a NUL byte in, or an empty, option name, in critical options and in extensions', () => {
      for (const name of ['permit-pty\0', 'force\0-command', '\0', '']) {
        throwsCode(() => parseCertificate(forge({extensions: rawOptions([name, Buffer.alloc(0)])})), 'ERR_SSH_FORMAT')
        throwsCode(
          () => parseCertificate(forge({criticalOptions: rawOptions([name, Buffer.alloc(0)])})),
          'ERR_SSH_FORMAT',
        )
      }
    })

    it('a force-command or source-address that is not exactly one NUL-free string', () => {
      const value = (...parts: (Buffer | string)[]) => packStrings(parts)
      for (const name of ['force-command', 'source-address']) {
        const good = parseCertificate(forge({criticalOptions: rawOptions([name, value('10.0.0.1')])}))
        assert.equal(good.criticalOptions[name], '10.0.0.1')
        throwsCode(
          () => parseCertificate(forge({criticalOptions: rawOptions([name, value('10.0.0.1\0/bin/sh')])})),
          'ERR_SSH_FORMAT',
        )
        throwsCode(
          () =>
            parseCertificate(forge({criticalOptions: rawOptions([name, Buffer.concat([value('ls'), Buffer.of(0)])])})),
          'ERR_SSH_FORMAT',
        )
        throwsCode(
          () => parseCertificate(forge({criticalOptions: rawOptions([name, Buffer.from('ls')])})),
          'ERR_SSH_FORMAT',
        )
        // no value at all is not a flag: OpenSSH refuses the certificate
        throwsCode(
          () => parseCertificate(forge({criticalOptions: rawOptions([name, Buffer.alloc(0)])})),
          'ERR_SSH_FORMAT',
        )
      }
    })

    it('an option named __proto__ stays an option and changes no prototype', () => {
      const cert = parseCertificate(
        forge({
          extensions: rawOptions(['__proto__', Buffer.alloc(0)]),
          criticalOptions: rawOptions(['__proto__', Buffer.from('x')]),
        }),
      )
      assert.ok(Object.hasOwn(cert.extensions, '__proto__'))
      assert.equal(cert.extensions['__proto__'], true)
      assert.deepEqual(cert.criticalOptions['__proto__'], Buffer.from('x'))
      assert.equal(Object.getPrototypeOf(cert.extensions), Object.prototype)
    })

    it('options out of order are read as they come; every value is kept apart from the blob', () => {
      const cert = parseCertificate(
        forge({extensions: rawOptions(['z@example.com', Buffer.from('zz')], ['a@example.com', Buffer.alloc(0)])}),
      )
      assert.deepEqual(Object.keys(cert.extensions), ['z@example.com', 'a@example.com'])
      const kept = cert.extensions['z@example.com'] as Buffer
      cert.blob.fill(0)
      assert.deepEqual(kept, Buffer.from('zz'))
    })
  })

  describe('signing refuses what it must never issue', () => {
    const signer = () => keySigner(ca.keyObject)

    it('an empty principal list: OpenSSH reads it as every user, or every host name', async () => {
      await assert.rejects(signCertificate(template({principals: []}), signer()), TypeError)
      for (const type of ['user', 'host'] as const)
        assert.deepEqual((await signCertificate(template({type, principals: ['a']}), signer())).principals, ['a'])
      // another issuer's such certificate still reads (inspect shows it)
      assert.deepEqual(parseCertificate(forgeCertificate(ca, subject.publicKey, {principals: []})).principals, [])
    })

    it('an empty principal (it would not mean "any", it would name nobody) and NUL in a principal', async () => {
      for (const principals of [[''], ['alice', ''], ['alice\0root'], ['\0']]) {
        await assert.rejects(signCertificate(template({principals}), signer()), TypeError, JSON.stringify(principals))
      }
      // a JSON-shaped caller can hand over anything: an array would be written as bytes of nothing
      for (const odd of [42, ['root'], {length: 0}, null]) {
        await assert.rejects(
          signCertificate(template({principals: [odd as unknown as string]}), signer()),
          TypeError,
          JSON.stringify(odd),
        )
      }
    })

    it('a NUL byte in, or an empty, option name; a NUL byte in a force-command or source-address', async () => {
      for (const name of ['permit-pty\0', '\0', '']) {
        await assert.rejects(
          signCertificate(template({extensions: {[name]: true}}), signer()),
          TypeError,
          JSON.stringify(name),
        )
        await assert.rejects(
          signCertificate(template({criticalOptions: {[name]: true}}), signer()),
          TypeError,
          JSON.stringify(name),
        )
        assert.throws(() => encodeOptions({[name]: true}), TypeError)
      }
      await assert.rejects(
        signCertificate(template({criticalOptions: {'force-command': '/bin/true\0; /bin/sh'}}), signer()),
        TypeError,
      )
      await assert.rejects(
        signCertificate(template({criticalOptions: {'source-address': '10.0.0.1\0,0.0.0.0/0'}}), signer()),
        TypeError,
      )
      // as a flag or raw bytes they would reach sshd as something it refuses
      await assert.rejects(signCertificate(template({criticalOptions: {'force-command': true}}), signer()), TypeError)
      await assert.rejects(
        signCertificate(template({criticalOptions: {'source-address': Buffer.from('10.0.0.1')}}), signer()),
        TypeError,
      )
      // an empty force-command is a value (run nothing), not a flag
      assert.equal(
        parseCertificate((await signCertificate(template({criticalOptions: {'force-command': ''}}), signer())).blob)
          .criticalOptions['force-command'],
        '',
      )
    })

    it('a NUL byte in the key ID; an empty key ID is allowed (OpenSSH allows it)', async () => {
      await assert.rejects(signCertificate(template({keyId: 'alice\0'}), signer()), TypeError)
      assert.equal(parseCertificate((await signCertificate(template({keyId: ''}), signer())).blob).keyId, '')
    })

    it('validity outside 0 .. FOREVER, or empty', async () => {
      await assert.rejects(signCertificate(template({validAfter: -1n, validBefore: 10n}), signer()), TypeError)
      await assert.rejects(signCertificate(template({validAfter: 0n, validBefore: FOREVER + 1n}), signer()), TypeError)
      await assert.rejects(signCertificate(template({validAfter: 11n, validBefore: 10n}), signer()), TypeError)
      const oneSecond = parseCertificate(
        (await signCertificate(template({validAfter: 0n, validBefore: 1n}), signer())).blob,
      )
      assert.deepEqual([oneSecond.validAfter, oneSecond.validBefore], [0n, 1n])
    })
  })

  it('returns what it signed, as copies the caller cannot change afterwards', async () => {
    const t = template()
    const cert = await signCertificate(t, keySigner(ca.keyObject))
    const parsed = parseCertificate(cert.blob)
    for (const field of [
      'type',
      'keyType',
      'serial',
      'keyId',
      'principals',
      'validAfter',
      'validBefore',
      'criticalOptions',
      'extensions',
      'reserved',
      'signature',
      'signatureAlgorithm',
      'nonce',
    ] as const) {
      assert.deepEqual(cert[field], parsed[field], field)
    }
    assert.equal(cert.signedLength, parsed.signedLength)
    ;(t.principals as string[]).push('root')
    t.criticalOptions!['force-command'] = '/bin/sh'
    t.extensions!['permit-X11-forwarding'] = true
    assert.deepEqual(cert.principals, ['alice', 'alice@example.com'])
    assert.deepEqual(cert.criticalOptions, parsed.criticalOptions)
    assert.deepEqual(cert.extensions, parsed.extensions)
  })

  it('knows certificate types by suffix and base key type', () => {
    assert.equal(isCertificateType('ssh-ed25519-cert-v01@openssh.com'), true)
    assert.equal(isCertificateType('ecdsa-sha2-nistp521-cert-v01@openssh.com'), true)
    assert.equal(isCertificateType('ssh-dss-cert-v01@openssh.com'), false)
    assert.equal(isCertificateType('ssh-ed25519'), false)
    assert.equal(isCertificateType('ssh-ed25519-cert-v00@openssh.com'), false)
  })

  it('tells a plain key (a format error) from a certificate type it does not support', () => {
    throwsCode(() => parseCertificate(subject.publicKey.blob), 'ERR_SSH_FORMAT')
    const dss = new SshWriter().string('ssh-dss-cert-v01@openssh.com').string(Buffer.alloc(32)).toBuffer()
    throwsCode(() => parseCertificate(dss), 'ERR_SSH_UNSUPPORTED')
  })

  it("refuses a *-cert.pub line whose type is not the certificate's", async () => {
    const cert = await signCertificate(template(), keySigner(ca.keyObject))
    const line = certificateLine(cert)
    assert.equal(line, `${cert.keyType} ${cert.blob.toString('base64')}`)
    throwsCode(() => parseCertificateLine(line.replace(/^ecdsa-sha2-nistp256/, 'ssh-ed25519')), 'ERR_SSH_FORMAT')
  })

  it('counts time in whole seconds, rounding down', () => {
    assert.equal(
      nowSeconds(() => 1_700_000_000_999),
      1_700_000_000n,
    )
    assert.equal(
      nowSeconds(() => 999),
      0n,
    )
    const now = nowSeconds()
    assert.ok(now >= BigInt(Math.floor(Date.now() / 1000)) - 1n && now <= BigInt(Math.floor(Date.now() / 1000)))
  })
})
