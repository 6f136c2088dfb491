/**
 * Edwards25519 by hand (RFC 8032 §5.1, BigInt, affine coordinates, slow and plain): enough to derive
 * the points of small order from the curve itself, rather than from a list copied from somewhere, and
 * to encode them every way a decoder may read them.
 */
export const P = (1n << 255n) - 19n
/** The order of the prime subgroup; the curve has 8·L points. */
export const L = (1n << 252n) + 27742317777372353535851937790883648493n

const mod = (a: bigint): bigint => ((a % P) + P) % P
function pow(b: bigint, e: bigint): bigint {
  let r = 1n
  for (b = mod(b); e > 0n; e >>= 1n, b = (b * b) % P) if (e & 1n) r = (r * b) % P
  return r
}
const inv = (a: bigint): bigint => pow(a, P - 2n)
export const D = mod(-121665n * inv(121666n))
const SQRT_M1 = pow(2n, (P - 1n) / 4n)

export type Point = readonly [x: bigint, y: bigint]
export const NEUTRAL: Point = [0n, 1n]

/** −x² + y² = 1 + d·x²·y² */
export const onCurve = ([x, y]: Point): boolean => mod(-x * x + y * y - 1n - D * x * x * y * y) === 0n

export function add([x1, y1]: Point, [x2, y2]: Point): Point {
  const t = mod(D * x1 * x2 * y1 * y2)
  return [mod((x1 * y2 + y1 * x2) * inv(1n + t)), mod((y1 * y2 + x1 * x2) * inv(1n - t))]
}

export function multiply(k: bigint, point: Point): Point {
  let r = NEUTRAL
  for (let q = point; k > 0n; k >>= 1n, q = add(q, q)) if (k & 1n) r = add(r, q)
  return r
}

export const isNeutral = ([x, y]: Point): boolean => x === 0n && y === 1n

/** The x with this y and sign (RFC 8032 §5.1.3), or undefined when there is no such point. */
export function recoverX(y: bigint, sign: number): bigint | undefined {
  const u = mod(y * y - 1n)
  const v = mod(D * y * y + 1n)
  let x = mod(u * v ** 3n * pow(u * v ** 7n, (P - 5n) / 8n))
  if (mod(v * x * x - u) !== 0n) x = mod(x * SQRT_M1)
  if (mod(v * x * x - u) !== 0n) return undefined
  return Number(x & 1n) === sign ? x : mod(-x)
}

/** 32 bytes, little-endian y with the sign bit on top; `y` may be ≥ p (a non-canonical encoding). */
export function encode(y: bigint, sign: number): Buffer {
  const hex = (y | (BigInt(sign) << 255n)).toString(16).padStart(64, '0')
  return Buffer.from(hex, 'hex').reverse()
}

export const encodePoint = ([x, y]: Point): Buffer => encode(y, Number(x & 1n))

/** RFC 8032's base point B. */
export const BASE: Point = [recoverX((4n * inv(5n)) % P, 0)!, (4n * inv(5n)) % P]

/**
 * The eight points P with 8P = 0, from the curve: L·Q lies in that subgroup for any point Q, and is a
 * generator of it (order 8) for some Q; its multiples are the whole subgroup.
 */
export function eightTorsion(): Point[] {
  for (let y = 2n; ; y++) {
    const x = recoverX(y, 0)
    if (x === undefined) continue
    const t = multiply(L, [x, y])
    if (!isNeutral(multiply(4n, t))) return Array.from({length: 8}, (_, k) => multiply(BigInt(k), t))
  }
}

/**
 * Every 32-byte string that decodes to a point of small order, or that a decoder which does not check
 * canonicity (ref10, OpenSSL) reads as one: both sign bits of each y (with x = 0 the sign bit is
 * RFC 8032's "decoding fails", others read it as the same point), and y + p where that fits in 255 bits.
 */
export function smallOrderEncodings(): Buffer[] {
  const ys = [...new Set(eightTorsion().map(([, y]) => y))]
  const out: Buffer[] = []
  for (const y of ys) for (const v of [y, y + P]) if (v < 1n << 255n) for (const s of [0, 1]) out.push(encode(v, s))
  return out
}

/**
 * A signature (R, s) = (B, 1), which verifies for any message under the neutral element as key:
 * s·B = R + h·A with A the neutral element whatever h is.
 */
export const neutralKeySignature = (): Buffer => Buffer.concat([encodePoint(BASE), encode(1n, 0)])

/** The neutral element's key blob (`ssh-ed25519`, y = 1): what an all-zero buffer plus one gives. */
export const neutralKeyBlob = (): Buffer =>
  Buffer.concat([
    Buffer.from('0000000b', 'hex'),
    Buffer.from('ssh-ed25519'),
    Buffer.from('00000020', 'hex'),
    encode(1n, 0),
  ])

/** What an ssh-agent would answer for the neutral element's key, whatever the data: (B, 1) as an SSH signature. */
export const neutralSshSignature = (): Buffer =>
  Buffer.concat([
    Buffer.from('0000000b', 'hex'),
    Buffer.from('ssh-ed25519'),
    Buffer.from('00000040', 'hex'),
    neutralKeySignature(),
  ])
