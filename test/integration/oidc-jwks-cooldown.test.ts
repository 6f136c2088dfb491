/**
 * An issuer that is down or hangs must not be asked again for every forged token: routing reads the
 * unverified iss and aud, so anyone can make a verification reach the key cache. A real HTTPS issuer
 * on loopback counts what it is asked; the CA's clock is injected, so nothing here is timed.
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync, randomUUID, type KeyObject} from 'node:crypto'
import {SignJWT, exportJWK} from 'jose'
import {Agent, fetch as undiciFetch} from 'undici'
import type {ProvisionerConfig} from '../../src/ca/config/config.ts'
import {createIntermediate, createRoot, createTlsCert} from '../../src/ca/keys/pki.ts'
import {TokenVerifier} from '../../src/ca/provisioner/oidc.ts'
import {rejectsCode} from '../helpers/assert.ts'
import {waitFor} from '../helpers/proc.ts'
import {json, startScripted, type Answer, type ScriptedServer} from '../helpers/scripted-server.ts'

const AUDIENCE = 'sshca-cli'
const COOLDOWN = 30_000
const MAX_AGE = 600_000

describe('OIDC key cache: a failing issuer is asked at most once per cooldown', function () {
  this.timeout(60_000)
  let idp: ScriptedServer
  let dispatcher: Agent
  let signingKey: KeyObject
  let jwk: Record<string, unknown>
  let mode: 'up' | 'down' | 'hang'
  /** Keys the issuer publishes beside k1 (a rotation). */
  let rotated: Record<string, unknown>[]
  /** Answers held by a hanging issuer, released at the end of a test. */
  let held: ((a: Answer) => void)[]
  let now: number
  let outcomes: string[]
  let p: ProvisionerConfig

  before(async () => {
    const root = await createRoot('IdP')
    const intermediate = await createIntermediate('IdP', root)
    idp = await startScripted(await createTlsCert(['127.0.0.1'], intermediate), [intermediate])
    dispatcher = new Agent({connect: {ca: root.pem}})
    const pair = generateKeyPairSync('ec', {namedCurve: 'P-256'})
    signingKey = pair.privateKey
    jwk = {...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig'}
    idp.answer = (path) => {
      if (mode === 'down') return {status: 503, body: 'down'}
      if (mode === 'hang') return new Promise<Answer>((resolve) => held.push(resolve))
      if (path === '/.well-known/openid-configuration') return json({issuer: idp.url, jwks_uri: `${idp.url}/jwks`})
      if (path === '/jwks') return json({keys: [jwk, ...rotated]})
      return {status: 404, body: ''}
    }
    p = {name: 'sso', type: 'oidc', issuer: idp.url, clientId: AUDIENCE, audience: AUDIENCE, rules: []}
  })
  after(async () => {
    await idp?.stop()
    await dispatcher?.close()
  })
  beforeEach(() => {
    mode = 'up'
    rotated = []
    held = []
    now = 1_800_000_000_000
    outcomes = []
    idp.requests.length = 0
  })
  afterEach(() => {
    for (const release of held.splice(0)) release({status: 503, body: 'released'})
  })

  const verifier = () =>
    new TokenVerifier([p], {
      fetch: ((url: string, init: RequestInit) =>
        undiciFetch(url, {...(init as object), dispatcher})) as unknown as typeof fetch,
      clock: () => now,
      maxAgeMs: MAX_AGE,
      cooldownMs: COOLDOWN,
      maxStaleMs: 3_600_000,
      // far longer than the test may take: a request that waits on the hanging issuer never ends in time
      timeoutMs: 10 * 60_000,
      onKeysFetch: (_issuer, outcome) => outcomes.push(outcome),
    })
  /** A token for the provisioner's iss and aud, under the issuer's kid, signed by a key of our own. */
  const forged = () => {
    const attacker = generateKeyPairSync('ec', {namedCurve: 'P-256'}).privateKey
    return mint(attacker)
  }
  const mint = (key: KeyObject, kid = 'k1') =>
    new SignJWT({sub: 'mallory', jti: randomUUID()})
      .setProtectedHeader({alg: 'ES256', kid})
      .setIssuer(idp.url)
      .setAudience(AUDIENCE)
      .setIssuedAt(Math.floor(now / 1000))
      .setExpirationTime(Math.floor(now / 1000) + 300)
      .sign(key)
  const discoveries = () => idp.requests.filter((r) => r.endsWith('/openid-configuration')).length
  /** Every refresh started has ended (the background one included): what the issuer was asked is final. */
  const settled = (fetches: number) => waitFor(`${fetches} key fetches to end`, () => outcomes.length >= fetches)

  it('stale keys after maxAge with the issuer down: 50 forged tokens cost one fetch per cooldown', async () => {
    const v = verifier()
    assert.equal((await v.verify(await mint(signingKey))).claims.sub, 'mallory')
    assert.equal(discoveries(), 1)
    mode = 'down'
    now += MAX_AGE + 1000
    const tokens = await Promise.all(Array.from({length: 50}, forged))
    for (const t of tokens) await rejectsCode(v.verify(t), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})
    await settled(2)
    assert.equal(discoveries(), 2, 'one refetch for 50 forged tokens within the cooldown')
    assert.deepEqual(outcomes, ['ok', 'error'])
    // the cooldown passes: one more attempt, however many tokens come
    now += COOLDOWN + 1000
    for (const t of tokens) await rejectsCode(v.verify(t), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})
    await settled(3)
    assert.equal(discoveries(), 3)
    // the issuer is back: the next attempt after the cooldown fetches, and the real key still verifies
    mode = 'up'
    now += COOLDOWN + 1000
    assert.equal((await v.verify(await mint(signingKey))).claims.sub, 'mallory')
    await settled(4)
    assert.equal(outcomes.at(-1), 'ok')
    assert.equal(discoveries(), 4)
  })

  it('a hanging issuer holds no request that has stale keys to use, and is asked once', async () => {
    const v = verifier()
    await v.verify(await mint(signingKey))
    mode = 'hang'
    now += MAX_AGE + 1000
    const tokens = await Promise.all(Array.from({length: 50}, forged))
    // all 50 are answered while the issuer still holds the one request it was sent
    await Promise.all(tokens.map((t) => rejectsCode(v.verify(t), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})))
    assert.equal((await v.verify(await mint(signingKey))).claims.sub, 'mallory')
    await waitFor('the hanging request to arrive', () => held.length === 1)
    assert.equal(discoveries(), 2)
    assert.equal(held.length, 1)
  })

  it('a rotation: the first token under a new key id, with the keys past maxAge, waits for the refresh and verifies', async () => {
    const v = verifier()
    await v.verify(await mint(signingKey))
    const next = generateKeyPairSync('ec', {namedCurve: 'P-256'})
    rotated = [{...(await exportJWK(next.publicKey)), kid: 'k2', alg: 'ES256', use: 'sig'}]
    now += MAX_AGE + 1000
    assert.equal((await v.verify(await mint(next.privateKey, 'k2'))).claims.sub, 'mallory')
    assert.equal(discoveries(), 2, 'one refresh, which the token waited for')
  })

  it('no keys ever fetched and the issuer down: one fetch per cooldown, the rest refused at once', async () => {
    const v = verifier()
    mode = 'down'
    const tokens = await Promise.all(Array.from({length: 50}, forged))
    for (const t of tokens)
      await rejectsCode(v.verify(t), 'ERR_UPSTREAM_UNAVAILABLE', {reason: 'jwks_unavailable', provisioner: 'sso'})
    await settled(1)
    assert.equal(discoveries(), 1)
    now += COOLDOWN + 1000
    for (const t of tokens) await rejectsCode(v.verify(t), 'ERR_UPSTREAM_UNAVAILABLE', {reason: 'jwks_unavailable'})
    assert.equal(discoveries(), 2)
    mode = 'up'
    now += COOLDOWN + 1000
    assert.equal((await v.verify(await mint(signingKey))).claims.sub, 'mallory')
  })
})
