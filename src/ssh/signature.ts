/**
 * SSH signatures (RFC 4253 §6.6, RFC 5656 §3.1.2, RFC 8332, RFC 8709): `string alg, string blob`.
 * Signing goes through a Signer (x/crypto/ssh's `Signer.Sign(...) (sig, error)`): asynchronous and
 * fallible, so a CA key can live in an HSM (PKCS#11) or a KMS as well as in memory.
 */
import type {KeyObject} from 'node:crypto'
import {SshcaError} from '../errors.ts'
import {nodeCrypto} from '../util/node-crypto.ts'
import {CURVES, PublicKey} from './keys.ts'
import {formatError, SshReader, SshWriter} from './wire.ts'

export type RsaSignatureAlgorithm = 'rsa-sha2-256' | 'rsa-sha2-512'

export interface Signer {
  readonly publicKey: PublicKey
  /**
   * Resolves to an SSH signature blob (`string alg, string sig`) over `data`; rejects (an
   * SshcaError) when the key cannot sign: a token removed, a session lost, a PIN locked.
   */
  sign(data: Buffer): Promise<Buffer>
  /**
   * An in-memory signer's private key (keySigner), so the CA can hand it to worker threads of this
   * same process; absent where the key cannot leave its store (a PKCS#11 token).
   */
  readonly keyObject?: KeyObject
}

/** A Signer over an in-memory node:crypto private key. */
export function keySigner(privateKey: KeyObject, rsaAlgorithm: RsaSignatureAlgorithm = 'rsa-sha2-512'): Signer {
  if (privateKey.type !== 'private') throw new TypeError('keySigner needs a private key')
  const publicKey = PublicKey.fromKeyObject(privateKey)
  return {publicKey, sign: async (data) => signData(privateKey, publicKey, data, rsaAlgorithm), keyObject: privateKey}
}

export function signData(
  privateKey: KeyObject,
  publicKey: PublicKey,
  data: Buffer,
  rsaAlgorithm: RsaSignatureAlgorithm = 'rsa-sha2-512',
): Buffer {
  const w = new SshWriter()
  if (publicKey.type === 'ssh-ed25519') {
    return w
      .string('ssh-ed25519')
      .string(nodeCrypto().sign(null, data, privateKey))
      .toBuffer()
  }
  const curve = CURVES[publicKey.type]
  if (curve) {
    // DER output: node's {dsaEncoding: 'ieee-p1363'} option form signs 2.5× slower (bench/ssh.ts)
    const [r, s] = derToRs(nodeCrypto().sign(curve.hash, data, privateKey))
    const inner = new SshWriter().mpint(r).mpint(s).toBuffer()
    return w.string(publicKey.type).string(inner).toBuffer()
  }
  const hash = rsaAlgorithm === 'rsa-sha2-256' ? 'sha256' : 'sha512'
  return w
    .string(rsaAlgorithm)
    .string(nodeCrypto().sign(hash, data, privateKey))
    .toBuffer()
}

/**
 * An SSH signature blob from a raw signature as PKCS#11 tokens and KMSs return it: ed25519's 64
 * bytes, ECDSA's fixed-width r || s (IEEE P1363), RSA's PKCS#1 v1.5 bytes (`rsaAlgorithm` names the hash).
 */
export function sshSignatureFromRaw(
  publicKey: PublicKey,
  raw: Buffer,
  rsaAlgorithm: RsaSignatureAlgorithm = 'rsa-sha2-512',
): Buffer {
  const w = new SshWriter()
  if (publicKey.type === 'ssh-ed25519') {
    if (raw.length !== 64) throw formatError(`an ed25519 signature has 64 bytes, not ${raw.length}`)
    return w.string('ssh-ed25519').string(raw).toBuffer()
  }
  const curve = CURVES[publicKey.type]
  if (curve) {
    if (raw.length !== 2 * curve.size)
      throw formatError(`an ${publicKey.type} signature has ${2 * curve.size} bytes (r || s), not ${raw.length}`)
    const strip = (v: Buffer): Buffer => {
      let i = 0
      while (i < v.length - 1 && v[i] === 0) i++
      return v.subarray(i)
    }
    const inner = new SshWriter()
      .mpint(strip(raw.subarray(0, curve.size)))
      .mpint(strip(raw.subarray(curve.size)))
      .toBuffer()
    return w.string(publicKey.type).string(inner).toBuffer()
  }
  return w.string(rsaAlgorithm).string(raw).toBuffer()
}

export interface SignatureCheck {
  valid: boolean
  algorithm: string
  /** Why an invalid signature is invalid, for people. */
  reason?: string
}

/**
 * Verifies an SSH signature blob made by `key` over `data`. The algorithm must belong to the key's
 * type; SHA-1 RSA (`ssh-rsa` signatures) is refused, as OpenSSH has refused it since 8.8.
 */
