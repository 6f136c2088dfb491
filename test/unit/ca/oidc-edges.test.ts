/**
 * Token verification's edges, each a mutation-testing survivor (issue 18): the claims a token must
 * carry, how long a spent token is remembered against how long it is accepted, the key cache's
 * default limits, discovery that redirects, hangs or lies, and routing by audience and azp. Every
 * refused token is validly signed, so only the check under test refuses it.
 */
import assert from 'node:assert/strict'
import {createHash, generateKeyPairSync, randomUUID, sign, type KeyObject} from 'node:crypto'
import {createServer, type Server} from 'node:http'
import type {AddressInfo, Socket} from 'node:net'
import {SignJWT, exportJWK, generateKeyPair, type JWTPayload} from 'jose'
import type {ProvisionerConfig} from '../../../src/ca/config/config.ts'
import {
  assertSecureUrl,
  canonicalParts,
  DEFAULT_MAX_TOKEN_AGE,
  LEEWAY_SECONDS,
  routeClaims,
  signedContentHash,
  tokenHash,
  TokenVerifier,
} from '../../../src/ca/provisioner/oidc.ts'
import {rejectsCode, throwsCode} from '../../helpers/assert.ts'

const ISSUER = 'https://idp.example.com'
const NOW_MS = 1_800_000_000_000
const NOW = NOW_MS / 1000
const p: ProvisionerConfig = {name: 'sso', type: 'oidc', issuer: ISSUER, clientId: 'cli', audience: 'cli', rules: []}

interface Key {
  privateKey: KeyObject
  publicKey: KeyObject
  kid: string
}
const newKey = (): Key => ({...generateKeyPairSync('ec', {namedCurve: 'P-256'}), kid: randomUUID()})

/** An IdP behind a fetch function: counts requests, records URLs and options, can go down or lie. */
function fakeIdp(issuer = ISSUER) {
  const state = {
    keys: [newKey()],
    down: false,
    discovery: 0,
    jwks: 0,
    urls: [] as string[],
    inits: [] as RequestInit[],
    meta: undefined as unknown,
    jwksBody: undefined as unknown,
    status: 200,
  }
  const base = issuer.replace(/\/$/, '')
  const fetchFn = (async (input: string | URL, init: RequestInit) => {
    const url = String(input)
    state.urls.push(url)
    state.inits.push(init)
    if (state.down) throw new TypeError('fetch failed')
    // the documents are served whatever the status, so that only the status can make them refused
    const status = state.status
    if (url === `${base}/.well-known/openid-configuration`) {
      state.discovery++
      return Response.json(state.meta ?? {issuer, jwks_uri: `${base}/jwks`}, {status})
    }
    // at any path ending in /jwks, on any host: only the checks on jwks_uri can refuse one
    if (url.endsWith('/jwks')) {
      state.jwks++
      return Response.json(
        state.jwksBody ?? {
          keys: await Promise.all(
            state.keys.map(async (k) => ({...(await exportJWK(k.publicKey)), kid: k.kid, alg: 'ES256'})),
          ),
        },
        {status},
      )
    }
    return new Response('not found', {status: 404})
  }) as typeof fetch
  return {state, fetchFn}
}

/** A token; `claims` undefined values are left out (a token without exp, iat …). */
function mint(k: Key, claims: JWTPayload = {}, header: Record<string, unknown> = {}): Promise<string> {
  const body: Record<string, unknown> = {
    iss: ISSUER,
    aud: 'cli',
    sub: 'alice',
    jti: randomUUID(),
    iat: NOW,
    exp: NOW + 300,
    ...claims,
  }
  for (const [name, v] of Object.entries(body)) if (v === undefined) delete body[name]
  return new SignJWT(body).setProtectedHeader({alg: 'ES256', kid: k.kid, ...header}).sign(k.privateKey)
}

/** A compact JWS of exactly this header and these claims, signed ES256 by `k`. */
function signedAsIs(k: Key, header: Record<string, unknown>, claims: JWTPayload): string {
  const input = [header, claims].map((part) => Buffer.from(JSON.stringify(part)).toString('base64url')).join('.')
  const signature = sign('sha256', Buffer.from(input), {key: k.privateKey, dsaEncoding: 'ieee-p1363'})
  return `${input}.${signature.toString('base64url')}`
}

