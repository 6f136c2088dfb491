/**
 * Regressions found by the fuzz suite (test/fuzz/): hostile bytes that made src/ssh throw something
 * other than an SshcaError, or build what it cannot read back. Each test performs the input.
 */
import assert from 'node:assert/strict'
import {encodeOptions, parseCertificate, signCertificate, type CertOptions} from '../../../src/ssh/cert.ts'
import {formatOpenSshPrivateKey, generatePrivateKey, parsePrivateKeyFile} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {SshReader, SshWriter} from '../../../src/ssh/wire.ts'

const BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----'
const END = '-----END OPENSSH PRIVATE KEY-----'

/** An openssh-key-v1 RSA file whose private values went through `edit` (n, e, d, iqmp, p, q). */
function rsaFileWith(edit: (values: Buffer[]) => void): string {
  const key = generatePrivateKey('rsa', 2048)
  const raw = Buffer.from(
    formatOpenSshPrivateKey(key, 'c').replace(BEGIN, '').replace(END, '').replace(/\s+/g, ''),
    'base64',
  )
  const head = raw.subarray(0, 15)
  const r = new SshReader(raw.subarray(15))
  const [cipher, kdf, kdfOptions] = [r.bytes(), r.bytes(), r.bytes()]
  r.u32()
  const pub = r.bytes()
  const section = new SshReader(r.bytes())
  const check = section.u32()
  section.u32()
  section.text()
  const values = [0, 1, 2, 3, 4, 5].map(() => Buffer.from(section.mpint()))
  edit(values)
  const inner = new SshWriter().u32(check).u32(check).string('ssh-rsa')
  for (const v of values) inner.mpint(v)
  inner.string('c')
  let body = inner.toBuffer()
  body = Buffer.concat([body, Buffer.from([1, 2, 3, 4, 5, 6, 7].slice(0, (8 - (body.length % 8)) % 8))])
  const file = new SshWriter()
    .raw(head)
    .string(cipher)
    .string(kdf)
    .string(kdfOptions)
    .u32(1)
    .string(pub)
    .string(body)
    .toBuffer()
  return `${BEGIN}\n${file.toString('base64')}\n${END}\n`
}

describe('hostile input to src/ssh (fuzz regressions)', () => {
  it('an RSA private key file with p = 1 is ERR_SSH_FORMAT, not a RangeError (division by zero)', () => {
    assert.throws(() => parsePrivateKeyFile(rsaFileWith((v) => void (v[4] = Buffer.of(1)))), {
      code: 'ERR_SSH_FORMAT',
      message: /p·q is not n/,
    })
    assert.throws(() => parsePrivateKeyFile(rsaFileWith((v) => void (v[5] = Buffer.of(1)))), {code: 'ERR_SSH_FORMAT'})
    assert.throws(() => parsePrivateKeyFile(rsaFileWith((v) => void (v[4] = Buffer.alloc(0)))), {
      code: 'ERR_SSH_FORMAT',
    })
  })

  it('an RSA private key file whose primes do not multiply to n is refused', () => {
    // p and q swapped for other numbers of the right size: node:crypto would import it and sign garbage
    assert.throws(() => parsePrivateKeyFile(rsaFileWith((v) => void (v[4] = Buffer.from(v[5]!).fill(0x7f, 1)))), {
      code: 'ERR_SSH_FORMAT',
      message: /p·q is not n/,
    })
    // the untouched file still reads
    assert.ok(parsePrivateKeyFile(rsaFileWith(() => undefined)).key.publicKey)
  })

  describe('force-command and source-address take exactly one NUL-free string, as in OpenSSH', () => {
    // made in before(): a describe body that throws (a mutant in the key code) is a crash to Stryker
    let ca: ReturnType<typeof generatePrivateKey>
    let subject: ReturnType<typeof generatePrivateKey>
    before(() => {
      ca = generatePrivateKey('ed25519')
      subject = generatePrivateKey('ed25519')
    })
    const sign = (criticalOptions: CertOptions) =>
      signCertificate(
        {
          type: 'user',
          publicKey: subject.publicKey,
          serial: 1n,
          keyId: 'k',
          principals: ['a'],
          validAfter: 0n,
          validBefore: 10n,
          criticalOptions,
        },
        keySigner(ca.keyObject),
      )

    it('the builder refuses raw bytes, a flag or a NUL for them (it wrote certificates its own parser refused)', async () => {
      await assert.rejects(sign({'force-command': Buffer.of(0)}), TypeError)
      await assert.rejects(sign({'source-address': true}), TypeError)
      await assert.rejects(sign({'force-command': 'ls\0rm -rf /'}), TypeError)
      assert.throws(() => encodeOptions({'force-command': Buffer.from('x')}), TypeError)
      assert.deepEqual(
        parseCertificate((await sign({'force-command': '', 'verify-required': true})).blob).criticalOptions,
        {'force-command': '', 'verify-required': true},
      )
    })

    it('the parser refuses empty data or a NUL inside the string', async () => {
      const good = await sign({'force-command': 'AAAA'})
      const withData = (data: Buffer): Buffer => {
        // replace the option's data: critical options = string(string name, string data)
        const opts = new SshWriter().string('force-command').string(data).toBuffer()
        const old = new SshWriter().string('force-command').string(new SshWriter().string('AAAA').toBuffer()).toBuffer()
        const at = good.blob.indexOf(old)
        const body = Buffer.concat([
          good.blob.subarray(0, at - 4),
          new SshWriter().string(opts).toBuffer(),
          good.blob.subarray(at + old.length),
        ])
        return body
      }
      assert.throws(() => parseCertificate(withData(Buffer.alloc(0))), {code: 'ERR_SSH_FORMAT'})
      assert.throws(() => parseCertificate(withData(new SshWriter().string('ls\0x').toBuffer())), {
        code: 'ERR_SSH_FORMAT',
        message: /NUL/,
      })
      assert.equal(
        parseCertificate(withData(new SshWriter().string('BBBB').toBuffer())).criticalOptions['force-command'],
        'BBBB',
      )
    })
  })
})
