/**
 * Certificates assembled field by field, with no checks, and signed by a real CA key: what a buggy or
 * hostile issuer can hand a parser, when src/ssh's own signCertificate would refuse to produce it.
 */
import {createPrivateKey, generateKeyPairSync, generatePrimeSync, randomBytes, type KeyObject} from 'node:crypto'
import {CERT_SUFFIX, FOREVER} from '../../src/ssh/cert.ts'
import {PublicKey} from '../../src/ssh/keys.ts'
import type {PrivateKey} from '../../src/ssh/private-key.ts'
import {signData} from '../../src/ssh/signature.ts'
import {SshWriter} from '../../src/ssh/wire.ts'

export interface ForgedFields {
  /** 1 user, 2 host; anything else is what the parser must refuse. */
  typeCode: number
  keyId: Buffer | string
  principals: (Buffer | string)[]
  validAfter: bigint
  validBefore: bigint
  /** The encoded option list: build it with rawOptions(). */
  criticalOptions: Buffer
  extensions: Buffer
}

/** SSH strings back to back: a principal list, an option value, an option list. */
export function packStrings(strings: readonly (Buffer | string)[]): Buffer {
  const w = new SshWriter()
  for (const s of strings) w.string(s)
  return Buffer.from(w.toBuffer())
}

/** An option list as `[name, data]` pairs in the order given, data being the option's raw data. */
export function rawOptions(...pairs: [string, Buffer][]): Buffer {
  return packStrings(pairs.flat())
}

/** A user certificate for `subject`, signed by `ca`, with `over` taken as is. */
export function forgeCertificate(ca: PrivateKey, subject: PublicKey, over: Partial<ForgedFields> = {}): Buffer {
  const body = Buffer.from(
    new SshWriter()
      .string(subject.type + CERT_SUFFIX)
      .string(randomBytes(32))
      .raw(subject.fields)
      .u64(1n)
      .u32(over.typeCode ?? 1)
      .string(over.keyId ?? 'forged')
      .string(packStrings(over.principals ?? ['alice']))
      .u64(over.validAfter ?? 0n)
      .u64(over.validBefore ?? FOREVER)
      .string(over.criticalOptions ?? Buffer.alloc(0))
      .string(over.extensions ?? Buffer.alloc(0))
      .string(Buffer.alloc(0))
      .string(ca.publicKey.blob)
      .toBuffer(),
  )
  return Buffer.concat([body, new SshWriter().string(signData(ca.keyObject, ca.publicKey, body)).toBuffer()])
}

/**
 * A KRL that sshca's parser reads but OpenSSH refuses ("Invalid key length"): its certificate section's
 * CA key is a 512-bit RSA key, below OpenSSH's 1024-bit minimum. sshd given it refuses every public key.
 */
export function krlOpenSshRefuses(): Buffer {
  const jwk = generateKeyPairSync('rsa', {modulusLength: 512}).publicKey.export({format: 'jwk'}) as {
    n: string
    e: string
  }
  const mpint = (b64url: string) => {
    const b = Buffer.from(b64url, 'base64url')
    return b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b
  }
  const caKey = new SshWriter().string(Buffer.from('ssh-rsa')).string(mpint(jwk.e)).string(mpint(jwk.n)).toBuffer()
  const serials = new SshWriter().u64(5n).toBuffer()
  const section = new SshWriter().string(caKey).string(Buffer.alloc(0)).u8(0x20).string(serials).toBuffer()
  return new SshWriter()
    .raw(Buffer.from('SSHKRL\n\0', 'latin1'))
    .u32(1)
    .u64(1n)
    .u64(1n)
    .u64(0n)
    .string(Buffer.alloc(0))
    .string(Buffer.alloc(0))
    .u8(1)
    .string(section)
    .toBuffer()
}

export const bigintBytes = (v: bigint): Buffer => {
  const hex = v.toString(16)
  return Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex')
}
const gcd = (a: bigint, b: bigint): bigint => (b === 0n ? a : gcd(b, a % b))