describe('token verification: the claims a token must carry and how long it counts', () => {
  let idp: ReturnType<typeof fakeIdp>
  let now: number
  let v: TokenVerifier
  beforeEach(() => {
    idp = fakeIdp()
    now = NOW_MS
    v = new TokenVerifier([p], {fetch: idp.fetchFn, clock: () => now})
  })
  const k = () => idp.state.keys[0]!

  it('a token without exp (it would never expire) or without iat is refused', async () => {
    await rejectsCode(v.verify(await mint(k(), {exp: undefined})), 'ERR_TOKEN_INVALID', {
      reason: 'token_invalid',
      provisioner: 'sso',
    })
    // a missing iat is not "not yet valid": the token is malformed
    await rejectsCode(v.verify(await mint(k(), {iat: undefined})), 'ERR_TOKEN_INVALID', {
      reason: 'token_invalid',
      provisioner: 'sso',
    })
    assert.equal((await v.verify(await mint(k()))).claims.sub, 'alice')
  })

  it('header extensions (crit, b64) are refused, even those jose would take; a signature over other bytes does not verify', async () => {
    // each signed as it stands: jose's signer refuses critical extensions it does not know
    const claims = {iss: ISSUER, aud: 'cli', sub: 'alice', jti: randomUUID(), iat: NOW, exp: NOW + 300}
    for (const extra of [{b64: true, crit: ['b64']}, {b64: true}, {crit: ['exp'], exp: NOW + 300}]) {
      const token = signedAsIs(k(), {alg: 'ES256', kid: k().kid, ...extra}, claims)
      await rejectsCode(
        v.verify(token),
        'ERR_TOKEN_INVALID',
        {reason: 'token_invalid', provisioner: 'sso'},
        /header extensions/,
      )
    }
    // the same token without them is taken (so it is the extensions that are refused)
    assert.equal((await v.verify(signedAsIs(k(), {alg: 'ES256', kid: k().kid}, claims))).claims.sub, 'alice')
    // a valid signature moved onto another payload
    const [h, , s] = (await mint(k())).split('.')
    const [, other] = (await mint(k(), {sub: 'mallory'})).split('.')
    await rejectsCode(v.verify(`${h}.${other}.${s}`), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})
    // the same signature checked against the key the JWKS names: another issuer key does not do
    const stranger = await generateKeyPair('ES256')
    const forged = await new SignJWT({iss: ISSUER, aud: 'cli', sub: 'alice', iat: NOW, exp: NOW + 300})
      .setProtectedHeader({alg: 'ES256', kid: k().kid})
      .sign(stranger.privateKey)
    await rejectsCode(v.verify(forged), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})
  })

  it('a JWT of the issuer that is no ID token (an access, logout, security event token, any typed JWT) is refused', async () => {
    const claims = {iss: ISSUER, aud: 'cli', sub: 'alice', jti: randomUUID(), iat: NOW, exp: NOW + 300}
    for (const typ of [
      'at+jwt',
      'application/at+jwt',
      'AT+JWT',
      'logout+jwt',
      'secevent+jwt',
      // any other explicitly typed JWT: an introspection response, a DPoP proof, a client assertion
      'token-introspection+jwt',
      'application/token-introspection+jwt',
      'dpop+jwt',
      'client-authentication+jwt',
      // with parameters, another top-level type, or not a string: still no ID token
      'at+jwt; charset=utf-8',
      'at+jwt ;charset=utf-8',
      'x/at+jwt',
      'at+jwt+zip',
      ['at+jwt'],
      7,
    ] as unknown[]) {
      await rejectsCode(
        v.verify(signedAsIs(k(), {alg: 'ES256', kid: k().kid, typ}, claims)),
        'ERR_TOKEN_INVALID',
        {reason: 'token_invalid', provisioner: 'sso'},
        /not an ID token/,
      )
    }
    for (const typ of ['JWT', 'jwt', 'application/jwt'])
      assert.equal((await v.verify(signedAsIs(k(), {alg: 'ES256', kid: k().kid, typ}, claims))).claims.sub, 'alice')
  })

  it('a fractional exp (only the issuer can sign one) is kept spent to the next whole second, not a store error', async () => {
    const verified = await v.verify(await mint(k(), {exp: NOW + 300.25}))
    assert.equal(verified.expiresAt, NOW + 301 + LEEWAY_SECONDS)
  })

  it('a spent token is remembered as long as it is accepted: exp plus the leeway', async () => {
    const token = await mint(k(), {exp: NOW + 300})
    const verified = await v.verify(token)
    assert.equal(verified.expiresAt, NOW + 300 + LEEWAY_SECONDS)
    // accepted up to the last second of the leeway, refused after it: never accepted past expiresAt
    now = (verified.expiresAt - 1) * 1000
    assert.equal((await v.verify(token)).tokenHash, verified.tokenHash)
    now = (verified.expiresAt + 1) * 1000
    await rejectsCode(v.verify(token), 'ERR_TOKEN_INVALID', {reason: 'token_expired'})
  })

  it('exp, iat or nbf that is not a number makes the token malformed', async () => {
    for (const claim of ['exp', 'iat', 'nbf']) {
      await rejectsCode(v.verify(await mint(k(), {[claim]: String(NOW + 10)})), 'ERR_TOKEN_INVALID', {
        reason: 'token_invalid',
      }).catch((e: Error) => assert.fail(`${claim}: ${e.message}`))
    }
  })

  it('nbf or iat in the future beyond the leeway is "not yet valid"; within it, fine', async () => {
    await rejectsCode(v.verify(await mint(k(), {nbf: NOW + 120})), 'ERR_TOKEN_INVALID', {reason: 'token_not_yet_valid'})
    await rejectsCode(v.verify(await mint(k(), {iat: NOW + 120, exp: NOW + 400})), 'ERR_TOKEN_INVALID', {
      reason: 'token_not_yet_valid',
    })
    assert.equal((await v.verify(await mint(k(), {nbf: NOW + 30, iat: NOW + 30}))).claims.sub, 'alice')
  })

  it('a token may live maxTokenAge (an hour by default), not a second more, whatever its iat', async () => {
    assert.equal(DEFAULT_MAX_TOKEN_AGE, 3600)
    assert.equal((await v.verify(await mint(k(), {iat: NOW, exp: NOW + 3600}))).claims.sub, 'alice')
    await rejectsCode(v.verify(await mint(k(), {iat: NOW, exp: NOW + 3601})), 'ERR_TOKEN_INVALID', {
      reason: 'token_lifetime_too_long',
      provisioner: 'sso',
    })
    // issued more than maxTokenAge ago although exp is ahead: refused too
    await rejectsCode(
      v.verify(await mint(k(), {iat: NOW - 3600 - LEEWAY_SECONDS - 5, exp: NOW + 10})),
      'ERR_TOKEN_INVALID',
    )
    const strict = new TokenVerifier([{...p, maxTokenAge: 600}], {fetch: idp.fetchFn, clock: () => now})
    await rejectsCode(strict.verify(await mint(k(), {iat: NOW, exp: NOW + 601})), 'ERR_TOKEN_INVALID', {
      reason: 'token_lifetime_too_long',
    })
    assert.equal((await strict.verify(await mint(k(), {iat: NOW, exp: NOW + 600}))).claims.sub, 'alice')
  })

  it('replay keys: the issuer with a jti of 1-256 printable ASCII characters, else the signed content; the audit hash is of the text', async () => {
    const withJti = await mint(k(), {jti: 'abc'})
    const r = await v.verify(withJti)
    assert.equal(r.tokenId, `${ISSUER}#jti:abc`)
    assert.equal(r.tokenHash, createHash('sha256').update(withJti).digest('hex'))
    assert.equal(tokenHash('x'), createHash('sha256').update('x').digest('hex'))
    assert.equal((await v.verify(await mint(k(), {jti: 'x'.repeat(256)}))).tokenId, `${ISSUER}#jti:${'x'.repeat(256)}`)
    // as the SSHPOP jti: what PostgreSQL cannot store (a NUL), or too long, keys on the signed content
    for (const jti of ['', 5, undefined, 'a\u0000b', 'a b', '\ud800', 'x'.repeat(257)]) {
      const t = await mint(k(), {jti: jti as string})
      assert.equal(
        (await v.verify(t)).tokenId,
        `${ISSUER}#signed:${signedContentHash(canonicalParts(t)!)}`,
        JSON.stringify(jti),
      )
    }
  })

  it('a signature by a key the issuer does not publish, or a tampered token, is refused', async () => {
    await rejectsCode(v.verify(await mint(newKey())), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})
    const t = await mint(k())
    const [h, , s] = t.split('.')
    const other = Buffer.from(
      JSON.stringify({iss: ISSUER, aud: 'cli', sub: 'root', iat: NOW, exp: NOW + 300}),
    ).toString('base64url')
    await rejectsCode(v.verify(`${h}.${other}.${s}`), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})
  })
})

