/**
 * Fuzzing OpenSSH certificates: every certificate sshca builds parses back to the same fields and
 * rebuilds byte for byte (all subject and CA key types); hostile bytes only ever raise SshcaError,
 * in parseCertificate, verifyCertificate and the certificate line parser, and never take long.
 */
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import fc from 'fast-check'
import {
  CERT_SUFFIX,
  certificateLine,
  FOREVER,
  KNOWN_EXTENSIONS,
  parseCertificate,
  STRING_OPTIONS,
  parseCertificateLine,
  signCertificate,
  validityAt,
  verifyCertificate,
  type CertificateTemplate,
  type CertOptions,
  type OptionValue,
} from '../../src/ssh/cert.ts'
import {CURVES} from '../../src/ssh/keys.ts'
import type {PrivateKey} from '../../src/ssh/private-key.ts'
import {keySigner, verifySignature, type Signer} from '../../src/ssh/signature.ts'
import {SshReader, SshWriter} from '../../src/ssh/wire.ts'
import {
  anyKey,
  hostileBytes,
  KEY_FIELDS,
  keyPool,
  KEY_KINDS,
  onlySshcaError,
  splitFields,
  sshText,
} from './arbitraries.ts'
import {bounded, property} from './fuzz.ts'

/** The critical options OpenSSH knows (PROTOCOL.certkeys): what the generated certificates draw from. */
const KNOWN_CRITICAL_OPTIONS: ReadonlySet<string> = new Set(['force-command', 'source-address', 'verify-required'])

const U64 = fc.bigInt({min: 0n, max: FOREVER})

const optionValue: fc.Arbitrary<OptionValue> = fc.oneof(
  fc.constant(true as const),
  sshText({maxLength: 40}),
  fc.uint8Array({minLength: 1, maxLength: 40}).map((b) => Buffer.from(b)),
)
/** Options with any names and values; force-command and source-address take strings (else TypeError). */
const options = (known: ReadonlySet<string>): fc.Arbitrary<CertOptions> =>
  fc
    .dictionary(fc.oneof(fc.constantFrom(...known), sshText({minLength: 1, maxLength: 24})), optionValue, {
      maxKeys: 6,
      noNullPrototype: true,
    })
    .map((o) =>
      Object.fromEntries(
        Object.entries(o).map(([k, v]) => [
          k,
          STRING_OPTIONS.has(k) && typeof v !== 'string' ? (v === true ? '' : v.toString('hex')) : v,
        ]),
      ),
    )

const template = fc.record({
  type: fc.constantFrom('user' as const, 'host' as const),
  subject: anyKey(),
  ca: anyKey(),
  rsaAlgorithm: fc.constantFrom('rsa-sha2-256' as const, 'rsa-sha2-512' as const),
  serial: U64,
  keyId: sshText({maxLength: 64}),
  // at least one: signCertificate refuses an empty list (OpenSSH reads it as every name)
  principals: fc.array(sshText({minLength: 1, maxLength: 32}), {minLength: 1, maxLength: 8}),
  validAfter: fc.bigInt({min: 0n, max: FOREVER - 1n}),
  span: fc.oneof(fc.bigInt({min: 1n, max: 1n << 40n}), fc.constant(FOREVER)),
  criticalOptions: options(KNOWN_CRITICAL_OPTIONS),
  extensions: options(KNOWN_EXTENSIONS),
  nonce: fc.uint8Array({maxLength: 48}).map((b) => Buffer.from(b)),
  comment: sshText({maxLength: 30}).map((s) => s.trim().replace(/\s+/g, ' ')),
})
type Generated = typeof template extends fc.Arbitrary<infer T> ? T : never

function toTemplate(g: Generated): CertificateTemplate {
  const validBefore = g.validAfter + g.span > FOREVER ? FOREVER : g.validAfter + g.span
  return {
    type: g.type,
    publicKey: g.subject.publicKey,
    serial: g.serial,
    keyId: g.keyId,
    principals: g.principals,
    validAfter: g.validAfter,
    validBefore,
    criticalOptions: g.criticalOptions,
    extensions: g.extensions,
    nonce: g.nonce,
  }
}

