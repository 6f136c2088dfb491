/**
 * The X.509 side: a root (the trust anchor clients pin by fingerprint), an intermediate that signs
 * the API's TLS certificate, and that TLS certificate. ECDSA P-256 throughout, as step-ca does.
 */
// @peculiar/x509 resolves its parsers through tsyringe, which needs the Reflect metadata API
import 'reflect-metadata'
import {createHash, createPublicKey, KeyObject, webcrypto} from 'node:crypto'
import {isIP} from 'node:net'
import * as x509 from '@peculiar/x509'

type CryptoKey = webcrypto.CryptoKey
type CryptoKeyPair = webcrypto.CryptoKeyPair

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])

const ALG = {name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256'} as const
const DAY = 86_400_000

export interface IssuedCert {
  pem: string
  der: Buffer
  key: KeyObject
  cert: x509.X509Certificate
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair
}

function toKeyObject(k: CryptoKey): KeyObject {
  return KeyObject.from(k)
}

async function toCryptoKey(k: KeyObject): Promise<CryptoKey> {
  const der = k.export({type: 'pkcs8', format: 'der'})
  return (await webcrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign'])) as CryptoKey
}

function issued(cert: x509.X509Certificate, key: KeyObject): IssuedCert {
  // PEM with a final newline, so certificates concatenate into a valid chain
  return {pem: `${cert.toString('pem').trimEnd()}\n`, der: Buffer.from(cert.rawData), key, cert}
}

/** SHA-256 of the DER, lowercase hex: what `sshca bootstrap --fingerprint` takes. */
export function certFingerprint(der: Buffer | ArrayBuffer): string {
  return createHash('sha256')
    .update(Buffer.from(der as ArrayBuffer))
    .digest('hex')
}

/** Whether `key` is the private half of the key `cert` certifies. */
export function keyMatchesCert(key: KeyObject, cert: x509.X509Certificate): boolean {
  const mine = createPublicKey(key).export({type: 'spki', format: 'der'})
  return mine.equals(Buffer.from(cert.publicKey.rawData))
}

export function pemToDer(pem: string): Buffer {
  return Buffer.from(new x509.X509Certificate(pem).rawData)
}

/**
 * A self-signed root; `generation` > 1 names a rotated root ("… Root CA 2"), so its subject differs
 * from its predecessor's, and allows two CA certificates below it (its predecessor's certificate
 * from it, then an intermediate): the chain a rotation presents to clients that pin only it.
 */
export async function createRoot(name: string, now = new Date(), generation = 1): Promise<IssuedCert> {
  const keys = await newKeys()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${escapeRdn(name)} Root CA${generation > 1 ? ` ${generation}` : ''}`,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + 10 * 365 * DAY),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, generation > 1 ? 2 : 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  })
  return issued(cert, toKeyObject(keys.privateKey))
}

/** An intermediate under `root`, valid `validDays` (never beyond the root itself). */
export async function createIntermediate(
  name: string,
  root: {cert: x509.X509Certificate; key: KeyObject},
  now = new Date(),
  validDays = 10 * 365 - 1,
): Promise<IssuedCert> {
  const keys = await newKeys()
  const notAfter = new Date(Math.min(now.getTime() + validDays * DAY, root.cert.notAfter.getTime()))
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${escapeRdn(name)} Intermediate CA`,
    issuer: root.cert.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter,
    publicKey: keys.publicKey,
    signingKey: await toCryptoKey(root.key),
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(root.cert),
    ],
  })
  return issued(cert, toKeyObject(keys.privateKey))
}

/**
 * Another CA certificate for an existing CA's subject and key, issued by another CA (a
 * cross-certificate): a root rotation makes the new root's from the old root (how clients learn the
 * new root), and the twins that let one TLS chain verify for clients pinning either root.
 */
export async function crossCertify(
  subject: x509.X509Certificate,
  issuer: {cert: x509.X509Certificate; key: KeyObject},
  pathLength: number,
  now = new Date(),
): Promise<IssuedCert> {
  const cert = await x509.X509CertificateGenerator.create({
    subject: subject.subject,
    issuer: issuer.cert.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: issuer.cert.notAfter < subject.notAfter ? issuer.cert.notAfter : subject.notAfter,
    publicKey: subject.publicKey,
    signingKey: await toCryptoKey(issuer.key),
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, pathLength, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(subject.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.cert),
    ],
  })
  return {pem: `${cert.toString('pem').trimEnd()}\n`, der: Buffer.from(cert.rawData), key: issuer.key, cert}
}

