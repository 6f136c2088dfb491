/**
 * Public keys anyone can sign with (src/ssh/weak-keys.ts). The Ed25519 points of small order are
 * derived here from the curve (test/helpers/ed25519.ts, BigInt arithmetic), not taken from a list, and
 * the forgery they allow is performed against OpenSSH and the CA in step-routes.test.ts; RSA moduli are
 * built to have exactly the flaw under test, so only that check can refuse them.
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync, randomBytes, type KeyObject} from 'node:crypto'
import {PublicKey} from '../../../src/ssh/keys.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {SshWriter} from '../../../src/ssh/wire.ts'
import {
  ed25519Problem,
  isqrt,
  PRIME_GROUPS,
  rsaModulusProblem,
  SMALL_ORDER_Y,
  weakKeyProblem,
} from '../../../src/ssh/weak-keys.ts'
import {
  BASE,
  eightTorsion,
  encode,
  isNeutral,
  multiply,
  onCurve,
  P,
  smallOrderEncodings,
} from '../../helpers/ed25519.ts'
import {bigintBytes, roughModulus, rsaBlob} from '../../helpers/forge.ts'

const edKey = (encoded: Buffer): PublicKey =>
  PublicKey.fromBlob(Buffer.from(new SshWriter().string('ssh-ed25519').string(encoded).toBuffer()))
const rsaKey = (n: bigint): PublicKey => PublicKey.fromBlob(rsaBlob(65537n, n))
const PRIMES_BELOW_1000 = Array.from({length: 998}, (_, i) => i + 2).filter((n) => {
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false
  return true
})

describe('public keys anyone can sign with', () => {
  describe('Ed25519', () => {
    it('the small-order y values are those of the eight points P with 8P = 0, derived from the curve', () => {
      const torsion = eightTorsion()
      assert.equal(new Set(torsion.map(([x, y]) => `${x},${y}`)).size, 8)
      for (const point of torsion) {
        assert.ok(onCurve(point))
        assert.ok(isNeutral(multiply(8n, point)))
      }
      // and a point of the prime-order subgroup is not one of them
      assert.ok(!isNeutral(multiply(8n, BASE)))
      const sorted = (ys: Iterable<bigint>) => [...new Set(ys)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      assert.deepEqual(sorted(SMALL_ORDER_Y), sorted(torsion.map(([, y]) => y)))
    })

    it('refuses every encoding of a small-order point: the neutral element, all zeros, the points of order 2, 4 and 8, either sign bit, y + p', () => {
      const encodings = smallOrderEncodings()
      assert.equal(encodings.length, 14)
      assert.ok(encodings.some((e) => e.equals(Buffer.alloc(32))))
      for (const e of encodings) {
        // the canonical ones as small order; y = p, p + 1 (0 and 1 again) as y ≥ p
        assert.match(ed25519Problem(e) ?? 'accepted', /small order|y ≥ p/, e.toString('hex'))
        assert.notEqual(weakKeyProblem(edKey(e)), undefined, e.toString('hex'))
      }
      assert.match(ed25519Problem(Buffer.alloc(32)) ?? 'accepted', /small order/)
    })

    it('refuses a y ≥ p (a second encoding of the point y − p, another fingerprint for one key), either sign bit', () => {
      for (let y = P; y < 1n << 255n; y++) {
        for (const sign of [0, 1])
          assert.match(ed25519Problem(encode(y, sign)) ?? 'accepted', /y ≥ p/, `${y - P} ${sign}`)
      }
    })

    it('accepts real keys, and the canonical y nearest p that is not of small order', () => {
      for (let i = 0; i < 300; i++) {
        const key = PublicKey.fromKeyObject(generateKeyPairSync('ed25519').publicKey)
        assert.equal(weakKeyProblem(key), undefined, key.toLine())
      }
      for (const sign of [0, 1]) assert.equal(ed25519Problem(encode(P - 2n, sign)), undefined)
      assert.equal(ed25519Problem(encode(2n, 0)), undefined)
    })
  })

  describe('RSA', () => {
    let real: PublicKey[]
    before(() => {
      real = [3072, 4096].map((modulusLength) =>
        PublicKey.fromKeyObject(generateKeyPairSync('rsa', {modulusLength}).publicKey as KeyObject),
      )
    })

    it('the primes below 1000 are checked in as few groups as fit below 2^53, each with its product', () => {
      assert.deepEqual(
        PRIME_GROUPS.flatMap((g) => g.primes),
        PRIMES_BELOW_1000,
      )
      for (const [i, {product, primes}] of PRIME_GROUPS.entries()) {
        assert.equal(
          product,
          primes.reduce((a, p) => a * BigInt(p), 1n),
        )
        assert.ok(product <= BigInt(Number.MAX_SAFE_INTEGER))
        const next = PRIME_GROUPS[i + 1]
        if (next) assert.ok(product * BigInt(next.primes[0]!) > BigInt(Number.MAX_SAFE_INTEGER), `group ${i}`)
      }
    })

    it('refuses a modulus with a prime factor below 1000, 2 included (an even modulus), and names it', () => {
      const rough = roughModulus(3072)
      for (const p of PRIMES_BELOW_1000)
        assert.match(rsaModulusProblem(bigintBytes(BigInt(p) * rough)) ?? 'accepted', new RegExp(`by ${p}$`), `${p}`)
      assert.equal(PRIMES_BELOW_1000.length, 168)
      // the first prime above: not checked
      assert.equal(rsaModulusProblem(bigintBytes(1009n * rough)), undefined)
      // through the key, at the largest size the CA takes
      assert.notEqual(weakKeyProblem(rsaKey(roughModulus(16384) - 2n)), undefined)
      assert.notEqual(weakKeyProblem(rsaKey(3n * roughModulus(16382))), undefined)
    })

    it('refuses a perfect square, and accepts the numbers either side', () => {
      for (const bits of [1536, 8192]) {
        const q = roughModulus(bits)
        assert.match(weakKeyProblem(rsaKey(q * q)) ?? 'accepted', /square/)
        // q² ± 2·k·q·… : the nearest odd numbers without a small factor
        for (const step of [2n, -2n]) {
          let n = q * q + step
          while (rsaModulusProblem(bigintBytes(n))?.includes('divisible')) n += step
          assert.equal(rsaModulusProblem(bigintBytes(n)), undefined)
        }
      }
    })

    it('isqrt is ⌊√n⌋: every n up to 5000, and random ones up to 16384 bits, squares and their neighbours', () => {
      const check = (n: bigint) => {
        const r = isqrt(n, n.toString(2).length)
        assert.ok(r * r <= n && (r + 1n) * (r + 1n) > n, `isqrt(${n}) = ${r}`)
      }
      for (let n = 1n; n <= 5000n; n++) check(n)
      for (let i = 0; i < 200; i++) {
        check(BigInt(`0x${randomBytes(1 + ((i * 37) % 2048)).toString('hex')}`) | 1n)
        const root = BigInt(`0x${randomBytes(1 + ((i * 41) % 1024)).toString('hex')}`) | 1n
        for (const n of [root * root - 1n, root * root, root * root + 1n]) check(n)
      }
    })

    it('accepts real RSA keys and rough moduli up to 16384 bits; ECDSA keys are not its business', () => {
      for (const key of real) assert.equal(weakKeyProblem(key), undefined)
      for (const bits of [3072, 16384]) assert.equal(weakKeyProblem(rsaKey(roughModulus(bits))), undefined)
      assert.equal(weakKeyProblem(generatePrivateKey('ecdsa').publicKey), undefined)
    })
  })
})
