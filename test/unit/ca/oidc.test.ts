import assert from 'node:assert/strict'
import {generateKeyPairSync, randomUUID} from 'node:crypto'
import {SignJWT, exportJWK} from 'jose'
import type {ProvisionerConfig} from '../../../src/ca/config/config.ts'
import {TokenVerifier, assertSecureUrl} from '../../../src/ca/provisioner/oidc.ts'
import {rejectsCode} from '../../helpers/assert.ts'

const ISSUER = 'https://idp.example.com'
const p: ProvisionerConfig = {name: 'sso', type: 'oidc', issuer: ISSUER, clientId: 'cli', audience: 'cli', rules: []}

function issuerKeys() {
  const {privateKey, publicKey} = generateKeyPairSync('ec', {namedCurve: 'P-256'})
  return {privateKey, publicKey, kid: randomUUID()}
}

/** A fake IdP behind a fetch function: counts requests, can go down. */
function fakeIdp() {
  const state = {keys: [issuerKeys()], down: false, discovery: 0, jwks: 0}
  const fetchFn = (async (input: string | URL) => {
    const url = String(input)
    if (state.down) throw new TypeError('fetch failed')
    if (url === `${ISSUER}/.well-known/openid-configuration`) {
      state.discovery++
      return Response.json({issuer: ISSUER, jwks_uri: `${ISSUER}/jwks`})
    }
    if (url === `${ISSUER}/jwks`) {
      state.jwks++
      return Response.json({
        keys: await Promise.all(
          state.keys.map(async (k) => ({...(await exportJWK(k.publicKey)), kid: k.kid, alg: 'ES256'})),
        ),
      })
    }
    return new Response('not found', {status: 404})
  }) as typeof fetch
  return {state, fetchFn}
}

describe('token verification: discovery and JWKS caching', () => {
  let now = 1_800_000_000_000
  const clock = () => now
  const mint = (k: ReturnType<typeof issuerKeys>, claims: Record<string, unknown> = {}) =>
    new SignJWT({sub: 'alice', jti: randomUUID(), ...claims})
      .setProtectedHeader({alg: 'ES256', kid: k.kid})
      .setIssuer(ISSUER)
      .setAudience('cli')
      .setIssuedAt(Math.floor(now / 1000))
      .setExpirationTime(Math.floor(now / 1000) + 300)
      .sign(k.privateKey)

  it('fetches discovery and JWKS once, then serves from the cache', async () => {
    const idp = fakeIdp()
    const v = new TokenVerifier([p], {fetch: idp.fetchFn, clock})
    for (let i = 0; i < 5; i++) assert.equal((await v.verify(await mint(idp.state.keys[0]!))).claims.sub, 'alice')
    assert.deepEqual([idp.state.discovery, idp.state.jwks], [1, 1])
  })

  it('refetches once for an unknown key id, then not again within the cooldown', async () => {
    const idp = fakeIdp()
    const v = new TokenVerifier([p], {fetch: idp.fetchFn, clock, cooldownMs: 30_000})
    await v.verify(await mint(idp.state.keys[0]!))
    now += 31_000
    const rotated = issuerKeys()
    idp.state.keys.push(rotated)
    assert.equal((await v.verify(await mint(rotated))).claims.sub, 'alice')
    assert.equal(idp.state.jwks, 2)
    const stranger = issuerKeys()
    await rejectsCode(v.verify(await mint(stranger)), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})
    await rejectsCode(v.verify(await mint(stranger)), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})
    assert.equal(idp.state.jwks, 2, 'an unknown kid within the cooldown must not hit the IdP')
  })

  it('keeps using cached keys when a refresh fails, for a while; then fails closed', async () => {
    const idp = fakeIdp()
    const v = new TokenVerifier([p], {fetch: idp.fetchFn, clock, maxAgeMs: 600_000, maxStaleMs: 3_600_000})
    await v.verify(await mint(idp.state.keys[0]!))
    idp.state.down = true
    now += 700_000
    assert.equal((await v.verify(await mint(idp.state.keys[0]!))).claims.sub, 'alice')
    now += 3_600_000
    await rejectsCode(v.verify(await mint(idp.state.keys[0]!)), 'ERR_UPSTREAM_UNAVAILABLE', {
      reason: 'jwks_unavailable',
    })
  })

  it('fails closed when keys were never fetched', async () => {
    const idp = fakeIdp()
    idp.state.down = true
    const v = new TokenVerifier([p], {fetch: idp.fetchFn, clock})
    await rejectsCode(v.verify(await mint(idp.state.keys[0]!)), 'ERR_UPSTREAM_UNAVAILABLE', {
      reason: 'jwks_unavailable',
    })
  })

  it('refuses a discovery document for another issuer, and insecure URLs', async () => {
    const idp = fakeIdp()
    const lying = (async (input: string | URL) =>
      String(input).endsWith('openid-configuration')
        ? Response.json({issuer: 'https://evil.example', jwks_uri: `${ISSUER}/jwks`})
        : idp.fetchFn(input)) as typeof fetch
    const v = new TokenVerifier([p], {fetch: lying, clock})
    await rejectsCode(
      v.verify(await mint(idp.state.keys[0]!)),
      'ERR_UPSTREAM_UNAVAILABLE',
      {},
      /names issuer https:\/\/evil/,
    )
    assert.throws(() => assertSecureUrl('http://idp.example.com/jwks', 'jwks_uri'), /neither https nor loopback/)
    assert.equal(assertSecureUrl('http://127.0.0.1:8080/jwks', 'jwks_uri').port, '8080')
  })

  it('keeps key caches across a reload for issuers still configured', async () => {
    const idp = fakeIdp()
    const v1 = new TokenVerifier([p], {fetch: idp.fetchFn, clock})
    await v1.verify(await mint(idp.state.keys[0]!))
    const v2 = new TokenVerifier([{...p, rules: []}], {fetch: idp.fetchFn, clock}, v1)
    await v2.verify(await mint(idp.state.keys[0]!))
    assert.equal(idp.state.jwks, 1)
  })

  it('routes by azp when present', async () => {
    const idp = fakeIdp()
    const v = new TokenVerifier([p], {fetch: idp.fetchFn, clock})
    await rejectsCode(v.verify(await mint(idp.state.keys[0]!, {azp: 'other-client'})), 'ERR_TOKEN_INVALID', {
      reason: 'audience_mismatch',
    })
    assert.equal((await v.verify(await mint(idp.state.keys[0]!, {azp: 'cli'}))).provisioner.name, 'sso')
  })

  it('tells apart two tokens that share a nonce (a refreshed ID token repeats it), and keys on jti when present', async () => {
    const idp = fakeIdp()
    const v = new TokenVerifier([p], {fetch: idp.fetchFn, clock})
    const k = idp.state.keys[0]!
    const first = await v.verify(await mint(k, {jti: undefined, nonce: 'n-1'}))
    now += 1000
    const refreshed = await v.verify(await mint(k, {jti: undefined, nonce: 'n-1'}))
    assert.notEqual(first.tokenId, refreshed.tokenId)
    assert.match(first.tokenId, /#signed:[0-9a-f]{64}$/)
    assert.equal((await v.verify(await mint(k, {jti: 'abc'}))).tokenId, `${ISSUER}#jti:abc`)
  })
})
