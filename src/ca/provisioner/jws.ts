/**
 * A JWS signature checked with node:crypto, synchronously. jose verifies through WebCrypto, which
 * sends every verification to libuv's thread pool and resolves a promise when it comes back: RS256 90
 * µs against 30 µs here, ES256 177 against 135 µs, and — what counts under load — a request whose token
 * is being verified waits for a pool thread and then for its turn in an event loop busy with other
 * requests. At 4× the sustainable rate on one core that wait was a tenth of the p99 the clients saw
 * (CONTRIBUTING.md, "Overload"). jose still finds the key (its JWKS rules: kid, kty, alg, use) and checks
 * the claims (oidc.ts); this checks only that `signature` is `alg`'s over `signingInput` by `key`, and
 * that the key is of the kind `alg` names, as jose would: RSA of 2048 bits or more for RS and PS, the
 * curve the ES algorithm names, Ed25519 for EdDSA. Anything else is false or an error, never true.
 */
import {constants, KeyObject, verify} from 'node:crypto'

type Kind = 'rsa' | 'pss' | 'ec' | 'ed25519'

interface Alg {
  /** null for EdDSA, which hashes inside the signature. */
  hash: string | null
  kind: Kind
  /** PS: the salt length (the hash's size, RFC 7518 §3.5). */
  salt?: number
  /** ES: the curve, by OpenSSL's name. */
  curve?: string
}

const ALGS: Record<string, Alg> = {
  RS256: {hash: 'sha256', kind: 'rsa'},
  RS384: {hash: 'sha384', kind: 'rsa'},
  RS512: {hash: 'sha512', kind: 'rsa'},
  PS256: {hash: 'sha256', kind: 'pss', salt: 32},
  PS384: {hash: 'sha384', kind: 'pss', salt: 48},
  PS512: {hash: 'sha512', kind: 'pss', salt: 64},
  ES256: {hash: 'sha256', kind: 'ec', curve: 'prime256v1'},
  ES384: {hash: 'sha384', kind: 'ec', curve: 'secp384r1'},
  ES512: {hash: 'sha512', kind: 'ec', curve: 'secp521r1'},
  EdDSA: {hash: null, kind: 'ed25519'},
  Ed25519: {hash: null, kind: 'ed25519'},
}

/** The keys each kind of algorithm signs with, as jose accepts them. */
const FITS: Record<Kind, (key: KeyObject, a: Alg) => boolean> = {
  rsa: (key) => key.asymmetricKeyType === 'rsa' && rsaBits(key) >= 2048,
  pss: (key) => (key.asymmetricKeyType === 'rsa' || key.asymmetricKeyType === 'rsa-pss') && rsaBits(key) >= 2048,
  // Stryker disable next-line ConditionalExpression,LogicalOperator: only EC keys have a namedCurve; the type test says what is meant
  ec: (key, a) => key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails!.namedCurve === a.curve,
  ed25519: (key) => key.asymmetricKeyType === 'ed25519',
}
const rsaBits = (key: KeyObject): number => key.asymmetricKeyDetails!.modulusLength ?? 0

/** node:crypto's view of a key jose resolved (a CryptoKey from the JWKS), converted once. */
const converted = new WeakMap<object, KeyObject>()
function keyObjectOf(key: unknown): KeyObject {
  if (key instanceof KeyObject) return key
  let k = converted.get(key as object)
  // Stryker disable next-line ConditionalExpression,BlockStatement: the cache only saves converting the same key again
  if (!k) {
    // a TypeError for anything but a CryptoKey
    k = KeyObject.from(key as Parameters<typeof KeyObject.from>[0])
    // Stryker disable next-line CallExpression: the cache only saves converting the same key again
    converted.set(key as object, k)
  }
  return k
}

/**
 * True when `signature` is a valid `alg` signature over `signingInput` by `key`; false when it is not
 * (also when it has the wrong length: node:crypto answers false, never throws, for any signature bytes);
 * throws (TypeError) for an algorithm this does not know, a private or secret key, or a public key of
 * another kind than `alg` names.
 */
export function verifyJwsSignature(alg: string, key: unknown, signingInput: Buffer, signature: Buffer): boolean {
  const a = Object.hasOwn(ALGS, alg) ? ALGS[alg]! : undefined
  if (!a) throw new TypeError(`the algorithm ${JSON.stringify(alg)} is not supported`)
  const k = keyObjectOf(key)
  if (k.type !== 'public') throw new TypeError('the token must be verified with a public key')
  if (!FITS[a.kind](k, a)) throw new TypeError(`the key is not one that signs ${alg} (RSA keys: 2048 bits or more)`)
  // the key alone where no option is needed: node:crypto tells a KeyObject from an options object by
  // catching the exception the test throws for the latter, ~5 µs a verification (RS256 21 → 27 µs)
  if (a.kind === 'rsa' || a.kind === 'ed25519') return verify(a.hash, signingInput, k, signature)
  // ECDSA in JWS is r and s side by side (RFC 7518 §3.4), not DER
  const pss = a.kind === 'pss' ? {padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: a.salt!} : {}
  return verify(a.hash, signingInput, {key: k, dsaEncoding: 'ieee-p1363', ...pss}, signature)
}