/**
 * An option as it reads back: empty data is a flag; force-command and source-address are strings;
 * the data of any other option is raw bytes (a string value was written as an SSH string).
 */
const normal = (o: CertOptions): Record<string, unknown> =>
  Object.fromEntries(
    Object.entries(o).map(([k, v]) => {
      const data = v === true ? Buffer.alloc(0) : typeof v === 'string' ? new SshWriter().string(v).toBuffer() : v
      if (data.length === 0) return [k, true]
      if (STRING_OPTIONS.has(k) && typeof v === 'string') return [k, Buffer.from(v).toString()]
      return [k, data.toString('hex')]
    }),
  )

/**
 * A signer whose ECDSA signatures are derived from the data (not valid, but the same every run),
 * so the corpus of certificates the mutations start from does not depend on random nonces.
 */
function fixedSigner(key: PrivateKey): Signer {
  const curve = CURVES[key.publicKey.type]
  if (!curve) return keySigner(key.keyObject)
  return {
    publicKey: key.publicKey,
    sign: async (data) => {
      const h = createHash('sha512').update(data).digest()
      const part = (i: number) => Buffer.concat([h, h]).subarray(i, i + Math.min(curve.size, 64))
      return new SshWriter()
        .string(key.publicKey.type)
        .string(new SshWriter().mpint(part(0)).mpint(part(7)).toBuffer())
        .toBuffer()
    },
  }
}

/** Valid certificates of every subject/CA key type pairing, with options, extensions and principals. */
async function buildCertCorpus(): Promise<Buffer[]> {
  const pool = keyPool()
  const corpus: Buffer[] = []
  for (const [i, s] of KEY_KINDS.entries()) {
    for (const c of KEY_KINDS) {
      corpus.push(
        (
          await signCertificate(
            {
              type: i % 2 === 0 ? 'user' : 'host',
              publicKey: pool[s][0]!.publicKey,
              serial: BigInt(i) * 0x1_0000_0001n,
              keyId: `fuzz-${s}-${c}`,
              principals: ['alice', 'root', 'web-1.example.com'].slice(0, 1 + (i % 3)),
              validAfter: 1_700_000_000n,
              validBefore: i === 4 ? FOREVER : 1_700_086_400n,
              criticalOptions:
                i % 2 === 0
                  ? {'force-command': '/bin/true', 'source-address': '10.0.0.0/8', 'verify-required': true}
                  : {'unknown@example.com': Buffer.from('opaque')},
              extensions: {'permit-pty': true, 'permit-agent-forwarding': true, 'login@github.com': 'octocat'},
              nonce: Buffer.alloc(32, i),
            },
            fixedSigner(pool[c][1]!),
          )
        ).blob,
      )
    }
  }
  return corpus
}
// signing is asynchronous (a CA key may be in an HSM): the corpus is made as the module loads
const CORPUS = await buildCertCorpus()
const certCorpus = (): Buffer[] => CORPUS

/** A certificate's top-level fields (PROTOCOL.certkeys), each with its length prefix. */
function certFields(blob: Buffer): Buffer[] {
  const type = new SshReader(blob).text().replace(CERT_SUFFIX, '')
  return splitFields(blob, ['s', 's', ...KEY_FIELDS[type]!, '8', '4', 's', 's', '8', '8', 's', 's', 's', 's', 's'])
}

const TYPE_NAMES = [
  'ssh-ed25519-cert-v01@openssh.com',
  'ecdsa-sha2-nistp256-cert-v01@openssh.com',
  'ecdsa-sha2-nistp521-cert-v01@openssh.com',
  'ssh-rsa-cert-v01@openssh.com',
  'ssh-dss-cert-v01@openssh.com',
  'ssh-ed25519',
]