export function verifySignature(key: PublicKey, data: Buffer, signatureBlob: Buffer): SignatureCheck {
  const r = new SshReader(signatureBlob)
  const algorithm = r.text('signature algorithm')
  const sig = r.bytes('signature')
  r.end('signature')
  const invalid = (reason: string): SignatureCheck => ({valid: false, algorithm, reason})
  if (key.type === 'ssh-ed25519') {
    if (algorithm !== 'ssh-ed25519') return invalid(`${algorithm} signature from an ed25519 key`)
    if (sig.length !== 64) return invalid('ed25519 signature is not 64 bytes')
    return nodeCrypto().verify(null, data, key.keyObject, sig)
      ? {valid: true, algorithm}
      : invalid('signature does not match')
  }
  const curve = CURVES[key.type]
  if (curve) {
    if (algorithm !== key.type) return invalid(`${algorithm} signature from an ${key.type} key`)
    const inner = new SshReader(sig)
    const rr = inner.mpint('ecdsa r')
    const ss = inner.mpint('ecdsa s')
    inner.end('ecdsa signature')
    if (rr.length === 0 || ss.length === 0 || rr.length > curve.size || ss.length > curve.size)
      return invalid('ecdsa signature values are out of range')
    return nodeCrypto().verify(curve.hash, data, key.keyObject, rsToDer(rr, ss))
      ? {valid: true, algorithm}
      : invalid('signature does not match')
  }
  if (algorithm === 'ssh-rsa') return invalid('ssh-rsa (SHA-1) signatures are not accepted')
  if (algorithm !== 'rsa-sha2-256' && algorithm !== 'rsa-sha2-512')
    return invalid(`${algorithm} signature from an rsa key`)
  const hash = algorithm === 'rsa-sha2-256' ? 'sha256' : 'sha512'
  return nodeCrypto().verify(hash, data, key.keyObject, sig)
    ? {valid: true, algorithm}
    : invalid('signature does not match')
}

/** The algorithm name inside a signature blob, without verifying it. */
export function signatureAlgorithm(signatureBlob: Buffer): string {
  return new SshReader(signatureBlob).text('signature algorithm')
}

/** Imports a PEM/DER private key for signing, mapping failures to a typed error. */
export function importPrivateKey(pem: string | Buffer, passphrase?: string): KeyObject {
  try {
    return nodeCrypto().createPrivateKey(passphrase === undefined ? {key: pem} : {key: pem, passphrase})
  } catch (err) {
    const msg = (err as Error).message
    if (/bad decrypt|passphrase|interrupted or cancelled/i.test(msg)) {
      throw new SshcaError('ERR_CA_PASSWORD', 'the private key could not be decrypted: wrong or missing password', {
        cause: err,
      })
    }
    throw formatError('not a private key', err)
  }
}

/** DER length: short form below 128, else 0x81/0x82 + big-endian length. */
function derLength(buf: Buffer, at: {i: number}): number {
  const first = buf[at.i++]!
  if (first < 0x80) return first
  const n = first & 0x7f
  if (n === 0 || n > 2) throw formatError('unexpected DER length in ECDSA signature')
  let len = 0
  for (let k = 0; k < n; k++) len = (len << 8) | buf[at.i++]!
  return len
}

/** `SEQUENCE { INTEGER r, INTEGER s }` (what OpenSSL returns) → unsigned magnitudes r, s. */
export function derToRs(der: Buffer): [Buffer, Buffer] {
  const at = {i: 0}
  if (der[at.i++] !== 0x30) throw formatError('ECDSA signature is not a DER sequence')
  const seqLen = derLength(der, at)
  if (at.i + seqLen !== der.length) throw formatError('ECDSA signature DER length is wrong')
  const int = (): Buffer => {
    if (der[at.i++] !== 0x02) throw formatError('ECDSA signature DER has no INTEGER')
    const len = derLength(der, at)
    const v = der.subarray(at.i, at.i + len)
    at.i += len
    return v[0] === 0 ? v.subarray(1) : v
  }
  const r = int()
  const s = int()
  return [r, s]
}

/** Unsigned magnitudes r, s → `SEQUENCE { INTEGER r, INTEGER s }` for node:crypto verify. */
export function rsToDer(r: Buffer, s: Buffer): Buffer {
  const int = (v: Buffer): Buffer => {
    const body = v[0]! & 0x80 ? Buffer.concat([Buffer.of(0), v]) : v
    return Buffer.concat([Buffer.of(0x02), lengthBytes(body.length), body])
  }
  const seq = Buffer.concat([int(r), int(s)])
  return Buffer.concat([Buffer.of(0x30), lengthBytes(seq.length), seq])
}

function lengthBytes(n: number): Buffer {
  if (n < 0x80) return Buffer.of(n)
  if (n < 0x100) return Buffer.of(0x81, n)
  return Buffer.of(0x82, n >> 8, n & 0xff)
}

/**
 * The JWS signature (RFC 7518) inside an SSH signature blob by `key`: ed25519's 64 bytes as they
 * are, ECDSA's (r, s) mpints as fixed-width r||s, RSA's rsa-sha2-256 signature (RS256). For proofs
 * of possession signed by an ssh-agent, which signs SSH data and never gives out the key.
 */
export function jwsSignatureFromSsh(signatureBlob: Buffer, key: PublicKey): Buffer {
  const r = new SshReader(signatureBlob)
  const algorithm = r.text('signature algorithm')
  const sig = r.bytes('signature')
  r.end('signature')
  if (key.type === 'ssh-ed25519' && algorithm === 'ssh-ed25519' && sig.length === 64) return Buffer.from(sig)
  const curve = CURVES[key.type]
  if (curve && algorithm === key.type) {
    const inner = new SshReader(sig)
    const rr = inner.mpint('ecdsa r')
    const ss = inner.mpint('ecdsa s')
    inner.end('ecdsa signature')
    const width = (x: Buffer): Buffer => {
      const t = x.length > curve.size ? x.subarray(x.length - curve.size) : x
      return Buffer.concat([Buffer.alloc(curve.size - t.length), t])
    }
    return Buffer.concat([width(rr), width(ss)])
  }
  if (key.type === 'ssh-rsa' && algorithm === 'rsa-sha2-256') return Buffer.from(sig)
  throw new SshcaError('ERR_SSH_UNSUPPORTED', `a ${algorithm} signature from a ${key.type} key cannot sign a JWS`)
}