describe('token verification: what is read before the signature', () => {
  let v: TokenVerifier
  before(() => {
    v = new TokenVerifier([p, {...p, name: 'ci', audience: 'ci', clientId: undefined}], {
      fetch: fakeIdp().fetchFn,
      clock: () => NOW_MS,
    })
  })

  it('refuses tokens that are too long, not three canonical base64url parts, or not asymmetrically signed', async () => {
    const k = newKey()
    const big = await mint(k, {pad: 'x'.repeat(9000)})
    throwsCode(() => v.route(big), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})
    // 8192 characters is the most a token may have
    const seg = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url')
    const sized = (n: number) => {
      const h = seg({alg: 'ES256'})
      for (let pad = 0; ; pad++) {
        const body = seg({iss: ISSUER, aud: 'cli', pad: 'x'.repeat(pad)})
        const rest = n - h.length - body.length - 2
        if (rest % 4 !== 1) return `${h}.${body}.${'A'.repeat(rest)}`
      }
    }
    assert.equal(sized(8192).length, 8192)
    assert.equal(v.route(sized(8192)).provisioner.name, 'sso')
    throwsCode(() => v.route(sized(8193)), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})
    assert.equal(v.route(await mint(k, {pad: 'x'.repeat(5000)})).provisioner.name, 'sso')
    const t = await mint(k)
    for (const bad of [t.split('.').slice(0, 2).join('.'), `${t}.x`, `${t}=`, ` ${t}`, t.replace('.', '.='), 'a.b.']) {
      throwsCode(() => v.route(bad), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})
    }
    const hs = await new SignJWT({iss: ISSUER, aud: 'cli', iat: NOW, exp: NOW + 300})
      .setProtectedHeader({alg: 'HS256'})
      .sign(Buffer.alloc(32, 1))
    throwsCode(() => v.route(hs), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})
    for (const header of [{alg: 'none'}, {alg: 5}, {}, {alg: 'es256'}]) {
      throwsCode(() => v.route(`${seg(header)}.${seg({iss: ISSUER, aud: 'cli'})}.c2ln`), 'ERR_TOKEN_INVALID', {
        reason: 'token_invalid',
      })
    }
    throwsCode(
      () => v.route(`${seg({alg: 'ES256'})}.${Buffer.from('not json').toString('base64url')}.c2ln`),
      'ERR_TOKEN_INVALID',
      {reason: 'token_invalid'},
    )
    // a header or claims set that is JSON but no object (route() parses them itself, as jose would refuse them)
    const b64 = (text: string): string => Buffer.from(text).toString('base64url')
    for (const other of ['null', '[]', '[{"alg":"ES256"}]', '"ES256"', '5', 'true']) {
      throwsCode(() => v.route(`${b64(other)}.${seg({iss: ISSUER, aud: 'cli'})}.c2ln`), 'ERR_TOKEN_INVALID', {
        reason: 'token_invalid',
      })
      throwsCode(() => v.route(`${seg({alg: 'ES256'})}.${b64(other)}.c2ln`), 'ERR_TOKEN_INVALID', {
        reason: 'token_invalid',
      })
    }
    throwsCode(() => v.route(`${b64('{"alg":')}.${seg({iss: ISSUER, aud: 'cli'})}.c2ln`), 'ERR_TOKEN_INVALID', {
      reason: 'token_invalid',
    })
    for (const alg of [
      'RS256',
      'RS384',
      'RS512',
      'PS256',
      'PS384',
      'PS512',
      'ES256',
      'ES384',
      'ES512',
      'EdDSA',
      'Ed25519',
    ])
      assert.equal(v.route(`${seg({alg})}.${seg({iss: ISSUER, aud: 'cli'})}.c2ln`).provisioner.name, 'sso', alg)
  })

  it('canonical parts: exactly three, each the one base64url spelling of its bytes', () => {
    const parts = canonicalParts(
      `${Buffer.from('{"a":1}').toString('base64url')}.${Buffer.from('xyz').toString('base64url')}.c2ln`,
    )!
    assert.deepEqual([parts.header.toString(), parts.payload.toString()], ['{"a":1}', 'xyz'])
    // each of these is made of canonical parts but one thing: the count, an empty part, a character
    for (const bad of [
      'YQ.Yg',
      'YQ.Yg.Yw.ZA',
      'YQ..Yw',
      '.Yg.Yw',
      'YQ.Yg.',
      'YQ.Yg.Yw=',
      'YQ.Y+g.Yw',
      'YQ.Yg.Y/w',
      ' YQ.Yg.Yw',
      'YQ.Yg.Yx',
    ])
      assert.equal(canonicalParts(bad), undefined, bad)
    assert.deepEqual(canonicalParts('YQ.Yg.Yw'), {
      header: Buffer.from('a'),
      payload: Buffer.from('b'),
      signature: Buffer.from('c'),
    })
    // the length prefix keeps header and payload apart: "ab"+"c" is not "a"+"bc"
    assert.notEqual(
      signedContentHash({header: Buffer.from('ab'), payload: Buffer.from('c')}),
      signedContentHash({header: Buffer.from('a'), payload: Buffer.from('bc')}),
    )
  })

  it('routes by issuer, then audience; several audiences need azp; azp must be the client', () => {
    const two = [p, {...p, name: 'other', audience: 'other', clientId: 'other'}]
    assert.equal(routeClaims(two, {iss: ISSUER, aud: 'other'}).name, 'other')
    assert.equal(routeClaims(two, {iss: ISSUER, aud: ['cli']}).name, 'sso')
    throwsCode(() => routeClaims(two, {iss: 'https://evil.example', aud: 'cli'}), 'ERR_TOKEN_INVALID', {
      reason: 'issuer_unknown',
    })
    throwsCode(() => routeClaims(two, {iss: ISSUER, aud: 'nobody'}), 'ERR_TOKEN_INVALID', {reason: 'audience_mismatch'})
    throwsCode(() => routeClaims(two, {iss: ISSUER, aud: 5 as unknown as string}), 'ERR_TOKEN_INVALID', {
      reason: 'audience_mismatch',
    })
    throwsCode(() => routeClaims(two, {iss: ISSUER}), 'ERR_TOKEN_INVALID', {reason: 'audience_mismatch'})
    throwsCode(() => routeClaims(two, {iss: ISSUER, aud: ['cli', 'someone-else']}), 'ERR_TOKEN_INVALID', {
      reason: 'audience_mismatch',
    })
    assert.equal(routeClaims(two, {iss: ISSUER, aud: ['cli', 'someone-else'], azp: 'cli'}).name, 'sso')
    throwsCode(() => routeClaims(two, {iss: ISSUER, aud: 'cli', azp: 'other'}), 'ERR_TOKEN_INVALID', {
      reason: 'audience_mismatch',
    })
    // azp is compared with the client id when one is set, else with the audience
    const split: ProvisionerConfig = {...p, audience: 'api://sshca', clientId: 'client-1'}
    assert.equal(routeClaims([split], {iss: ISSUER, aud: 'api://sshca', azp: 'client-1'}).name, 'sso')
    throwsCode(() => routeClaims([split], {iss: ISSUER, aud: 'api://sshca', azp: 'api://sshca'}), 'ERR_TOKEN_INVALID', {
      reason: 'audience_mismatch',
    })
    const noClient: ProvisionerConfig = {...p, audience: 'ci', clientId: undefined}
    assert.equal(routeClaims([noClient], {iss: ISSUER, aud: 'ci', azp: 'ci'}).name, 'sso')
    // with azp, the provisioner whose client it names is chosen among those of that audience
    const sameAud = [
      {...p, name: 'a', clientId: 'one'},
      {...p, name: 'b', clientId: 'two'},
    ]
    assert.equal(routeClaims(sameAud, {iss: ISSUER, aud: 'cli', azp: 'two'}).name, 'b')
    // a token two provisioners would take alike is refused, not given to the first in ca.yaml: two
    // audiences of one client, both named, or an audience that is the other's client id
    const oneClient = [
      {...p, name: 'people', audience: 'api://people', clientId: 'app'},
      {...p, name: 'admins', audience: 'api://admins', clientId: 'app'},
    ]
    assert.equal(routeClaims(oneClient, {iss: ISSUER, aud: ['api://people', 'x'], azp: 'app'}).name, 'people')
    throwsCode(
      () => routeClaims(oneClient, {iss: ISSUER, aud: ['api://people', 'api://admins'], azp: 'app'}),
      'ERR_TOKEN_INVALID',
      {reason: 'audience_mismatch'},
      /fits provisioners "people" and "admins"/,
    )
    throwsCode(
      () => routeClaims([...sameAud, {...p, name: 'c', clientId: 'two'}], {iss: ISSUER, aud: 'cli', azp: 'two'}),
      'ERR_TOKEN_INVALID',
      {reason: 'audience_mismatch'},
    )
  })

  it('issuer and JWKS URLs: https, or http on a loopback address only', () => {
    for (const ok of [
      'https://idp.example.com/jwks',
      'http://127.0.0.1:8080/jwks',
      'http://[::1]:8080/jwks',
      'http://127.9.9.9/jwks',
    ])
      assert.equal(assertSecureUrl(ok, 'jwks_uri').href, new URL(ok).href)
    for (const bad of [
      'http://idp.example.com/jwks',
      'http://localhost/jwks',
      'ftp://idp.example.com/jwks',
      'ftp://127.0.0.1/jwks',
      'ws://127.0.0.1/jwks',
      'file://127.0.0.1/etc/passwd',
      'file:///etc/passwd',
      'not a url',
      '',
    ]) {
      throwsCode(() => assertSecureUrl(bad, 'jwks_uri'), 'ERR_UPSTREAM_UNAVAILABLE')
    }
  })
})

