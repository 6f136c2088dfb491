/**
 * Public keys that anyone can sign with, or that are a second encoding of another key. A CA must not
 * certify them: a certificate for such a key is usable by anyone who has seen it (a host certificate
 * is sent in every SSH handshake, a user certificate to every server its user logs in to).
 *
 * - Ed25519: a point of small order (one of the eight points P with 8P = 0). For the neutral element,
 *   R = B and s = 1 is a valid signature of every message: OpenSSH 9.2 and OpenSSL 3.0 accept it (RFC
 *   8032 does not refuse such keys; OpenSSL 3.5, Node 24's, does). An all-zero or uninitialised buffer
 *   gives such keys. A y ≥ p
 *   is a second encoding of the point y − p: the same key under another fingerprint, which a
 *   revocation by key would miss.
 * - RSA: an even modulus, one with a prime factor below 1000 (the cofactor may be prime: then anyone
 *   can factor it), or a perfect square p² (its square root is the factorisation).
 *
 * The CA runs them before it reads a token, for anyone, so their cost is bounded by the key's size
 * (`npm run bench -- sign`, 2-core box at load 3–5): 0.7 µs for Ed25519; for RSA 22 µs at 3072 bits,
 * 30 µs at 4096 and 156 µs at 16384, the largest the CA takes (its size is checked first).
 */
import {bitLength, type PublicKey} from './keys.ts'
import {SshReader} from './wire.ts'

/** The field prime of Curve25519. */
const P = (1n << 255n) - 19n
/** The y of four of the order-8 points (x = ±…); the other four have p − this. */
const Y_ORDER_8 = 0x05fc536d880238b13933c6d305acdfd5f098eff289f4c345b027b2c28f95e826n
/**
 * The y coordinates of the eight points of small order: the neutral element (0, 1), the order-2 point
 * (0, −1), the order-4 points (±√−1, 0) and the order-8 ones. x is fixed by y up to its sign, so an
 * encoding with one of these y is a small-order point whatever its sign bit (or no point at all).
 * test/unit/ssh/weak-keys.test.ts derives the eight points from the curve and compares.
 */
export const SMALL_ORDER_Y: ReadonlySet<bigint> = new Set([1n, P - 1n, 0n, Y_ORDER_8, P - Y_ORDER_8])

/** What makes an Ed25519 public key (32 bytes, RFC 8032's encoding) unsafe, or undefined. */
export function ed25519Problem(encoded: Buffer): string | undefined {
  // little-endian y, its top bit the sign of x
  const be = Buffer.from(encoded).reverse()
  be[0]! &= 0x7f
  const y = BigInt(`0x${be.toString('hex')}`)
  if (y >= P) return 'it encodes its point with y ≥ p (a second encoding of another key)'
  if (SMALL_ORDER_Y.has(y)) return 'its point has small order, so anyone can make signatures that verify with it'
  return undefined
}

/**
 * The primes below 1000 in groups whose product is below 2^53: one BigInt division of the modulus per
 * group, then each prime on the remainder as a number (a fifth of the time of one division per prime).
 * Grouped otherwise (more groups, composites among the primes) it refuses the same moduli, more
 * slowly: test/unit/ssh/weak-keys.test.ts checks the groups themselves.
 */
export const PRIME_GROUPS: readonly {product: bigint; primes: number[]}[] = (() => {
  const primes: number[] = []
  // up to 997, the largest prime below 1000
  for (let n = 2; n <= 997; n++) if (primes.every((p) => n % p !== 0)) primes.push(n)
  const groups: {product: bigint; primes: number[]}[] = []
  let group: number[] = []
  let product = 1
  for (const p of primes) {
    if (!Number.isSafeInteger(product * p)) {
      groups.push({product: BigInt(product), primes: group})
      group = []
      product = 1
    }
    group.push(p)
    product *= p
  }
  groups.push({product: BigInt(product), primes: group})
  return groups
})()

/** What makes an RSA modulus (its magnitude, big-endian) unsafe, or undefined. */
export function rsaModulusProblem(magnitude: Buffer): string | undefined {
  const n = BigInt(`0x${magnitude.toString('hex')}`)
  for (const {product, primes} of PRIME_GROUPS) {
    const r = Number(n % product)
    for (const p of primes) if (r % p === 0) return `its modulus is divisible by ${p}`
  }
  const root = isqrt(n, bitLength(magnitude))
  if (root * root === n) return 'its modulus is a perfect square'
  return undefined
}

/**
 * ⌊√n⌋ for n > 0 of `bits` bits: CPython's math.isqrt (Mark Dickinson's), each step doubling the
 * precision, so its cost is about that of one division of n. 90 µs at 16384 bits, against 600 for
 * Newton's iteration from a power of two.
 */
export function isqrt(n: bigint, bits: number): bigint {
  const c = (bits - 1) >> 1
  let a = 1n
  let d = 0
  for (let s = 31 - Math.clz32(c); s >= 0; s--) {
    const e = d
    d = c >> s
    a = (a << BigInt(d - e - 1)) + (n >> BigInt(2 * c - e - d + 1)) / a
  }
  return a * a > n ? a - 1n : a
}

/** What makes a public key unsafe to certify, or undefined. ECDSA points were checked when parsed. */
export function weakKeyProblem(key: PublicKey): string | undefined {
  if (key.type === 'ssh-ed25519') return ed25519Problem(key.fields.subarray(4))
  if (key.type !== 'ssh-rsa') return undefined
  // the fields are e then n, read when the key was parsed
  const r = new SshReader(key.fields)
  r.mpint('rsa e')
  return rsaModulusProblem(r.mpint('rsa n'))
}