/**
 * A real RSA key (n = p·q of `bits` bits) whose public exponent is a random odd number of `exponentBits`
 * bits, coprime to φ(n): a key its holder can sign with, and whose every verification costs about
 * exponentBits / 17 times a normal one. Only the public key is returned, as the CA would receive it.
 */
export function hugeExponentRsaKey(bits = 3072, exponentBits = 3000): PublicKey {
  for (;;) {
    const p = generatePrimeSync(bits / 2, {bigint: true})
    const q = generatePrimeSync(bits / 2, {bigint: true})
    const n = p * q
    if (n.toString(2).length !== bits) continue
    const phi = (p - 1n) * (q - 1n)
    for (;;) {
      const e = BigInt(`0x${randomBytes(exponentBits / 8).toString('hex')}`) | (1n << BigInt(exponentBits - 1)) | 1n
      if (gcd(e, phi) === 1n) return PublicKey.fromBlob(rsaBlob(e, n))
    }
  }
}

/**
 * The first odd number of `bits` bits above 2^(bits−1) with no prime factor below 1000: a modulus the
 * CA's checks (src/ssh/weak-keys.ts) let through, all of them run, without the cost of finding primes.
 * Not a square: the squares nearest 2^(bits−1) are about 2^(bits/2) away.
 */
export function roughModulus(bits: number): bigint {
  const small = Array.from({length: 998}, (_, i) => BigInt(i + 2)).filter((p) => {
    for (let d = 2n; d * d <= p; d++) if (p % d === 0n) return false
    return true
  })
  let n = (1n << BigInt(bits - 1)) + 1n
  while (small.some((p) => n % p === 0n)) n += 2n
  return n
}

/** An ssh-rsa public key blob with this exponent and modulus, unchecked. */
export function rsaBlob(e: bigint, n: bigint): Buffer {
  return Buffer.from(new SshWriter().string('ssh-rsa').mpint(bigintBytes(e)).mpint(bigintBytes(n)).toBuffer())
}

/**
 * An RSA private key whose public exponent is about as long as its modulus while its private exponent
 * is small (d ≈ 65537): signing costs its holder nothing, each verification costs anyone checking it
 * ~150× a normal one (OpenSSL takes exponents up to the modulus's size for moduli of 3072 bits or less).
 */
export function hugeExponentRsaPrivateKey(bits = 3072): KeyObject {
  const b64u = (n: bigint) => Buffer.from(bigintBytes(n)).toString('base64url')
  const big = (s: string | undefined) => BigInt(`0x${Buffer.from(s!, 'base64url').toString('hex')}`)
  const inverse = (a: bigint, m: bigint): bigint | undefined => {
    let [r0, r1, x0, x1] = [a % m, m, 1n, 0n]
    while (r1 !== 0n) {
      const q = r0 / r1
      ;[r0, r1] = [r1, r0 - q * r1]
      ;[x0, x1] = [x1, x0 - q * x1]
    }
    return r0 === 1n ? ((x0 % m) + m) % m : undefined
  }
  const jwk = generateKeyPairSync('rsa', {modulusLength: bits}).privateKey.export({format: 'jwk'})
  const [p, q] = [big(jwk.p), big(jwk.q)]
  const lambda = ((p - 1n) * (q - 1n)) / gcd(p - 1n, q - 1n)
  for (let d = 65537n; ; d += 2n) {
    const e = inverse(d, lambda)
    if (e === undefined || e % 2n === 0n) continue
    return createPrivateKey({
      format: 'jwk',
      key: {
        kty: 'RSA',
        n: b64u(p * q),
        e: b64u(e),
        d: b64u(d),
        p: b64u(p),
        q: b64u(q),
        dp: b64u(d % (p - 1n)),
        dq: b64u(d % (q - 1n)),
        qi: b64u(inverse(q, p)!),
      },
    })
  }
}
