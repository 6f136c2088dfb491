/**
 * OpenSSH public keys (RFC 4253 §6.6, RFC 5656, RFC 8709): wire blobs, authorized_keys lines and
 * SHA256 fingerprints exactly as `ssh-keygen -l` prints them. ECDSA points are checked against the
 * curve equation when parsed; the node:crypto KeyObject is built on first use (importing costs
 * ~50 µs, and the CA only embeds subject keys, it never verifies with them).
 */
import type {JsonWebKey, KeyObject} from 'node:crypto'
import {SshcaError} from '../errors.ts'
import {nodeCrypto} from '../util/node-crypto.ts'
import {fixedWidth, formatError, SshReader, SshWriter} from './wire.ts'

export const KEY_TYPES = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'ssh-rsa',
] as const
export type KeyType = (typeof KEY_TYPES)[number]

interface Curve {
  readonly sshName: 'nistp256' | 'nistp384' | 'nistp521'
  readonly jwkCrv: 'P-256' | 'P-384' | 'P-521'
  readonly size: number
  readonly hash: 'sha256' | 'sha384' | 'sha512'
  readonly bits: number
  /** Field prime and b of y² = x³ − 3x + b (FIPS 186-4 / SEC 2). */
  readonly p: bigint
  readonly b: bigint
}

export const CURVES: Readonly<Record<string, Curve>> = {
  'ecdsa-sha2-nistp256': {
    sshName: 'nistp256',
    jwkCrv: 'P-256',
    size: 32,
    hash: 'sha256',
    bits: 256,
    p: 2n ** 256n - 2n ** 224n + 2n ** 192n + 2n ** 96n - 1n,
    b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
  },
  'ecdsa-sha2-nistp384': {
    sshName: 'nistp384',
    jwkCrv: 'P-384',
    size: 48,
    hash: 'sha384',
    bits: 384,
    p: 2n ** 384n - 2n ** 128n - 2n ** 96n + 2n ** 32n - 1n,
    b: 0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aefn,
  },
  'ecdsa-sha2-nistp521': {
    sshName: 'nistp521',
    jwkCrv: 'P-521',
    size: 66,
    hash: 'sha512',
    bits: 521,
    p: 2n ** 521n - 1n,
    b: 0x0051953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00n,
  },
}

/** True when (x, y) satisfies the curve equation with both coordinates below p. */
export function onCurve(curve: Curve, x: Buffer, y: Buffer): boolean {
  const X = BigInt(`0x${x.toString('hex')}`)
  const Y = BigInt(`0x${y.toString('hex')}`)
  const {p, b} = curve
  if (X >= p || Y >= p) return false
  return (Y * Y) % p === (((X * X * X - 3n * X + b) % p) + p) % p
}

export function isKeyType(s: string): s is KeyType {
  return (KEY_TYPES as readonly string[]).includes(s)
}

export function curveOf(type: KeyType): Curve | undefined {
  return CURVES[type]
}

const b64u = (b: Buffer): string => b.toString('base64url')
const fromB64u = (s: string | undefined, what: string): Buffer => {
  if (typeof s !== 'string') throw new TypeError(`JWK is missing ${what}`)
  return Buffer.from(s, 'base64url')
}

/**
 * A key or certificate line's comment, on that line: control characters (a newline above all) become
 * spaces. Comments come from elsewhere (a key ID or provisioner name the CA chose, an agent's
 * comment), and a newline in one would add lines of its choosing to the file the line is written to.
 */
// eslint-disable-next-line no-control-regex -- the point: the characters that end or break a line
export const oneLineComment = (comment: string): string => comment.replace(/[\x00-\x1f\x7f\u2028\u2029]/g, ' ')

export class PublicKey {
  private fp?: string
  private key?: KeyObject
  private readonly jwk?: JsonWebKey
  readonly type: KeyType
  /** The wire encoding (string type, then the key's fields). */
  readonly blob: Buffer
  readonly bits: number

  private constructor(type: KeyType, blob: Buffer, key: KeyObject | JsonWebKey, bits: number) {
    this.type = type
    this.blob = blob
    this.bits = bits
    if ((key as KeyObject).type === 'public') this.key = key as KeyObject
    else this.jwk = key as JsonWebKey
  }

