/**
 * The replay key of a token without jti. Found by the security review and by fuzzing
 * (test/fuzz/http.test.ts): a spent ES256 token came back with its signature respelled, (r, s) →
 * (r, n − s), another last base64url character, whitespace or padding, and got a second certificate,
 * because the key was the hash of the token's text. Now: re-spelled text is refused outright (not
 * canonical base64url), and the key covers only what the signature covers, so a re-signed token
 * (a high s, or a second ECDSA signature) is the same token.
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync, verify, type KeyObject} from 'node:crypto'
import {SignJWT, exportJWK} from 'jose'
import type {ProvisionerConfig} from '../../../src/ca/config/config.ts'
import {canonicalParts, signedContentHash, TokenVerifier} from '../../../src/ca/provisioner/oidc.ts'

const ISSUER = 'https://idp.example.com'
const ORDERS = {
  ES256: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  ES384: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
  ES512:
    0x01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409n,
} as const
const CURVES = {ES256: 'P-256', ES384: 'P-384', ES512: 'P-521'} as const
const HASHES = {ES256: 'sha256', ES384: 'sha384', ES512: 'sha512'} as const
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

const now = 1_800_000_000
const mint = (alg: string, key: KeyObject, iat = now) =>
  new SignJWT({sub: 'alice'})
    .setProtectedHeader({alg, kid: 'k'})
    .setIssuer(ISSUER)
    .setAudience('cli')
    .setIssuedAt(iat)
    .setExpirationTime(now + 300)
    .sign(key)

/** The same signed token, its signature respelled in every way a holder of it can. */
function respellings(token: string, n: bigint): string[] {
  const [h, p, s] = token.split('.') as [string, string, string]
  const sig = Buffer.from(s, 'base64url')
  const half = sig.length / 2
  const highS = Buffer.concat([
    sig.subarray(0, half),
    Buffer.from((n - BigInt(`0x${sig.subarray(half).toString('hex')}`)).toString(16).padStart(half * 2, '0'), 'hex'),
  ])
  const out = [highS.toString('base64url'), `${s.slice(0, 10)} ${s.slice(10)}`]
  if (sig.length % 3 !== 0) {
    // the last character carries spare bits (its lowest among them), and padding may follow
    out.push(`${s.slice(0, -1)}${ALPHABET[ALPHABET.indexOf(s.at(-1)!) ^ 1]}`, s + '='.repeat(4 - (s.length % 4)))
  }
  return out.map((v) => `${h}.${p}.${v}`)
}

const keyOf = (t: string) => {
  const parts = canonicalParts(t)
  return parts ? signedContentHash(parts) : undefined
}

describe('token replay key (regression: respelled signatures)', () => {
  for (const alg of ['ES256', 'ES384', 'ES512'] as const) {
    it(`${alg}: a respelled token is refused as not canonical, or has the spent one's key; so has the same claims signed again`, async () => {
      const {privateKey, publicKey} = generateKeyPairSync('ec', {namedCurve: CURVES[alg]})
      const token = await mint(alg, privateKey)
      const [h, p] = token.split('.') as [string, string]
      for (const variant of respellings(token, ORDERS[alg])) {
        assert.notEqual(variant, token)
        // it really verifies (so the order above is right, and node:crypto accepts a high s)
        if (!variant.includes(' '))
          assert.ok(
            verify(
              HASHES[alg],
              Buffer.from(`${h}.${p}`),
              {key: publicKey, dsaEncoding: 'ieee-p1363'},
              Buffer.from(variant.split('.')[2]!, 'base64url'),
            ),
          )
        const k = keyOf(variant)
        assert.ok(k === undefined || k === keyOf(token), `variant ${variant.split('.')[2]!.slice(-6)} has its own key`)
      }
      // the same claims signed again (a fresh ECDSA nonce): one assertion, one certificate
      assert.equal(keyOf(await mint(alg, privateKey)), keyOf(token))
    })
  }

  it("TokenVerifier gives the respelled token the spent one's id, so the store refuses it", async () => {
    const p: ProvisionerConfig = {
      name: 'sso',
      type: 'oidc',
      issuer: ISSUER,
      clientId: 'cli',
      audience: 'cli',
      rules: [],
    }
    const {privateKey, publicKey} = generateKeyPairSync('ec', {namedCurve: 'P-256'})
    const fetchFn = (async (input: string | URL) => {
      const url = String(input)
      if (url === `${ISSUER}/.well-known/openid-configuration`)
        return Response.json({issuer: ISSUER, jwks_uri: `${ISSUER}/jwks`})
      if (url === `${ISSUER}/jwks`)
        return Response.json({keys: [{...(await exportJWK(publicKey)), kid: 'k', alg: 'ES256'}]})
      return new Response('not found', {status: 404})
    }) as typeof fetch
    const v = new TokenVerifier([p], {fetch: fetchFn, clock: () => now * 1000})
    const token = await mint('ES256', privateKey)
    const original = await v.verify(token)
    for (const variant of respellings(token, ORDERS.ES256)) {
      // a re-spelled text is refused before any signature check; a high s verifies (jose and node
      // accept it) and gets the spent token's id, so the store refuses it
      const again = await v.verify(variant).catch((e: {details?: {reason?: string}}) => e)
      if ('tokenId' in again) assert.equal(again.tokenId, original.tokenId)
      else assert.equal(again.details?.reason, 'token_invalid')
    }
    assert.notEqual((await v.verify(await mint('ES256', privateKey, now + 1))).tokenId, original.tokenId)
  })
})
