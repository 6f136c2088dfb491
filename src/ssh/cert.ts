/**
 * OpenSSH certificates (PROTOCOL.certkeys): build and sign, parse (keeping unknown options byte for
 * byte) and verify. This file is the only place in sshca that knows the certificate layout.
 */
import {SshcaError} from '../errors.ts'
import {randomBytesPooled} from '../util/random.ts'
import {isKeyType, oneLineComment, PublicKey, splitKeyLine, type KeyType} from './keys.ts'
import {signatureAlgorithm, verifySignature, type SignatureCheck, type Signer} from './signature.ts'
import {formatError, SshReader, SshWriter} from './wire.ts'

export const CERT_SUFFIX = '-cert-v01@openssh.com'
/** valid_before for a certificate that never expires. */
export const FOREVER = 0xffff_ffff_ffff_ffffn

export type CertType = 'user' | 'host'
const CERT_TYPE_CODE: Record<CertType, number> = {user: 1, host: 2}

/**
 * An option's value: a string option (force-command, source-address) is a string, wrapped as an SSH
 * string on the wire; a flag (permit-pty, verify-required) is `true` (empty data); an option this
 * tool does not know keeps its raw data bytes.
 */
export type OptionValue = string | true | Buffer
export type CertOptions = Record<string, OptionValue>

/** Critical options whose data is one SSH string. */
export const STRING_OPTIONS: ReadonlySet<string> = new Set(['force-command', 'source-address'])
/** The extensions OpenSSH defines (PROTOCOL.certkeys): ca.yaml may grant these and no other. */
export const KNOWN_EXTENSIONS: ReadonlySet<string> = new Set([
  'no-touch-required',
  'permit-X11-forwarding',
  'permit-agent-forwarding',
  'permit-port-forwarding',
  'permit-pty',
  'permit-user-rc',
])

export interface CertificateTemplate {
  type: CertType
  publicKey: PublicKey
  serial: bigint
  keyId: string
  /** Empty means "any principal": never issue that for users without meaning it. */
  principals: readonly string[]
  /** Seconds since the epoch; 0 means "always". */
  validAfter: bigint
  /** Seconds since the epoch; FOREVER means never expires. */
  validBefore: bigint
  criticalOptions?: CertOptions
  extensions?: CertOptions
  /** 32 random bytes unless given (tests pass a fixed nonce). */
  nonce?: Buffer
}

export interface Certificate extends Required<Omit<CertificateTemplate, 'nonce'>> {
  readonly keyType: string
  readonly nonce: Buffer
  readonly reserved: Buffer
  readonly signatureKey: PublicKey
  /** The signature blob (`string alg, string sig`). */
  readonly signature: Buffer
  readonly signatureAlgorithm: string
  /** The whole wire encoding. */
  readonly blob: Buffer
  /** How many leading bytes of `blob` the signature covers. */
  readonly signedLength: number
}

export function certTypeName(keyType: KeyType): string {
  return keyType + CERT_SUFFIX
}

export function isCertificateType(s: string): boolean {
  return s.endsWith(CERT_SUFFIX) && isKeyType(s.slice(0, -CERT_SUFFIX.length))
}