/** The API's TLS certificate: every name in `names` as a DNS or IP subject alternative name. */
export async function createTlsCert(
  names: readonly string[],
  intermediate: {cert: x509.X509Certificate; key: KeyObject},
  validDays = 365,
  now = new Date(),
): Promise<IssuedCert> {
  if (names.length === 0) throw new TypeError('a TLS certificate needs at least one name')
  const keys = await newKeys()
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${escapeRdn(names[0]!)}`,
    issuer: intermediate.cert.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + validDays * DAY),
    publicKey: keys.publicKey,
    signingKey: await toCryptoKey(intermediate.key),
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(
        names.map((n) => ({type: isIP(n) ? ('ip' as const) : ('dns' as const), value: n})),
      ),
      await x509.AuthorityKeyIdentifierExtension.create(intermediate.cert),
    ],
  })
  return issued(cert, toKeyObject(keys.privateKey))
}

export function parseCert(pem: string): x509.X509Certificate {
  return new x509.X509Certificate(pem)
}

/** The DNS names and IPs a TLS certificate covers. */
export function subjectAltNames(cert: x509.X509Certificate): string[] {
  const ext = cert.getExtension(x509.SubjectAlternativeNameExtension)
  return ext ? ext.names.items.map((n) => n.value) : []
}

function escapeRdn(s: string): string {
  return s.replace(/([,+"\\<>;=])/g, '\\$1')
}

/**
 * step's X.509 identity certificate (the `identityCSR` of POST /ssh/sign): a client certificate for
 * the CSR's key, bound to one SSH certificate: its serial is that certificate's serial, its validity
 * that certificate's, its subject that certificate's key ID. Nothing else is taken from the CSR (no
 * names, no extensions), and it can authenticate a TLS client only (clientAuth, not a CA), so it can
 * never pass for the CA's server certificate.
 */
/** A certificate request whose signature was checked, with an acceptable key. */
export type IdentityCsr = x509.Pkcs10CertificateRequest & {readonly checked: true}

/**
 * The DER of the one PEM certificate request in `pem`, read by hand: @peculiar/x509 finds PEM blocks
 * with a regular expression that backtracks exponentially on header continuation lines (a few hundred
 * bytes of spaces held the event loop for seconds, more for years), and the CA reads an identityCSR
 * from anyone, before the token. Whitespace (CRLF too) is allowed around and inside the base64; PEM
 * headers, other labels and a second block are not.
 */
function csrDer(pem: string): Uint8Array {
  const text = pem.trim()
  for (const label of ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']) {
    const begin = `-----BEGIN ${label}-----`
    const end = `-----END ${label}-----`
    if (!text.startsWith(begin) || !text.endsWith(end) || text.length < begin.length + end.length) continue
    const body = text.slice(begin.length, text.length - end.length).replace(/[ \t\r\n]/g, '')
    if (body.length === 0 || body.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(body))
      throw new TypeError('its base64 is malformed')
    return new Uint8Array(Buffer.from(body, 'base64'))
  }
  throw new TypeError('expected one -----BEGIN CERTIFICATE REQUEST----- block')
}

export async function readIdentityCsr(csrPem: string): Promise<IdentityCsr> {
  let csr: x509.Pkcs10CertificateRequest
  try {
    csr = new x509.Pkcs10CertificateRequest(csrDer(csrPem))
  } catch (err) {
    throw new TypeError(`identityCSR is not a PEM certificate request: ${(err as Error).message}`, {cause: err})
  }
  const alg = csr.publicKey.algorithm as {name: string; namedCurve?: string; modulusLength?: number}
  // the keys the API's TLS takes a client certificate of (http/app.ts, TLS_SIGALGS): an identity of
  // another key could never be presented. Judged before its signature is checked (and before the
  // token): an RSA key of a huge exponent or modulus made that check cost many times a normal one, for
  // anyone; curves cost what they cost
  const ok = (alg.name === 'ECDSA' && ['P-256', 'P-384'].includes(alg.namedCurve ?? '')) || alg.name === 'Ed25519'
  if (!ok)
    throw new TypeError(
      `identityCSR's key (${alg.name} ${alg.namedCurve ?? alg.modulusLength ?? ''}) is not ECDSA P-256/P-384 or Ed25519, the keys this CA's TLS takes a client certificate of`,
    )
  const valid = await csr.verify().catch(() => false)
  if (!valid) throw new TypeError('identityCSR is not signed by the key it carries')
  return csr as IdentityCsr
}

export async function createIdentityCert(
  csr: IdentityCsr,
  bind: {serial: bigint; keyId: string; notBefore: Date; notAfter: Date},
  intermediate: {cert: x509.X509Certificate; key: KeyObject},
): Promise<IssuedCertificate> {
  const hex = bind.serial.toString(16).padStart(16, '0')
  const cert = await x509.X509CertificateGenerator.create({
    // DER INTEGERs are signed: a leading 00 keeps a serial with its top bit set positive
    serialNumber: /^[89a-f]/.test(hex) ? `00${hex}` : hex,
    subject: `CN=${escapeRdn(bind.keyId)}`,
    issuer: intermediate.cert.subject,
    notBefore: bind.notBefore,
    notAfter: bind.notAfter,
    publicKey: csr.publicKey,
    signingKey: await toCryptoKey(intermediate.key),
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      await x509.AuthorityKeyIdentifierExtension.create(intermediate.cert),
    ],
  })
  return {pem: `${cert.toString('pem').trimEnd()}\n`, der: Buffer.from(cert.rawData)}
}

export interface IssuedCertificate {
  pem: string
  der: Buffer
}

export const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2'