  /** The key in node:crypto, imported on first use; ERR_SSH_FORMAT when node rejects it. */
  get keyObject(): KeyObject {
    this.key ??= importJwk(this.jwk!, this.type)
    return this.key
  }

  /** Parses a wire blob; the blob must be exactly one key with no trailing bytes. */
  static fromBlob(blob: Buffer): PublicKey {
    const r = new SshReader(blob)
    const type = r.text('key type')
    if (!isKeyType(type)) throw unsupported(type)
    const {jwk, bits} = readKeyFields(type, r)
    r.end('public key')
    return new PublicKey(type, Buffer.from(blob), jwk, bits)
  }

  /** Reads the key-specific fields of `type` from `r` (as they appear inside a certificate). */
  static fromFields(type: KeyType, r: SshReader): PublicKey {
    const {jwk, bits, w} = readKeyFields(type, r)
    return new PublicKey(type, w.toBuffer(), jwk, bits)
  }

  static fromKeyObject(key: KeyObject): PublicKey {
    const pub = key.type === 'private' ? nodeCrypto().createPublicKey(key) : key
    const jwk = pub.export({format: 'jwk'})
    const w = new SshWriter()
    let type: KeyType
    let bits: number
    if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') {
      type = 'ssh-ed25519'
      bits = 256
      w.string(type).string(fromB64u(jwk.x, 'x'))
    } else if (jwk.kty === 'EC') {
      const entry = Object.entries(CURVES).find(([, c]) => c.jwkCrv === jwk.crv)
      if (!entry) throw unsupported(`EC curve ${jwk.crv}`)
      const [name, curve] = entry
      type = name as KeyType
      bits = curve.bits
      const point = Buffer.concat([
        Buffer.of(4),
        fixedWidth(fromB64u(jwk.x, 'x'), curve.size, 'x'),
        fixedWidth(fromB64u(jwk.y, 'y'), curve.size, 'y'),
      ])
      w.string(type).string(curve.sshName).string(point)
    } else if (jwk.kty === 'RSA') {
      type = 'ssh-rsa'
      const n = fromB64u(jwk.n, 'n')
      bits = bitLength(n)
      w.string(type).mpint(fromB64u(jwk.e, 'e')).mpint(n)
    } else {
      throw unsupported(`${jwk.kty} key`)
    }
    return new PublicKey(type, w.toBuffer(), pub, bits)
  }

  /** Parses `type base64 [comment]`, also with authorized_keys options in front. */
  static parseLine(line: string): {key: PublicKey; comment: string} {
    const {type, blob, comment} = splitKeyLine(line)
    if (type.endsWith('-cert-v01@openssh.com'))
      throw formatError(`expected a public key, found a certificate (${type})`)
    const key = PublicKey.fromBlob(blob)
    if (key.type !== type) throw formatError(`key line says ${type} but the key is ${key.type}`)
    return {key, comment}
  }

  /** The fields after the type string: what a certificate embeds. */
  get fields(): Buffer {
    return this.blob.subarray(4 + this.blob.readUInt32BE(0))
  }

  /** `SHA256:<base64 without padding>` as ssh-keygen prints it. */
  fingerprint(): string {
    this.fp ??= sha256Fingerprint(this.blob)
    return this.fp
  }

  /** The label ssh-keygen uses: ED25519, ECDSA, RSA. */
  get label(): 'ED25519' | 'ECDSA' | 'RSA' {
    return this.type === 'ssh-ed25519' ? 'ED25519' : this.type === 'ssh-rsa' ? 'RSA' : 'ECDSA'
  }

  toLine(comment?: string): string {
    return `${this.type} ${this.blob.toString('base64')}${comment ? ` ${oneLineComment(comment)}` : ''}`
  }

  equals(other: PublicKey): boolean {
    return this.blob.equals(other.blob)
  }
}