/** Builds the to-be-signed body, signs it with `signer` (async: the key may be in an HSM) and returns the parsed result. */
export async function signCertificate(t: CertificateTemplate, signer: Signer): Promise<Certificate> {
  validateTemplate(t)
  const nonce = t.nonce ?? randomBytesPooled(32)
  const keyType = certTypeName(t.publicKey.type)
  const w = new SshWriter()
    .string(keyType)
    .string(nonce)
    .raw(t.publicKey.fields)
    .u64(t.serial)
    .u32(CERT_TYPE_CODE[t.type])
    .string(t.keyId)
    .string(packStrings(t.principals))
    .u64(t.validAfter)
    .u64(t.validBefore)
    .string(encodeOptions(t.criticalOptions ?? {}))
    .string(encodeOptions(t.extensions ?? {}))
    .string(Buffer.alloc(0))
    .string(signer.publicKey.blob)
  const body = w.toBuffer()
  const signature = await signer.sign(body)
  const blob = Buffer.concat([body, stringBytes(signature)])
  return {
    type: t.type,
    keyType,
    nonce,
    publicKey: t.publicKey,
    serial: t.serial,
    keyId: t.keyId,
    principals: [...t.principals],
    validAfter: t.validAfter,
    validBefore: t.validBefore,
    criticalOptions: {...t.criticalOptions},
    extensions: {...t.extensions},
    reserved: Buffer.alloc(0),
    signatureKey: signer.publicKey,
    signature,
    signatureAlgorithm: signatureAlgorithm(signature),
    blob,
    signedLength: body.length,
  }
}

function validateTemplate(t: CertificateTemplate): void {
  // Stryker disable ConditionalExpression,CallExpression: without it the body's u32(undefined) throws the same TypeError
  if (t.type !== 'user' && t.type !== 'host')
    throw new TypeError(`certificate type must be user or host, not ${String(t.type)}`)
  // Stryker restore ConditionalExpression,CallExpression
  // validity outside 0 .. FOREVER is refused by SshWriter.u64 as the body is written
  if (t.validAfter >= t.validBefore)
    throw new TypeError(`certificate validity is empty: ${t.validAfter} .. ${t.validBefore}`)
  // OpenSSH reads an empty list as every user (or every host name): no policy means that, so it is a bug
  if (t.principals.length === 0)
    throw new TypeError('a certificate needs at least one principal: without any, OpenSSH accepts it for every name')
  for (const p of t.principals) checkText(p, 'principal')
  checkText(t.keyId, 'key ID', true)
}

function checkText(s: string, what: string, allowEmpty = false): void {
  if (typeof s !== 'string' || (!allowEmpty && s === '') || s.includes('\0'))
    throw new TypeError(`invalid ${what}: ${JSON.stringify(s)}`)
}

function packStrings(list: readonly string[]): Buffer {
  const w = new SshWriter()
  for (const s of list) w.string(s)
  return w.toBuffer()
}

function stringBytes(b: Buffer): Buffer {
  return new SshWriter().string(b).toBuffer()
}

/** Options sorted by name (bytewise, as OpenSSH's strcmp), each `string name, string data`. */
export function encodeOptions(options: CertOptions): Buffer {
  const names = Object.keys(options).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
  const w = new SshWriter()
  for (const name of names) {
    checkText(name, 'option name')
    const v = options[name]!
    if (STRING_OPTIONS.has(name) && typeof v !== 'string') throw new TypeError(`option ${name} takes a string`)
    w.string(name)
    if (v === true) w.string(Buffer.alloc(0))
    else if (typeof v === 'string') {
      checkText(v, `${name} value`, true)
      // Stryker disable next-line StringLiteral: '' falls back to the default encoding, utf8
      w.string(stringBytes(Buffer.from(v, 'utf8')))
    } else w.string(v)
  }
  return w.toBuffer()
}

function decodeOptions(raw: Buffer, what: string): CertOptions {
  const r = new SshReader(raw)
  const out: CertOptions = Object.create(null) as CertOptions
  while (r.remaining > 0) {
    const name = r.cstring(`${what} name`)
    if (name === '') throw formatError(`${what} has an empty name`)
    if (Object.hasOwn(out, name)) throw formatError(`${what} "${name}" appears twice`)
    const data = r.bytes(`${what} data`)
    if (STRING_OPTIONS.has(name)) {
      // exactly one C string, as OpenSSH reads it: an empty, NUL-bearing or longer value is refused
      const inner = new SshReader(data)
      const value = inner.cstring(`${name} value`)
      inner.end(`${name} value`)
      out[name] = value
    } else if (data.length === 0) {
      out[name] = true
    } else {
      out[name] = Buffer.from(data)
    }
  }
  return {...out}
}