describe("token verification: the IdP's keys", () => {
  let idp: ReturnType<typeof fakeIdp>
  let now: number
  beforeEach(() => {
    idp = fakeIdp()
    now = NOW_MS
  })
  /** Only fetch and clock given: every limit at its default. */
  const defaults = () => new TokenVerifier([p], {fetch: idp.fetchFn, clock: () => now})
  const ok = async (v: TokenVerifier, k = idp.state.keys[0]!) =>
    assert.equal(
      (await v.verify(await mint(k, {iat: Math.floor(now / 1000), exp: Math.floor(now / 1000) + 300}))).claims.sub,
      'alice',
    )
  const fails = async (v: TokenVerifier, code: string, reason: string, k = idp.state.keys[0]!) =>
    rejectsCode(v.verify(await mint(k, {iat: Math.floor(now / 1000), exp: Math.floor(now / 1000) + 300})), code, {
      reason,
    })

  it('by default keys are refetched after 10 minutes, not before', async () => {
    const v = defaults()
    await ok(v)
    now += 10 * 60_000
    await ok(v)
    assert.equal(idp.state.jwks, 1)
    now += 1
    await ok(v)
    assert.equal(idp.state.jwks, 2)
  })

  it('by default stale keys serve for an hour while the IdP is down, then nothing does (a withdrawn key is not trusted forever)', async () => {
    const v = defaults()
    await ok(v)
    idp.state.down = true
    now += 60 * 60_000
    await ok(v)
    now += 1
    await fails(v, 'ERR_UPSTREAM_UNAVAILABLE', 'jwks_unavailable')
    // the failure keeps what went wrong underneath, for the operator's log
    const err = await v
      .verify(await mint(idp.state.keys[0]!, {iat: Math.floor(now / 1000), exp: Math.floor(now / 1000) + 300}))
      .catch((e: Error) => e)
    assert.ok(((err as Error).cause as Error).cause instanceof TypeError)
    // back up: fresh keys again once the cooldown after the failure has passed (not asked before)
    idp.state.down = false
    await fails(v, 'ERR_UPSTREAM_UNAVAILABLE', 'jwks_unavailable')
    assert.equal(idp.state.jwks, 1)
    now += 30_000
    await ok(v)
    assert.equal(idp.state.jwks, 2)
  })

  it('by default an unknown key id refetches at most every 30 seconds', async () => {
    const v = defaults()
    await ok(v)
    const rotated = newKey()
    idp.state.keys.push(rotated)
    now += 30_000
    await fails(v, 'ERR_TOKEN_INVALID', 'token_invalid', rotated)
    assert.equal(idp.state.jwks, 1)
    now += 1
    await ok(v, rotated)
    assert.equal(idp.state.jwks, 2)
    // a refetch that fails leaves the old keys, and the unknown key refused
    const stranger = newKey()
    now += 31_000
    idp.state.down = true
    await fails(v, 'ERR_TOKEN_INVALID', 'token_invalid', stranger)
    await ok(v, rotated)
  })

  it('stale keys with the issuer down: asked once behind the request that found them stale, then not until the cooldown has passed', async () => {
    const ended: string[] = []
    let wake = (): void => undefined
    const v = new TokenVerifier([p], {
      fetch: idp.fetchFn,
      clock: () => now,
      onKeysFetch: (_issuer, outcome) => {
        ended.push(outcome)
        wake()
      },
    })
    await ok(v)
    idp.state.down = true
    now += 10 * 60_000 + 1
    await ok(v)
    assert.equal(idp.state.urls.length, 3, 'one discovery attempt behind the request')
    // the failure is recorded at the clock it ends on: wait for it, then move the clock
    if (ended.length < 2) await new Promise<void>((resolve) => (wake = resolve))
    assert.deepEqual(ended, ['ok', 'error'])
    for (let i = 0; i < 3; i++) await ok(v)
    now += 29_999
    await ok(v)
    assert.equal(idp.state.urls.length, 3, 'not asked again within the cooldown, though the keys are still stale')
    now += 1
    await ok(v)
    assert.equal(idp.state.urls.length, 4, 'asked again once the cooldown has passed')
  })

  it('a token no single published key matches (no kid, two keys) is refused without asking the issuer: only an unknown key id may bring a new key', async () => {
    idp.state.keys.push(newKey())
    const v = defaults()
    await ok(v)
    now += 31_000
    const token = await mint(
      idp.state.keys[0]!,
      {iat: Math.floor(now / 1000), exp: Math.floor(now / 1000) + 300},
      {kid: undefined},
    )
    await rejectsCode(v.verify(token), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})
    assert.deepEqual([idp.state.discovery, idp.state.jwks], [1, 1])
  })

  it("a discovery document that is JSON null, or a key jose finds malformed, is the issuer's failure from the first token on, not the token's", async () => {
    const discovery = {issuer: ISSUER, jwks_uri: `${ISSUER}/jwks`}
    const cases: [string, unknown, unknown, new (...a: never[]) => Error][] = [
      ['a discovery document that is null', null, {keys: []}, TypeError],
      ['a JWKS whose key is a number', discovery, {keys: [1]}, Error],
      ['a JWKS whose key is null', discovery, {keys: [null]}, Error],
    ]
    for (const [what, meta, jwks, cause] of cases) {
      const answer = (async (url: string | URL) =>
        Response.json(String(url).endsWith('/jwks') ? jwks : meta)) as unknown as typeof fetch
      const v = new TokenVerifier([p], {fetch: answer, clock: () => now})
      for (const attempt of ['the first token', 'the next, within the cooldown']) {
        const err = await v.verify(await mint(idp.state.keys[0]!)).catch((e: Error) => e)
        assert.deepEqual(
          [(err as {code?: string}).code, (err as {details?: unknown}).details],
          ['ERR_UPSTREAM_UNAVAILABLE', {provisioner: 'sso', reason: 'jwks_unavailable'}],
          `${what}: ${attempt}`,
        )
        // what broke is kept underneath, for the operator's log
        assert.ok(((err as Error).cause as Error).cause instanceof cause, `${what}: ${attempt}`)
      }
    }
  })

  it('an issuer that is neither https nor loopback http is never fetched, even if configured', async () => {
    const plain = fakeIdp('http://idp.example.com')
    const v = new TokenVerifier([{...p, issuer: 'http://idp.example.com'}], {fetch: plain.fetchFn, clock: () => now})
    await rejectsCode(
      v.verify(await mint(plain.state.keys[0]!, {iss: 'http://idp.example.com'})),
      'ERR_UPSTREAM_UNAVAILABLE',
      {reason: 'jwks_unavailable'},
    )
    assert.deepEqual(plain.state.urls, [])
  })

  it('provisioners sharing an issuer share its keys: one fetch for both', async () => {
    const v = new TokenVerifier([p, {...p, name: 'ci', audience: 'ci', clientId: undefined}], {
      fetch: idp.fetchFn,
      clock: () => now,
    })
    await ok(v)
    assert.equal((await v.verify(await mint(idp.state.keys[0]!, {aud: 'ci'}))).provisioner.name, 'ci')
    assert.deepEqual([idp.state.discovery, idp.state.jwks], [1, 1])
  })

  it('one refresh at a time: concurrent first verifications fetch discovery and JWKS once', async () => {
    const v = defaults()
    const tokens = await Promise.all([1, 2, 3].map(() => mint(idp.state.keys[0]!)))
    await Promise.all(tokens.map((t) => v.verify(t)))
    assert.deepEqual([idp.state.discovery, idp.state.jwks], [1, 1])
  })

  it('fetches ask for JSON, refuse redirects and carry a timeout; a trailing "/" on the issuer is not doubled', async () => {
    const slash = fakeIdp(`${ISSUER}/`)
    const v = new TokenVerifier([{...p, issuer: `${ISSUER}/`}], {fetch: slash.fetchFn, clock: () => now})
    await v.verify(await mint(slash.state.keys[0]!, {iss: `${ISSUER}/`}))
    assert.deepEqual(slash.state.urls, [`${ISSUER}/.well-known/openid-configuration`, `${ISSUER}/jwks`])
    for (const init of slash.state.inits) {
      assert.equal(init.redirect, 'error')
      assert.ok(init.signal instanceof AbortSignal)
      assert.equal(new Headers(init.headers).get('accept'), 'application/json')
    }
  })

  it('a discovery document that lies, or keys that are not keys, give no keys at all', async () => {
    const cases: [string, () => void][] = [
      ['another issuer', () => (idp.state.meta = {issuer: 'https://evil.example', jwks_uri: `${ISSUER}/jwks`})],
      ['no jwks_uri', () => (idp.state.meta = {issuer: ISSUER})],
      ['a jwks_uri that is not text', () => (idp.state.meta = {issuer: ISSUER, jwks_uri: 5})],
      ['a jwks_uri in a list', () => (idp.state.meta = {issuer: ISSUER, jwks_uri: [`${ISSUER}/jwks`]})],
      [
        'a jwks_uri over plain http',
        () => (idp.state.meta = {issuer: ISSUER, jwks_uri: 'http://idp.example.com/jwks'}),
      ],
      ['a JWKS without keys', () => (idp.state.jwksBody = {})],
      ['a JWKS whose keys are not a list', () => (idp.state.jwksBody = {keys: {}})],
      ['a JWKS whose keys are null', () => (idp.state.jwksBody = {keys: null})],
      ['a JWKS that is a list', () => (idp.state.jwksBody = [])],
      ['HTTP 500', () => (idp.state.status = 500)],
      ['HTTP 302', () => (idp.state.status = 302)],
    ]
    for (const [what, setup] of cases) {
      idp = fakeIdp()
      setup()
      await fails(defaults(), 'ERR_UPSTREAM_UNAVAILABLE', 'jwks_unavailable').catch((e: Error) =>
        assert.fail(`${what}: ${e.message}`),
      )
    }
    const notJson = (async () => new Response('<html>', {status: 200})) as unknown as typeof fetch
    const err = await new TokenVerifier([p], {fetch: notJson, clock: () => now})
      .verify(await mint(idp.state.keys[0]!))
      .catch((e: Error) => e)
    assert.deepEqual(
      [(err as {code?: string}).code, (err as {details?: unknown}).details],
      ['ERR_UPSTREAM_UNAVAILABLE', {provisioner: 'sso', reason: 'jwks_unavailable'}],
    )
    assert.ok(((err as Error).cause as Error).cause instanceof SyntaxError)
  })
})