function readKeyFields(type: KeyType, r: SshReader): {jwk: JsonWebKey; bits: number; w: SshWriter} {
  const w = new SshWriter().string(type)
  if (type === 'ssh-ed25519') {
    const pk = r.bytes('ed25519 key')
    if (pk.length !== 32) throw formatError(`ed25519 key is ${pk.length} bytes, expected 32`)
    w.string(pk)
    return {jwk: {kty: 'OKP', crv: 'Ed25519', x: b64u(pk)}, bits: 256, w}
  }
  const curve = CURVES[type]
  if (curve) {
    const name = r.text('curve name')
    if (name !== curve.sshName) throw formatError(`${type} key names curve ${name}`)
    const q = r.bytes('ecdsa point')
    if (q.length !== 1 + 2 * curve.size || q[0] !== 4)
      throw formatError(`${type} point is not an uncompressed ${curve.jwkCrv} point`)
    w.string(name).string(q)
    const x = q.subarray(1, 1 + curve.size)
    const y = q.subarray(1 + curve.size)
    if (!onCurve(curve, x, y)) throw formatError(`${type} point is not on the curve`)
    return {jwk: {kty: 'EC', crv: curve.jwkCrv, x: b64u(x), y: b64u(y)}, bits: curve.bits, w}
  }
  // ssh-rsa: e then n
  const e = r.mpint('rsa e')
  const n = r.mpint('rsa n')
  if (n.length === 0 || e.length === 0) throw formatError('rsa key has an empty modulus or exponent')
  w.mpint(e).mpint(n)
  return {jwk: {kty: 'RSA', n: b64u(n), e: b64u(e)}, bits: bitLength(n), w}
}

function importJwk(jwk: JsonWebKey, type: string): KeyObject {
  try {
    return nodeCrypto().createPublicKey({key: jwk, format: 'jwk'})
  } catch (err) {
    throw formatError(`${type} key is not a valid public key`, err)
  }
}

export function bitLength(magnitude: Buffer): number {
  let i = 0
  while (i < magnitude.length && magnitude[i] === 0) i++
  if (i === magnitude.length) return 0
  return (magnitude.length - i - 1) * 8 + (32 - Math.clz32(magnitude[i]!))
}

export function sha256Fingerprint(blob: Buffer): string {
  return `SHA256:${nodeCrypto().createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`
}

/**
 * Splits an authorized_keys/known_hosts-style line into its key type, decoded blob and comment.
 * Options before the key type (authorized_keys) are skipped, honouring double quotes.
 */
export function splitKeyLine(line: string): {type: string; blob: Buffer; comment: string} {
  let s = line.trim()
  if (s === '') throw formatError('empty key line')
  const first = s.split(/\s+/, 1)[0]!
  if (!looksLikeKeyType(first)) {
    // authorized_keys options: up to the first whitespace outside double quotes
    let quoted = false
    let i = 0
    for (; i < s.length; i++) {
      const c = s[i]!
      if (c === '\\' && quoted) i++
      else if (c === '"') quoted = !quoted
      else if (!quoted && (c === ' ' || c === '\t')) break
    }
    s = s.slice(i).trim()
  }
  // the comment runs to the end of the line, whatever it holds (a CR too: sshd takes it)
  const m = /^(\S+)\s+([A-Za-z0-9+/]+={0,2})(?:\s+([\s\S]*))?$/.exec(s)
  if (!m) throw formatError('not a key line: expected "<type> <base64> [comment]"')
  const type = m[1]!
  const blob = Buffer.from(m[2]!, 'base64')
  if (blob.toString('base64') !== m[2]) throw formatError('key line has malformed base64')
  const inner = new SshReader(blob).text('key type')
  if (inner !== type) throw formatError(`key line says ${type} but the encoded key is ${inner}`)
  return {type, blob, comment: (m[3] ?? '').trim()}
}

function looksLikeKeyType(s: string): boolean {
  return /^(ssh-|ecdsa-sha2-|sk-|rsa-sha2-)/.test(s)
}

function unsupported(what: string): SshcaError {
  return new SshcaError('ERR_SSH_UNSUPPORTED', `unsupported key type: ${what}`, {
    hint: 'sshca accepts ssh-ed25519, ecdsa-sha2-nistp256/384/521 and ssh-rsa keys',
  })
}