/** Parses a certificate wire blob. Does not verify the signature: call verifyCertificate. */
export function parseCertificate(blob: Buffer): Certificate {
  const r = new SshReader(blob)
  const keyType = r.text('certificate type')
  if (!isCertificateType(keyType)) {
    if (isKeyType(keyType)) throw formatError(`expected a certificate, found a plain ${keyType} public key`)
    throw new SshcaError('ERR_SSH_UNSUPPORTED', `unsupported certificate type: ${keyType}`)
  }
  const baseType = keyType.slice(0, -CERT_SUFFIX.length) as KeyType
  const nonce = Buffer.from(r.bytes('nonce'))
  const publicKey = PublicKey.fromFields(baseType, r)
  const serial = r.u64()
  const typeCode = r.u32()
  const type: CertType | undefined = typeCode === 1 ? 'user' : typeCode === 2 ? 'host' : undefined
  if (!type) throw formatError(`unknown certificate type code ${typeCode}`)
  // key ID, principals, option names and string option values: C strings for OpenSSH (PROTOCOL.certkeys)
  const keyId = r.cstring('key ID')
  const pr = new SshReader(r.bytes('principals'))
  const principals: string[] = []
  while (pr.remaining > 0) principals.push(pr.cstring('principal'))
  const validAfter = r.u64()
  const validBefore = r.u64()
  const criticalOptions = decodeOptions(r.bytes('critical options'), 'critical option')
  const extensions = decodeOptions(r.bytes('extensions'), 'extension')
  const reserved = Buffer.from(r.bytes('reserved'))
  const signatureKeyBlob = r.bytes('signature key')
  const sigType = new SshReader(signatureKeyBlob).text('signature key type')
  if (isCertificateType(sigType)) throw formatError('chained certificates (signed by a certificate) are not allowed')
  const signatureKey = PublicKey.fromBlob(signatureKeyBlob)
  const signedLength = blob.length - r.remaining
  const signature = Buffer.from(r.bytes('signature'))
  r.end('certificate')
  return {
    type,
    keyType,
    nonce,
    publicKey,
    serial,
    keyId,
    principals,
    validAfter,
    validBefore,
    criticalOptions,
    extensions,
    reserved,
    signatureKey,
    signature,
    signatureAlgorithm: signatureAlgorithm(signature),
    blob: Buffer.from(blob),
    signedLength,
  }
}

/** Checks the CA signature over the certificate body with the embedded signature key. */
export function verifyCertificate(cert: Certificate): SignatureCheck {
  return verifySignature(cert.signatureKey, cert.blob.subarray(0, cert.signedLength), cert.signature)
}

/** Parses `<type>-cert-v01@openssh.com <base64> [comment]` (what ssh-keygen writes to *-cert.pub). */
export function parseCertificateLine(line: string): {cert: Certificate; comment: string} {
  // splitKeyLine has checked that the line's type is the one the blob starts with
  const {blob, comment} = splitKeyLine(line)
  return {cert: parseCertificate(blob), comment}
}

export function certificateLine(cert: Pick<Certificate, 'keyType' | 'blob'>, comment?: string): string {
  return `${cert.keyType} ${cert.blob.toString('base64')}${comment ? ` ${oneLineComment(comment)}` : ''}`
}

export type ValidityState = 'valid' | 'not-yet-valid' | 'expired'

/** OpenSSH's rule: valid after <= now < valid before. `now` in seconds. */
export function validityAt(cert: Pick<Certificate, 'validAfter' | 'validBefore'>, now: bigint): ValidityState {
  if (now < cert.validAfter) return 'not-yet-valid'
  if (now >= cert.validBefore) return 'expired'
  return 'valid'
}

export function nowSeconds(clock: () => number = Date.now): bigint {
  return BigInt(Math.floor(clock() / 1000))
}
