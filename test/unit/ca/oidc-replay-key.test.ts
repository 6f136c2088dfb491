/**
 * The replay key of a token without jti: found by fuzzing (test/fuzz/http.test.ts). A spent ES256
 * token came back as a new one with its signature re-spelled, (r, s) → (r, n − s) or another last
 * base64url character, and got a second certificate: the key was the hash of the whole token.
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync} from 'node:crypto'
import {SignJWT, exportJWK} from 'jose'
import type {ProvisionerConfig} from '../../../src/ca/config.ts'
import {TokenVerifier} from '../../../src/ca/oidc.ts'

const ISSUER = 'https://idp.example.com'
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n

describe('token replay key (regression: malleable signatures)', () => {
  const p: ProvisionerConfig = {name: 'sso', type: 'oidc', issuer: ISSUER, clientId: 'cli', audience: 'cli', rules: []}
  const {privateKey, publicKey} = generateKeyPairSync('ec', {namedCurve: 'P-256'})
  const fetchFn = (async (input: string | URL) => {
    const url = String(input)
    if (url === `${ISSUER}/.well-known/openid-configuration`) return Response.json({issuer: ISSUER, jwks_uri: `${ISSUER}/jwks`})
    if (url === `${ISSUER}/jwks`) return Response.json({keys: [{...(await exportJWK(publicKey)), kid: 'k', alg: 'ES256'}]})
    return new Response('not found', {status: 404})
  }) as typeof fetch
  const now = 1_800_000_000
  const mint = () => new SignJWT({sub: 'alice'}).setProtectedHeader({alg: 'ES256', kid: 'k'}).setIssuer(ISSUER).setAudience('cli').setIssuedAt(now).setExpirationTime(now + 300).sign(privateKey)

  it('gives every spelling of one signed token without jti the same replay key', async () => {
    const v = new TokenVerifier([p], {fetch: fetchFn, clock: () => now * 1000})
    const token = await mint()
    const [h, pl, s] = token.split('.') as [string, string, string]
    const sig = Buffer.from(s, 'base64url')
    const highS = Buffer.concat([sig.subarray(0, 32), Buffer.from((P256_N - BigInt(`0x${sig.subarray(32).toString('hex')}`)).toString(16).padStart(64, '0'), 'hex')])
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const lastChar = `${s.slice(0, -1)}${alphabet[(alphabet.indexOf(s.at(-1)!) + 1) % 64]}`
    const original = await v.verify(token)
    for (const variant of [`${h}.${pl}.${highS.toString('base64url')}`, `${h}.${pl}.${lastChar}`]) {
      assert.notEqual(variant, token)
      // both verify (node:crypto accepts high-s ECDSA; base64url decoding ignores the spare bits) ...
      const again = await v.verify(variant)
      // ... so only the key stops the second use
      assert.equal(again.tokenId, original.tokenId)
    }
    // while a different token (a refreshed one) keeps its own key
    assert.notEqual((await v.verify(await new SignJWT({sub: 'alice'}).setProtectedHeader({alg: 'ES256', kid: 'k'}).setIssuer(ISSUER).setAudience('cli').setIssuedAt(now + 1).setExpirationTime(now + 300).sign(privateKey))).tokenId, original.tokenId)
  })
})