describe('fuzz: OpenSSH certificates', function () {
  before(() => {
    keyPool()
    certCorpus()
  })

  property(
    'build → parse → build is byte-identical, for every subject and CA key type',
    200,
    fc.asyncProperty(template, async (g) => {
      const t = toTemplate(g)
      const signer = keySigner(g.ca.keyObject, g.rsaAlgorithm)
      const cert = await signCertificate(t, signer)
      const parsed = parseCertificate(cert.blob)
      assert.equal(parsed.type, t.type)
      assert.equal(parsed.keyType, `${t.publicKey.type}-cert-v01@openssh.com`)
      assert.ok(parsed.publicKey.equals(t.publicKey))
      assert.ok(parsed.nonce.equals(g.nonce))
      assert.equal(parsed.serial, t.serial)
      assert.equal(parsed.keyId, t.keyId)
      assert.deepEqual(parsed.principals, t.principals)
      assert.equal(parsed.validAfter, t.validAfter)
      assert.equal(parsed.validBefore, t.validBefore)
      assert.deepEqual(normal(parsed.criticalOptions), normal(t.criticalOptions!))
      assert.deepEqual(normal(parsed.extensions), normal(t.extensions!))
      assert.ok(parsed.signatureKey.equals(g.ca.publicKey))
      assert.equal(parsed.signedLength, cert.signedLength)
      assert.ok(parsed.signature.equals(cert.signature))
      assert.equal(verifyCertificate(parsed).valid, true)
      // rebuild from what was parsed: the signed body is the same bytes; ed25519 and RSA signatures
      // are deterministic, so the whole blob is too (ECDSA signs with a fresh nonce each time)
      const again = await signCertificate({...parsed, nonce: parsed.nonce}, signer)
      assert.ok(again.blob.subarray(0, again.signedLength).equals(cert.blob.subarray(0, cert.signedLength)))
      if (!CURVES[g.ca.publicKey.type]) assert.ok(again.blob.equals(cert.blob))
      const line = parseCertificateLine(certificateLine(cert, g.comment))
      assert.ok(line.cert.blob.equals(cert.blob))
      assert.equal(line.comment, g.comment)
    }),
  )

  property(
    'parseCertificate and verifyCertificate on hostile bytes: SshcaError only, quickly',
    4000,
    fc.property(
      hostileBytes(fc.constantFrom(...certCorpus()), TYPE_NAMES, fc.constantFrom(...certCorpus()).map(certFields)),
      (blob) => {
        const cert = bounded(1000, 'parseCertificate', () =>
          onlySshcaError('parseCertificate', () => parseCertificate(blob)),
        )
        if (!cert) return
        // whatever parses can be verified, printed and read back without any other exception
        bounded(1000, 'verifyCertificate', () => onlySshcaError('verifyCertificate', () => verifyCertificate(cert)))
        validityAt(cert, 1_700_000_100n)
        cert.publicKey.fingerprint()
        const line = onlySshcaError('parseCertificateLine', () => parseCertificateLine(certificateLine(cert, 'c')))
        assert.ok(line === undefined || line.cert.blob.equals(blob))
      },
    ),
  )

  property(
    'verifySignature on hostile signature blobs: SshcaError or a verdict, for every key type',
    2000,
    fc.property(
      anyKey(),
      fc.uint8Array({maxLength: 64}),
      fc.oneof(
        fc.uint8Array({maxLength: 600}).map((b) => Buffer.from(b)),
        fc
          .tuple(
            fc.constantFrom(
              'ssh-ed25519',
              'ecdsa-sha2-nistp256',
              'ecdsa-sha2-nistp384',
              'ecdsa-sha2-nistp521',
              'rsa-sha2-256',
              'rsa-sha2-512',
              'ssh-rsa',
              '',
            ),
            fc.uint8Array({maxLength: 80}),
            fc.uint8Array({maxLength: 80}),
            fc.uint8Array({maxLength: 520}),
            fc.nat({max: 3}),
          )
          .map(([alg, r, s, raw, shape]) => {
            const inner =
              shape === 0
                ? Buffer.from(raw)
                : shape === 1
                  ? new SshWriter().mpint(Buffer.from(r)).mpint(Buffer.from(s)).toBuffer()
                  : shape === 2
                    ? new SshWriter().string(r).string(s).toBuffer()
                    : new SshWriter().mpint(Buffer.from(r)).toBuffer()
            return new SshWriter().string(alg).string(inner).toBuffer()
          }),
      ),
      (key, data, sig) => {
        const check = onlySshcaError('verifySignature', () => verifySignature(key.publicKey, Buffer.from(data), sig))
        if (check) assert.equal(check.valid, false, 'a random signature verified')
      },
    ),
  )
})
