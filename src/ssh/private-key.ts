/**
 * Private keys: generated in memory with node:crypto, read from and written to OpenSSH's
 * `openssh-key-v1` format (PROTOCOL.key), and laid out as ssh-agent expects them (PROTOCOL.agent).
 * Files are written by the callers through writeSecretFile (0600, atomic); nothing here touches disk.
 */
import type {JsonWebKey, KeyObject} from 'node:crypto'
import {SshcaError} from '../errors.ts'
import {nodeCrypto} from '../util/node-crypto.ts'
import {CURVES, PublicKey, type KeyType} from './keys.ts'
import {fixedWidth, formatError, SshReader, SshWriter} from './wire.ts'

export type KeyKind = 'ed25519' | 'ecdsa' | 'ecdsa-p384' | 'ecdsa-p521' | 'rsa'

export interface PrivateKey {
  readonly keyObject: KeyObject
  readonly publicKey: PublicKey
}

export function generatePrivateKey(kind: KeyKind = 'ed25519', rsaBits = 3072): PrivateKey {
  const {generateKeyPairSync} = nodeCrypto()
  let pair: {privateKey: KeyObject}
  switch (kind) {
    case 'ed25519':
      pair = generateKeyPairSync('ed25519')
      break
    case 'ecdsa':
      pair = generateKeyPairSync('ec', {namedCurve: 'P-256'})
      break
    case 'ecdsa-p384':
      pair = generateKeyPairSync('ec', {namedCurve: 'P-384'})
      break
    case 'ecdsa-p521':
      pair = generateKeyPairSync('ec', {namedCurve: 'P-521'})
      break
    case 'rsa':
      pair = generateKeyPairSync('rsa', {modulusLength: rsaBits})
      break
    default:
      throw new TypeError(`unknown key kind: ${String(kind)}`)
  }
  return fromKeyObject(pair.privateKey)
}

export function fromKeyObject(keyObject: KeyObject): PrivateKey {
  if (keyObject.type !== 'private') throw new TypeError('expected a private key')
  return {keyObject, publicKey: PublicKey.fromKeyObject(keyObject)}
}

const b = (s: string | undefined): Buffer => {
  if (typeof s !== 'string') throw new TypeError('incomplete private JWK')
  return Buffer.from(s, 'base64url')
}

/**
 * The private fields that follow a certificate in SSH2_AGENTC_ADD_IDENTITY for a `*-cert-v01` key
 * (PROTOCOL.agent): ed25519: string A, string k||A; ecdsa: mpint d; rsa: mpint d, iqmp, p, q.
 */
export function agentCertPrivateFields(key: PrivateKey, w: SshWriter): void {
  const jwk = key.keyObject.export({format: 'jwk'})
  const type = key.publicKey.type
  if (type === 'ssh-ed25519') {
    const a = b(jwk.x)
    w.string(a).string(Buffer.concat([b(jwk.d), a]))
  } else if (CURVES[type]) {
    w.mpint(b(jwk.d))
  } else {
    w.mpint(b(jwk.d)).mpint(b(jwk.qi)).mpint(b(jwk.p)).mpint(b(jwk.q))
  }
}

/**
 * The key-specific private fields of a plain key, as in openssh-key-v1 and SSH2_AGENTC_ADD_IDENTITY:
 * the certificate layout preceded by the public values it omits (ecdsa: curve, Q; rsa: n, e).
 */
function privateFields(key: PrivateKey, w: SshWriter): void {
  const type = key.publicKey.type
  if (CURVES[type]) {
    w.raw(key.publicKey.fields)
  } else if (type === 'ssh-rsa') {
    const jwk = key.keyObject.export({format: 'jwk'})
    w.mpint(b(jwk.n)).mpint(b(jwk.e))
  }
  agentCertPrivateFields(key, w)
}

/** The plain-key body of SSH2_AGENTC_ADD_IDENTITY: string type, private fields. */
export function agentKeyFields(key: PrivateKey, w: SshWriter): void {
  w.string(key.publicKey.type)
  privateFields(key, w)
}

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1')
const BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----'
const END = '-----END OPENSSH PRIVATE KEY-----'

/** Serializes an unencrypted openssh-key-v1 file, byte-compatible with `ssh-keygen -N ''`. */
export function formatOpenSshPrivateKey(key: PrivateKey, comment = ''): string {
  const check = nodeCrypto().randomBytes(4)
  const inner = new SshWriter().raw(check).raw(check)
  agentKeyFields(key, inner)
  inner.string(comment)
  let body = inner.toBuffer()
  const pad = (8 - (body.length % 8)) % 8
  body = Buffer.concat([body, Buffer.from(Array.from({length: pad}, (_, i) => i + 1))])
  const file = new SshWriter()
    .raw(MAGIC)
    .string('none')
    .string('none')
    .string(Buffer.alloc(0))
    .u32(1)
    .string(key.publicKey.blob)
    .string(body)
    .toBuffer()
  const b64 = file.toString('base64')
  const lines = b64.match(/.{1,70}/g) ?? []
  return `${BEGIN}\n${lines.join('\n')}\n${END}\n`
}

/**
 * Reads an OpenSSH private key file: openssh-key-v1 (unencrypted) or the PEM formats node:crypto
 * reads (PKCS#8, PKCS#1, SEC1). Passphrase-protected openssh-key-v1 files are refused with a hint.
 */