describe('token verification against a real HTTP issuer on 127.0.0.1', function () {
  this.timeout(30_000)
  let server: Server
  let issuer: string
  let key: Key
  const sockets = new Set<Socket>()
  let route: (path: string) => {status: number; headers?: Record<string, string>; body?: unknown} | 'hang'

  before(async () => {
    key = newKey()
    server = createServer((req, res) => {
      const a = route(req.url ?? '/')
      if (a === 'hang') return
      res.writeHead(a.status, {'content-type': 'application/json', ...a.headers})
      res.end(a.body === undefined ? '' : JSON.stringify(a.body))
    })
    server.on('connection', (s) => {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise((resolve) => server?.close(resolve))
  })

  const jwks = async () => ({keys: [{...(await exportJWK(key.publicKey)), kid: key.kid, alg: 'ES256'}]})
  const verifier = (deps: {timeoutMs?: number} = {}) =>
    new TokenVerifier([{...p, issuer}], {clock: () => NOW_MS, ...deps})
  const token = () => mint(key, {iss: issuer})

  it('follows no redirect, not even to a document that would be accepted', async () => {
    const keys = await jwks()
    route = (path) =>
      path === '/.well-known/openid-configuration'
        ? {status: 302, headers: {location: '/real-discovery'}}
        : path === '/real-discovery'
          ? {status: 200, body: {issuer, jwks_uri: `${issuer}/keys`}}
          : path === '/keys'
            ? {status: 200, body: keys}
            : {status: 404}
    await rejectsCode(verifier().verify(await token()), 'ERR_UPSTREAM_UNAVAILABLE', {reason: 'jwks_unavailable'})
    route = (path) =>
      path === '/.well-known/openid-configuration'
        ? {status: 200, body: {issuer, jwks_uri: `${issuer}/moved`}}
        : path === '/moved'
          ? {status: 307, headers: {location: '/keys'}}
          : path === '/keys'
            ? {status: 200, body: keys}
            : {status: 404}
    await rejectsCode(verifier().verify(await token()), 'ERR_UPSTREAM_UNAVAILABLE', {reason: 'jwks_unavailable'})
    // the same documents without the redirects verify
    route = (path) =>
      path === '/.well-known/openid-configuration'
        ? {status: 200, body: {issuer, jwks_uri: `${issuer}/keys`}}
        : path === '/keys'
          ? {status: 200, body: keys}
          : {status: 404}
    assert.equal((await verifier().verify(await token())).claims.sub, 'alice')
  })

  it('gives up on an issuer that accepts the connection and never answers', async () => {
    route = () => 'hang'
    const started = Date.now()
    await rejectsCode(verifier({timeoutMs: 300}).verify(await token()), 'ERR_UPSTREAM_UNAVAILABLE', {
      reason: 'jwks_unavailable',
    })
    assert.ok(Date.now() - started < 20_000)
  })
})

describe('token verification: JWKS fetches are reported (the metrics count them by issuer and outcome)', () => {
  it('a fetch that succeeds reports ok, one that fails reports error, and the failure still fails the token', async () => {
    const idp = fakeIdp()
    const fetches: [string, string][] = []
    const v = new TokenVerifier([p], {
      fetch: idp.fetchFn,
      clock: () => NOW_MS,
      onKeysFetch: (issuer, outcome) => void fetches.push([issuer, outcome]),
    })
    assert.equal((await v.verify(await mint(idp.state.keys[0]!))).provisioner.name, 'sso')
    const down = fakeIdp()
    down.state.down = true
    const w = new TokenVerifier([p], {
      fetch: down.fetchFn,
      clock: () => NOW_MS,
      onKeysFetch: (issuer, outcome) => void fetches.push([issuer, outcome]),
    })
    await rejectsCode(w.verify(await mint(down.state.keys[0]!)), 'ERR_UPSTREAM_UNAVAILABLE')
    assert.deepEqual(fetches, [
      [ISSUER, 'ok'],
      [ISSUER, 'error'],
    ])
  })
})
