/**
 * Fuzzing OpenSSH public keys (wire blobs and authorized_keys lines), openssh-key-v1 private key
 * files and KRLs: round trips are byte-identical; hostile input only ever raises SshcaError.
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {buildKrl, parseKrl, type KrlInput} from '../../src/ssh/krl.ts'
import {PublicKey} from '../../src/ssh/keys.ts'
import {formatOpenSshPrivateKey, parsePrivateKeyFile, type PrivateKey} from '../../src/ssh/private-key.ts'
import {SshReader, SshWriter} from '../../src/ssh/wire.ts'
import {
  anyKey,
  fieldMutated,
  hostileBytes,
  KEY_FIELDS,
  keyPool,
  KEY_KINDS,
  onlySshcaError,
  splitFields,
  sshText,
} from './arbitraries.ts'
import {bounded, property} from './fuzz.ts'

const KEY_TYPES = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'ssh-rsa',
  'ssh-dss',
  'sk-ssh-ed25519@openssh.com',
  'nistp256',
  'nistp384',
  'nistp521',
]

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1')
const BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----'
const END = '-----END OPENSSH PRIVATE KEY-----'

const allKeys = () => KEY_KINDS.flatMap((k) => keyPool()[k])
const comment = sshText({maxLength: 40}).map((s) => s.trim().replace(/\s+/g, ' '))

/** authorized_keys options as people write them, quotes and escapes included (none named like a key type). */
const keyOptions = fc
  .array(
    fc.oneof(
      fc.constantFrom(
        'no-pty',
        'restrict',
        'cert-authority',
        'command="echo \\"hi there\\""',
        'from="10.0.0.0/8,!10.1.*"',
        'principals="alice,bob"',
        'environment="A=b c"',
      ),
      fc
        .string({unit: 'grapheme-ascii', maxLength: 12})
        .filter((s) => !/[\s"]/.test(s) && s !== '' && !/^(ssh-|ecdsa-sha2-|sk-|rsa-sha2-)/.test(s)),
    ),
    {minLength: 1, maxLength: 4},
  )
  .map((o) => o.join(','))

/** A string edit: what a hand edit or a bad paste does to a key line. */
function mutatedText(base: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const edit = fc.oneof(
    fc
      .record({
        at: fc.nat(),
        s: fc.oneof(
          fc.constantFrom(
            ' ',
            '\t',
            '\n',
            '\r\n',
            '"',
            '\\',
            '=',
            '==',
            '+',
            '/',
            '-',
            '_',
            '\0',
            'ssh-rsa ',
            '\u00a0',
            '🔑',
          ),
          fc.string({maxLength: 8}),
        ),
      })
      .map(
        ({at, s}) =>
          (t: string) =>
            t.slice(0, at % (t.length + 1)) + s + t.slice(at % (t.length + 1)),
      ),
    fc.record({at: fc.nat(), n: fc.integer({min: 1, max: 16})}).map(
      ({at, n}) =>
        (t: string) =>
          t.slice(0, at % (t.length + 1)) + t.slice((at % (t.length + 1)) + n),
    ),
    fc.nat().map((at) => (t: string) => t.slice(0, at % (t.length + 1))),
  )
  return fc.tuple(base, fc.array(edit, {minLength: 1, maxLength: 3})).map(([t, es]) => es.reduce((acc, e) => e(acc), t))
}

describe('fuzz: OpenSSH public keys, private key files, KRLs', function () {
  before(() => keyPool())

  property(
    'public keys: blob → parse → blob and line → parse → line are identical, for every key type',
    300,
    fc.property(anyKey(), comment, fc.option(keyOptions, {nil: undefined}), (key, c, opts) => {
      const pub = key.publicKey
      const parsed = PublicKey.fromBlob(pub.blob)
      assert.ok(parsed.blob.equals(pub.blob))
      assert.equal(parsed.fingerprint(), pub.fingerprint())
      assert.equal(parsed.bits, pub.bits)
      // the parsed key imports into node:crypto as the same key
      assert.ok(PublicKey.fromKeyObject(parsed.keyObject).blob.equals(pub.blob))
      const line = pub.toLine(c)
      const back = PublicKey.parseLine(opts === undefined ? line : `${opts} ${line}`)
      assert.ok(back.key.blob.equals(pub.blob))
      assert.equal(back.comment, c)
      assert.equal(back.key.toLine(back.comment), line)
    }),
  )

  property(
    'PublicKey.fromBlob on hostile bytes: SshcaError only, quickly; what parses round-trips',
    4000,
    fc.property(
      hostileBytes(
        fc.constantFrom(...allKeys().map((k) => k.publicKey.blob)),
        KEY_TYPES,
        fc
          .constantFrom(...allKeys())
          .map((k) => splitFields(k.publicKey.blob, ['s', ...KEY_FIELDS[k.publicKey.type]!])),
      ),
      (blob) => {
        const key = bounded(1000, 'PublicKey.fromBlob', () =>
          onlySshcaError('PublicKey.fromBlob', () => PublicKey.fromBlob(blob)),
        )
        if (!key) return
        assert.ok(key.blob.equals(blob))
        onlySshcaError('keyObject', () => key.keyObject)
        assert.ok(PublicKey.parseLine(key.toLine('x')).key.blob.equals(blob))
      },
    ),
  )

  property(
    'PublicKey.parseLine on hostile lines: SshcaError only, quickly',
    3000,
    fc.property(
      fc.oneof(
        fc.string({maxLength: 400}),
        fc.string({unit: 'binary', maxLength: 400}),
        mutatedText(
          fc
            .tuple(fc.constantFrom(...allKeys()), comment, fc.option(keyOptions, {nil: undefined}))
            .map(([k, c, o]) => (o ? `${o} ` : '') + k.publicKey.toLine(c)),
        ),
        fc
          .tuple(fc.constantFrom(...KEY_TYPES), fc.base64String({maxLength: 300}), comment)
          .map(([t, b, c]) => `${t} ${b} ${c}`),
      ),
      (line) => {
        const r = bounded(1000, 'PublicKey.parseLine', () =>
          onlySshcaError('PublicKey.parseLine', () => PublicKey.parseLine(line)),
        )
        if (r) assert.ok(PublicKey.fromBlob(r.key.blob).equals(r.key))
      },
    ),
  )

  property(
    'a long hostile key line (authorized_keys options, quotes, 64 KiB) parses or fails quickly',
    30,
    fc.property(
      fc.constantFrom(' ', '"', '\\', 'a', 'ssh-', 'AAAA', '= ', '\t"'),
      fc.integer({min: 1000, max: 16_000}),
      fc.constantFrom(...allKeys()),
      (unit, n, k) => {
        for (const line of [
          unit.repeat(n),
          `${unit.repeat(n)} ${k.publicKey.toLine()}`,
          `${k.publicKey.toLine()} ${unit.repeat(n)}`,
          `ssh-ed25519 ${'A'.repeat(n * 4)}!`,
        ]) {
          bounded(1500, `parseLine of ${line.length} chars`, () =>
            onlySshcaError('PublicKey.parseLine', () => PublicKey.parseLine(line)),
          )
        }
      },
    ),
  )

  property(
    'private key files: format → parse → format is identical (but for the random check bytes), for every key type',
    100,
    fc.property(anyKey(), sshText({maxLength: 60}), (key, c) => {
      const file = formatOpenSshPrivateKey(key, c)
      const parsed = parsePrivateKeyFile(file)
      assert.ok(parsed.key.publicKey.equals(key.publicKey))
      assert.equal(parsed.comment, Buffer.from(c).toString())
      assert.equal(withCheckBytesOf(file, formatOpenSshPrivateKey(parsed.key, parsed.comment)), file)
    }),
  )

  property(
    'parsePrivateKeyFile on hostile files: SshcaError only, quickly',
    3000,
    fc.property(
      fc.oneof(
        {
          weight: 4,
          arbitrary: hostileBytes(
            fc.constantFrom(...allKeys().map((k) => privateKeyBytes(formatOpenSshPrivateKey(k, 'fuzz')))),
            ['none', 'aes256-ctr', 'bcrypt', ...KEY_TYPES],
          ).map((b) =>
            armor(Buffer.concat([MAGIC, b.subarray(b.subarray(0, MAGIC.length).equals(MAGIC) ? MAGIC.length : 0)])),
          ),
        },
        // the private section field by field: check bytes, type, key values, comment, padding
        {
          weight: 4,
          arbitrary: fieldMutated(fc.constantFrom(...allKeys()).map(privateSectionFields), KEY_TYPES).map((section) =>
            armor(withPrivateSection(section)),
          ),
        },
        {
          weight: 2,
          arbitrary: mutatedText(fc.constantFrom(...allKeys().map((k) => formatOpenSshPrivateKey(k, 'fuzz')))),
        },
        {
          weight: 1,
          arbitrary: mutatedText(
            fc.constantFrom(
              ...allKeys()
                .slice(0, 4)
                .map((k) => k.keyObject.export({type: 'pkcs8', format: 'pem'}) as string),
            ),
          ),
        },
        {
          weight: 1,
          arbitrary: fc
            .string({maxLength: 300})
            .map((s) => `-----BEGIN OPENSSH PRIVATE KEY-----\n${s}\n-----END OPENSSH PRIVATE KEY-----`),
        },
        {weight: 1, arbitrary: fc.string({maxLength: 300})},
      ),
      (text) => {
        const r = bounded(2000, 'parsePrivateKeyFile', () =>
          onlySshcaError('parsePrivateKeyFile', () => parsePrivateKeyFile(text)),
        )
        if (r) assert.ok(PublicKey.fromBlob(r.key.publicKey.blob).equals(r.key.publicKey))
      },
    ),
  )

  property(
    'parsePrivateKeyFile with edge-case key values (zero, one, off-curve, swapped): SshcaError only',
    1000,
    fc.property(
      fc.constantFrom(...allKeys()).chain((k) => {
        const fields = privateSectionFields(k)
        const values = fields.slice(3, -2)
        const edge = fc.oneof(
          fc
            .constantFrom(
              Buffer.alloc(0),
              Buffer.of(0),
              Buffer.of(1),
              Buffer.of(2),
              Buffer.of(3),
              Buffer.of(0xff),
              Buffer.alloc(66, 0xff),
              Buffer.alloc(32, 0),
            )
            .map((b) => Buffer.from(new SshWriter().mpint(b).toBuffer())),
          fc.constantFrom(...values),
          fc
            .uint8Array({minLength: 1, maxLength: 70})
            .map((b) => Buffer.from(new SshWriter().mpint(Buffer.from(b)).toBuffer())),
        )
        return fc.tuple(
          fc.constant(fields),
          fc.array(fc.option(edge, {freq: 2}), {minLength: values.length, maxLength: values.length}),
        )
      }),
      ([fields, replace]) => {
        const section = [...fields.slice(0, 3), ...replace.map((r, i) => r ?? fields[3 + i]!), ...fields.slice(-2)]
        let body = Buffer.concat(section.slice(0, -1))
        body = Buffer.concat([body, Buffer.from([1, 2, 3, 4, 5, 6, 7].slice(0, (8 - (body.length % 8)) % 8))])
        bounded(2000, 'parsePrivateKeyFile', () =>
          onlySshcaError('parsePrivateKeyFile', () => parsePrivateKeyFile(armor(withPrivateSection(body)))),
        )
      },
    ),
  )

  property(
    'KRLs: build → parse → build is byte-identical',
    500,
    fc.property(
      fc.record({
        version: fc.bigInt({min: 0n, max: 0xffff_ffff_ffff_ffffn}),
        generatedAt: fc.bigInt({min: 0n, max: 0xffff_ffff_ffff_ffffn}),
        comment: sshText({maxLength: 40}),
        sections: fc.array(
          fc.record({
            caKey: anyKey().map((k) => k.publicKey),
            serials: fc.array(fc.bigInt({min: 0n, max: 0xffff_ffff_ffff_ffffn}), {maxLength: 20}),
            keyIds: fc.array(sshText({maxLength: 30}), {maxLength: 10}),
          }),
          {maxLength: 4},
        ),
      }),
      (input: KrlInput) => {
        const krl = buildKrl(input)
        const parsed = parseKrl(krl)
        assert.equal(parsed.version, input.version)
        assert.equal(parsed.generatedAt, input.generatedAt)
        assert.equal(parsed.comment, input.comment)
        const rebuilt = buildKrl({
          ...parsed,
          sections: parsed.sections.map((s) => ({
            caKey: PublicKey.fromBlob(s.caKeyBlob),
            serials: s.serials,
            keyIds: s.keyIds,
          })),
        })
        assert.ok(rebuilt.equals(krl))
        // every non-zero serial and every key ID the input revoked is in the list
        for (const s of input.sections) {
          const out = parsed.sections.find(
            (p) =>
              p.caKeyBlob.equals(s.caKey.blob) &&
              s.serials.filter((n) => n !== 0n).every((n) => p.serials.includes(n)) &&
              s.keyIds.every((id) => p.keyIds.includes(id)),
          )
          assert.ok(out || (s.serials.every((n) => n === 0n) && s.keyIds.length === 0), 'a revocation went missing')
        }
      },
    ),
  )

  property(
    'parseKrl on hostile bytes: SshcaError only, quickly; what parses rebuilds',
    4000,
    fc.property(
      hostileBytes(
        fc.constantFrom(
          ...[0, 1, 2].map((i) =>
            buildKrl({
              version: BigInt(i),
              generatedAt: 1_700_000_000n,
              comment: 'sshca',
              sections: allKeys()
                .slice(i * 3, i * 3 + 3)
                .map((k, j) => ({
                  caKey: k.publicKey,
                  serials: [1n, 2n, BigInt(j) << 40n],
                  keyIds: j === 0 ? [] : ['alice', 'host:web'],
                })),
            }),
          ),
        ),
      ).map((b) =>
        b.length > 8 && b.readUInt32BE(0) !== 0x5353484b
          ? Buffer.concat([Buffer.from('SSHKRL\n\0', 'latin1'), b.subarray(8)])
          : b,
      ),
      (buf) => {
        const krl = bounded(1000, 'parseKrl', () => onlySshcaError('parseKrl', () => parseKrl(buf)))
        if (!krl) return
        krl.sections.map((s) => onlySshcaError('PublicKey.fromBlob', () => PublicKey.fromBlob(s.caKeyBlob)))
      },
    ),
  )
})

function privateKeyBytes(file: string): Buffer {
  return Buffer.from(file.replace(BEGIN, '').replace(END, '').replace(/\s+/g, ''), 'base64')
}

function armor(raw: Buffer): string {
  return `${BEGIN}\n${(raw.toString('base64').match(/.{1,70}/g) ?? []).join('\n')}\n${END}\n`
}

const PRIVATE_FIELDS: Record<string, number> = {'ssh-ed25519': 2, 'ssh-rsa': 6}

/** The private section of a key's openssh-key-v1 file, split into check bytes, fields, comment, padding. */
function privateSectionFields(key: PrivateKey): Buffer[] {
  const raw = privateKeyBytes(formatOpenSshPrivateKey(key, 'fuzz'))
  const r = new SshReader(raw.subarray(MAGIC.length))
  for (let i = 0; i < 5; i++)
    if (i === 3) r.u32()
    else r.bytes()
  const section = Buffer.from(r.bytes())
  const n = PRIVATE_FIELDS[key.publicKey.type] ?? 3
  return splitFields(section, ['4', '4', 's', ...Array<'s'>(n).fill('s'), 's', '*'])
}

/** A whole openssh-key-v1 file around `section`, with the public key whose private values it holds (if any). */
function withPrivateSection(section: Buffer): Buffer {
  const pub = allKeys().find((k) => section.includes(k.publicKey.fields.subarray(-16))) ?? keyPool().ed25519[0]!
  return Buffer.concat([
    MAGIC,
    new SshWriter()
      .string('none')
      .string('none')
      .string('')
      .u32(1)
      .string(pub.publicKey.blob)
      .string(section)
      .toBuffer(),
  ])
}

/** `file` with the 8 check bytes of `reference` (the only bytes that differ between two writes). */
function withCheckBytesOf(reference: string, file: string): string {
  const offsetOfCheck = (raw: Buffer): number => {
    const r = new SshReader(raw.subarray(MAGIC.length))
    for (let i = 0; i < 3; i++) r.bytes()
    r.u32()
    r.bytes()
    r.u32()
    return raw.length - r.remaining
  }
  const ref = privateKeyBytes(reference)
  const raw = privateKeyBytes(file)
  const at = offsetOfCheck(raw)
  assert.equal(at, offsetOfCheck(ref))
  ref.copy(raw, at, at, at + 8)
  return armor(raw)
}