export function parsePrivateKeyFile(text: string): {key: PrivateKey; comment: string} {
  const trimmed = text.trim()
  if (!trimmed.startsWith(BEGIN)) {
    if (/^-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type: 4,ENCRYPTED/m.test(trimmed)) throw encrypted()
    try {
      return {key: fromKeyObject(nodeCrypto().createPrivateKey({key: trimmed})), comment: ''}
    } catch (err) {
      throw formatError('not a private key file (expected OpenSSH or PEM format)', err)
    }
  }
  if (!trimmed.endsWith(END)) throw formatError('OpenSSH private key file is truncated')
  const b64 = trimmed.slice(BEGIN.length, -END.length).replace(/\s+/g, '')
  const raw = Buffer.from(b64, 'base64')
  if (!raw.subarray(0, MAGIC.length).equals(MAGIC)) throw formatError('not an openssh-key-v1 file')
  const r = new SshReader(raw.subarray(MAGIC.length))
  const cipher = r.text('cipher name')
  const kdf = r.text('kdf name')
  r.bytes('kdf options')
  if (cipher !== 'none' || kdf !== 'none') throw encrypted()
  const n = r.u32()
  if (n !== 1) throw formatError(`private key file holds ${n} keys; expected exactly 1`)
  const pubBlob = r.bytes('public key')
  const priv = new SshReader(r.bytes('private section'))
  r.end('private key file')
  if (priv.u32() !== priv.u32()) throw formatError('private key check bytes differ (corrupt file)')
  const type = priv.text('key type')
  const declared = PublicKey.fromBlob(pubBlob)
  if (declared.type !== type) throw formatError('private key type differs from its public key')
  const jwk = readPrivateJwk(type as KeyType, priv)
  const comment = priv.text('comment')
  const padding = priv.rest()
  if (!padding.equals(Buffer.from(Array.from({length: padding.length}, (_, i) => i + 1))) || padding.length >= 8) {
    throw formatError('private key padding is corrupt')
  }
  let keyObject: KeyObject
  try {
    keyObject = nodeCrypto().createPrivateKey({key: jwk, format: 'jwk'})
  } catch (err) {
    throw formatError('private key values are invalid', err)
  }
  const key = fromKeyObject(keyObject)
  if (!key.publicKey.equals(declared)) throw formatError('private key does not match its public key')
  return {key, comment}
}

function readPrivateJwk(type: KeyType, r: SshReader): JsonWebKey {
  const u = (x: Buffer): string => x.toString('base64url')
  if (type === 'ssh-ed25519') {
    const a = r.bytes('ed25519 public')
    const ka = r.bytes('ed25519 private')
    if (a.length !== 32 || ka.length !== 64 || !ka.subarray(32).equals(a))
      throw formatError('ed25519 private key is malformed')
    return {kty: 'OKP', crv: 'Ed25519', x: u(a), d: u(ka.subarray(0, 32))}
  }
  const curve = CURVES[type]
  if (curve) {
    if (r.text('curve') !== curve.sshName) throw formatError('ecdsa private key names another curve')
    const q = r.bytes('ecdsa point')
    const d = r.mpint('ecdsa private')
    if (q.length !== 1 + 2 * curve.size || q[0] !== 4) throw formatError('ecdsa point is malformed')
    return {
      kty: 'EC',
      crv: curve.jwkCrv,
      x: u(q.subarray(1, 1 + curve.size)),
      y: u(q.subarray(1 + curve.size)),
      d: u(fixedWidth(d, curve.size, 'ecdsa private')),
    }
  }
  if (type === 'ssh-rsa') {
    const [n, e, d, qi, p, q] = ['n', 'e', 'd', 'iqmp', 'p', 'q'].map((f) => r.mpint(`rsa ${f}`)) as [
      Buffer,
      Buffer,
      Buffer,
      Buffer,
      Buffer,
      Buffer,
    ]
    const big = (x: Buffer): bigint => BigInt(`0x${x.toString('hex') || '0'}`)
    // a corrupt file must not reach the arithmetic below (p = 1 divides by zero) or node:crypto
    if (big(p) < 2n || big(q) < 2n || big(p) * big(q) !== big(n))
      throw formatError('rsa private key values are inconsistent (p·q is not n)')
    const toBuf = (v: bigint): Buffer =>
      Buffer.from(
        v
          .toString(16)
          .padStart(2, '0')
          .replace(/^(.(..)*)$/, '0$1'),
        'hex',
      )
    const dp = toBuf(big(d) % (big(p) - 1n))
    const dq = toBuf(big(d) % (big(q) - 1n))
    return {kty: 'RSA', n: u(n), e: u(e), d: u(d), p: u(p), q: u(q), dp: u(dp), dq: u(dq), qi: u(qi)}
  }
  throw new SshcaError('ERR_SSH_UNSUPPORTED', `unsupported private key type: ${type}`)
}

function encrypted(): SshcaError {
  return new SshcaError('ERR_SSH_KEY_ENCRYPTED', 'the private key file is protected by a passphrase', {
    hint: 'use an unencrypted key file (host keys in /etc/ssh are unencrypted), or load the key into ssh-agent',
  })
}
