/**
 * src/ca/provisioner/jws.ts: the token's signature checked by node:crypto instead of WebCrypto. For
 * every accepted algorithm: jose's own signature verifies, any change to the signed bytes or the
 * signature does not, and a key of the wrong kind or size is refused as jose refuses it. jose's
 * signatures are the oracle (the CA's identity providers sign with their own libraries).
 */
import assert from 'node:assert/strict'
import {constants, generateKeyPairSync, sign, webcrypto} from 'node:crypto'
import {CompactSign, createLocalJWKSet, exportJWK, importJWK} from 'jose'
import {verifyJwsSignature} from '../../../src/ca/provisioner/jws.ts'

const KEYS = {
  rsa: () => generateKeyPairSync('rsa', {modulusLength: 2048}),
  p256: () => generateKeyPairSync('ec', {namedCurve: 'P-256'}),
  p384: () => generateKeyPairSync('ec', {namedCurve: 'P-384'}),
  p521: () => generateKeyPairSync('ec', {namedCurve: 'P-521'}),
  ed25519: () => generateKeyPairSync('ed25519'),
}
const CASES = [
  ['RS256', 'rsa'],
  ['RS384', 'rsa'],
  ['RS512', 'rsa'],
  ['PS256', 'rsa'],
  ['PS384', 'rsa'],
  ['PS512', 'rsa'],
  ['ES256', 'p256'],
  ['ES384', 'p384'],
  ['ES512', 'p521'],
  ['EdDSA', 'ed25519'],
  ['Ed25519', 'ed25519'],
] as const
const pairs = Object.fromEntries(Object.entries(KEYS).map(([k, f]) => [k, f()])) as {
  [K in keyof typeof KEYS]: ReturnType<(typeof KEYS)[K]>
}

/** A compact JWS by jose, split into what the CA checks. */
async function jws(alg: string, privateKey: unknown, payload = '{"sub":"alice"}') {
  const token = await new CompactSign(new TextEncoder().encode(payload))
    .setProtectedHeader({alg})
    .sign(privateKey as Parameters<CompactSign['sign']>[0])
  const [h, p, s] = token.split('.') as [string, string, string]
  return {input: Buffer.from(`${h}.${p}`), signature: Buffer.from(s, 'base64url')}
}

/** The public key as jose's JWKS hands it over: a CryptoKey imported for `alg`, extractable (jose's local JWKS imports them so). */
const cryptoKeyFor = async (alg: string, publicKey: unknown) =>
  importJWK(await exportJWK(publicKey as Parameters<typeof exportJWK>[0]), alg, {extractable: true}) as Promise<object>

describe('JWS signatures by node:crypto (src/ca/provisioner/jws.ts)', () => {
  for (const [alg, kind] of CASES) {
    it(`${alg}: jose's signature verifies (CryptoKey and KeyObject); changed bytes or signature do not`, async () => {
      const {publicKey, privateKey} = pairs[kind]
      const {input, signature} = await jws(alg, privateKey)
      const key = await cryptoKeyFor(alg, publicKey)
      assert.equal(verifyJwsSignature(alg, key, input, signature), true)
      assert.equal(verifyJwsSignature(alg, publicKey, input, signature), true)
      const flipped = Buffer.from(input)
      flipped[flipped.length - 1]! ^= 1
      assert.equal(verifyJwsSignature(alg, key, flipped, signature), false)
      const badSig = Buffer.from(signature)
      badSig[5]! ^= 1
      assert.equal(verifyJwsSignature(alg, key, input, badSig), false)
      assert.equal(verifyJwsSignature(alg, key, input, signature.subarray(0, signature.length - 1)), false)
      assert.equal(verifyJwsSignature(alg, key, input, Buffer.alloc(0)), false)
      // another key of the same kind
      assert.equal(verifyJwsSignature(alg, KEYS[kind]().publicKey, input, signature), false)
    })
  }

  it('a key of another kind than the algorithm names is refused, whatever the signature', async () => {
    const {input, signature} = await jws('RS256', pairs.rsa.privateKey)
    for (const [alg, key] of [
      ['RS256', pairs.p256.publicKey],
      ['RS256', pairs.ed25519.publicKey],
      ['PS256', pairs.p256.publicKey],
      ['ES256', pairs.rsa.publicKey],
      ['ES256', pairs.p384.publicKey],
      ['ES384', pairs.p256.publicKey],
      ['ES512', pairs.p384.publicKey],
      ['EdDSA', pairs.p256.publicKey],
      ['Ed25519', pairs.rsa.publicKey],
    ] as const)
      assert.throws(
        () => verifyJwsSignature(alg, key, input, signature),
        TypeError,
        `${alg} with ${key.asymmetricKeyType}`,
      )
  })

  it('RSA under 2048 bits is refused, as jose refuses it (RS and PS); so are private keys, secrets and unknown algorithms', async () => {
    const small = generateKeyPairSync('rsa', {modulusLength: 1024})
    const input = Buffer.from('a.b')
    const signature = sign('sha256', input, small.privateKey)
    assert.throws(() => verifyJwsSignature('RS256', small.publicKey, input, signature), /2048 bits/)
    const pss = sign('sha256', input, {key: small.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32})
    assert.throws(() => verifyJwsSignature('PS256', small.publicKey, input, pss), /2048 bits/)
    const publicKeyOnly = /public key/
    assert.throws(() => verifyJwsSignature('RS256', pairs.rsa.privateKey, input, signature), publicKeyOnly)
    const privateCryptoKey = await importJWK(await exportJWK(pairs.p256.privateKey), 'ES256', {extractable: true})
    assert.throws(() => verifyJwsSignature('ES256', privateCryptoKey, input, signature), publicKeyOnly)
    const secret = await webcrypto.subtle.generateKey({name: 'HMAC', hash: 'SHA-256'}, true, ['sign'])
    assert.throws(() => verifyJwsSignature('RS256', secret, input, signature), publicKeyOnly)
    for (const notAKey of ['a PEM string?', null, undefined, {type: 'public'}])
      assert.throws(() => verifyJwsSignature('RS256', notAKey, input, signature), TypeError)
    for (const alg of ['HS256', 'none', '', 'toString', '__proto__', 'rs256'])
      assert.throws(() => verifyJwsSignature(alg, pairs.rsa.publicKey, input, signature), /is not supported/, alg)
  })

  it('RSA-PSS keys sign PS (not RS); DSA keys sign nothing, whatever their size', async () => {
    const input = Buffer.from('eyJhbGciOiJQUzI1NiJ9.e30')
    const pssKey = generateKeyPairSync('rsa-pss', {modulusLength: 2048})
    const pss = sign('sha256', input, {
      key: pssKey.privateKey,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: 32,
    })
    assert.equal(verifyJwsSignature('PS256', pssKey.publicKey, input, pss), true)
    assert.throws(() => verifyJwsSignature('RS256', pssKey.publicKey, input, pss), /not one that signs RS256/)
    const dsa = generateKeyPairSync('dsa', {modulusLength: 2048, divisorLength: 256})
    const dsaSignature = sign('sha256', input, dsa.privateKey)
    for (const alg of ['RS256', 'PS256', 'ES256', 'EdDSA'])
      assert.throws(() => verifyJwsSignature(alg, dsa.publicKey, input, dsaSignature), /not one that signs/, alg)
  })

  it('ECDSA: only r and s side by side (JWS), not DER; PS: only PSS, not PKCS #1 v1.5, and RS the reverse', async () => {
    const input = Buffer.from('eyJhbGciOiJFUzI1NiJ9.e30')
    const der = sign('sha256', input, pairs.p256.privateKey)
    assert.equal(verifyJwsSignature('ES256', pairs.p256.publicKey, input, der), false)
    const raw = sign('sha256', input, {key: pairs.p256.privateKey, dsaEncoding: 'ieee-p1363'})
    assert.equal(verifyJwsSignature('ES256', pairs.p256.publicKey, input, raw), true)
    const pkcs1 = sign('sha256', input, pairs.rsa.privateKey)
    assert.equal(verifyJwsSignature('RS256', pairs.rsa.publicKey, input, pkcs1), true)
    assert.equal(verifyJwsSignature('PS256', pairs.rsa.publicKey, input, pkcs1), false)
    // and the other way: a PSS signature is no RS256 one
    const pss = sign('sha256', input, {
      key: pairs.rsa.privateKey,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: 32,
    })
    assert.equal(verifyJwsSignature('PS256', pairs.rsa.publicKey, input, pss), true)
    assert.equal(verifyJwsSignature('RS256', pairs.rsa.publicKey, input, pss), false)
    // and the hash is the algorithm's: an RS384 signature is not an RS256 one
    const rs384 = sign('sha384', input, pairs.rsa.privateKey)
    assert.equal(verifyJwsSignature('RS256', pairs.rsa.publicKey, input, rs384), false)
  })

  it("jose's JWKS hands out extractable CryptoKeys, which node:crypto converts without a deprecation (DEP0204)", async () => {
    // oidc.ts verifies with the keys createLocalJWKSet returns; were a jose upgrade to make them
    // non-extractable, Node would warn on every conversion and, once it refuses them, every token would
    // be refused: this test fails first
    const jwks = {keys: await Promise.all([pairs.rsa, pairs.p256, pairs.ed25519].map((p) => exportJWK(p.publicKey)))}
    const getKey = createLocalJWKSet(jwks)
    const warnings: string[] = []
    const onWarning = (w: Error) => warnings.push(w.name)
    process.on('warning', onWarning)
    try {
      for (const [alg, kind] of [
        ['RS256', 'rsa'],
        ['ES256', 'p256'],
        ['EdDSA', 'ed25519'],
      ] as const) {
        const key = await getKey({alg}, {payload: '', signature: ''})
        assert.equal((key as {extractable?: boolean}).extractable, true, alg)
        const {input, signature} = await jws(alg, pairs[kind].privateKey)
        assert.equal(verifyJwsSignature(alg, key, input, signature), true, alg)
      }
      await new Promise((resolve) => setImmediate(resolve))
    } finally {
      process.off('warning', onWarning)
    }
    assert.deepEqual(warnings, [])
  })
})
