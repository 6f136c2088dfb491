/**
 * The restore window and the emergency stop, on every token path (OIDC, host enrollment, proof of
 * possession), through app.inject with a real SQLite store and the CA's clock held by the test.
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync, randomUUID} from 'node:crypto'
import type {FastifyInstance} from 'fastify'
import {SignJWT} from 'jose'
import {Authority} from '../../../src/ca/authority/authority.ts'
import type {CaRuntime} from '../../../src/ca/authority/runtime.ts'
import {RESTORE_LEEWAY} from '../../../src/ca/store/store.ts'
import {parseConfig} from '../../../src/ca/config/config.ts'
import {buildApp} from '../../../src/ca/http/app.ts'
import {certFingerprint, createRoot} from '../../../src/ca/keys/pki.ts'
import {soleKeySet} from '../../../src/ca/keys/material.ts'
import {memoryAuditLog} from '../../../src/ca/observe/audit.ts'
import {mintEnrollmentToken} from '../../../src/ca/provisioner/enrollment.ts'
import {TokenVerifier} from '../../../src/ca/provisioner/oidc.ts'
import {SqliteStore} from '../../../src/ca/store/sqlite.ts'
import {mintSshpopToken, SSHPOP_PROVISIONER} from '../../../src/protocol/tokens.ts'
import {parseCertificate} from '../../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {memoryIssuer} from '../../helpers/memory-issuer.ts'

const ISSUER = 'https://ci.example.com'
const YAML = `
limits: {rate: false}
provisioners:
  - name: ci
    type: oidc
    issuer: ${ISSUER}
    audience: sshca-ci
    rules:
      - {name: deploy, match: {repository: acme/app}, certificate: {principals: [deploy], ttl: 10m}}
`

describe('after a restore: tokens issued before the restore mark are refused on every path', () => {
  let app: FastifyInstance
  let rt: CaRuntime
  let audit: ReturnType<typeof memoryAuditLog>
  let store: SqliteStore
  let now: number
  let mintOidc: (iat: number) => Promise<string>
  let enrollmentKey: ReturnType<typeof generateKeyPairSync>['privateKey']
  let rootFingerprint: string

  before(async () => {
    const {config} = parseConfig(YAML, '/nonexistent/ca.yaml')
    const {privateKey: issuerPrivateKey, fetch: fetchFn} = await memoryIssuer(ISSUER)
    mintOidc = (iat) =>
      new SignJWT({repository: 'acme/app', jti: randomUUID()})
        .setProtectedHeader({alg: 'ES256', kid: 'k1'})
        .setIssuer(ISSUER)
        .setAudience('sshca-ci')
        .setSubject('repo:acme/app')
        .setIssuedAt(iat)
        .setExpirationTime(iat + 1800)
        .sign(issuerPrivateKey)
    const root = await createRoot('Window')
    rootFingerprint = certFingerprint(root.der)
    enrollmentKey = generateKeyPairSync('ed25519').privateKey
    now = Math.floor(Date.now() / 1000)
    store = new SqliteStore(':memory:', {background: false})
    audit = memoryAuditLog()
    rt = {
      policy: {config, verifier: new TokenVerifier(config.provisioners, {fetch: fetchFn, clock: () => now * 1000})},
      material: {
        rootPem: root.pem,
        rootFingerprint,
        roots: [
          {
            pem: root.pem,
            fingerprint: rootFingerprint,
            state: 'active',
            subject: 'root',
            notAfter: new Date(Date.now() + 86_400_000),
          },
        ],
        crossPems: [],
        intermediatePem: root.pem,
        intermediateKey: root.key,
        tls: {certPem: '', keyPem: '', notAfter: new Date(0)},
        userCa: soleKeySet(keySigner(generatePrivateKey('ed25519').keyObject)),
        hostCa: soleKeySet(keySigner(generatePrivateKey('ed25519').keyObject)),
        enrollmentKey,
      },
      store,
      audit,
      clock: () => now * 1000,
      safety: {stop: null, restoredAt: null},
    }
    app = buildApp(new Authority(rt), undefined)
    await app.ready()
  })
  after(async () => {
    await app?.close()
    await store?.close()
  })

  const key = () => generatePrivateKey('ed25519').publicKey.blob.toString('base64')
  const reasonOf = (r: {headers: Record<string, unknown>}) =>
    audit.events.find((e) => e.request_id === r.headers['x-request-id'])?.reason
  const sign = (ott: string, extra: Record<string, unknown> = {}) =>
    app.inject({method: 'POST', url: '/ssh/sign', payload: {publicKey: key(), ott, ...extra}})

  it('OIDC: before the mark → 401 token_before_restore; known spent → 401 token_replayed; after the mark + leeway → 201', async () => {
    // the old CA's life: one token spent (it is in the store, as a snapshot would carry it), one issued and never seen
    const spentBefore = await mintOidc(now - 600)
    assert.equal((await sign(spentBefore)).statusCode, 201)
    const unseen = await mintOidc(now - 300)
    // the restore: mark at now
    rt.safety = {stop: null, restoredAt: now}
    now += 30

    const replay = await sign(spentBefore)
    assert.equal(replay.statusCode, 401)
    assert.equal(
      reasonOf(replay),
      'token_replayed',
      'a token the snapshot knows is refused as a replay, with when it was spent',
    )
    assert.match(replay.json().message, /already used at/)

    const window = await sign(unseen)
    assert.equal(window.statusCode, 401)
    assert.equal(reasonOf(window), 'token_before_restore')
    const line = audit.events.find((e) => e.request_id === window.headers['x-request-id'])!
    assert.equal(line.restored_at, new Date((now - 30) * 1000).toISOString())
    assert.doesNotMatch(
      window.json().message,
      /restore/,
      'the caller reads the generic 401, the reason is in the audit log',
    )

    // within the leeway after the mark: an issuer whose clock runs ahead could have minted it before the restore
    const skewed = await mintOidc(now - 30 + RESTORE_LEEWAY - 1)
    assert.equal(reasonOf(await sign(skewed)), 'token_before_restore')
    const fresh = await mintOidc(now - 30 + RESTORE_LEEWAY)
    assert.equal((await sign(fresh)).statusCode, 201)
  })

  it('host enrollment: a token minted before the mark is refused, one minted after it enrols', async () => {
    rt.safety = {stop: null, restoredAt: now}
    const hostKey = generatePrivateKey('ed25519')
    const old = await mintEnrollmentToken(enrollmentKey, {
      rootFingerprint,
      hostname: 'web1',
      ttlSeconds: 3600,
      now: now - 120,
    })
    now += RESTORE_LEEWAY + 5
    const refused = await sign(old.token, {certType: 'host', publicKey: hostKey.publicKey.blob.toString('base64')})
    assert.equal(refused.statusCode, 401)
    assert.equal(reasonOf(refused), 'token_before_restore')
    const fresh = await mintEnrollmentToken(enrollmentKey, {rootFingerprint, hostname: 'web1', ttlSeconds: 3600, now})
    const ok = await sign(fresh.token, {certType: 'host', publicKey: hostKey.publicKey.blob.toString('base64')})
    assert.equal(ok.statusCode, 201, ok.body)
  })

  it('renewal: a proof of possession made before the mark is refused, a new one renews', async () => {
    const hostKey = generatePrivateKey('ed25519')
    const t = await mintEnrollmentToken(enrollmentKey, {rootFingerprint, hostname: 'web2', ttlSeconds: 3600, now})
    const enrolled = await sign(t.token, {certType: 'host', publicKey: hostKey.publicKey.blob.toString('base64')})
    assert.equal(enrolled.statusCode, 201, enrolled.body)
    const cert = parseCertificate(Buffer.from(enrolled.json().crt, 'base64'))
    const oldProof = await mintSshpopToken(hostKey.keyObject, cert, {
      caUrl: 'https://127.0.0.1',
      action: 'renew',
      provisioner: SSHPOP_PROVISIONER,
      rootFingerprint,
      now,
    })
    rt.safety = {stop: null, restoredAt: now + 10}
    now += RESTORE_LEEWAY + 20
    const refused = await app.inject({method: 'POST', url: '/ssh/renew', payload: {ott: oldProof}})
    assert.equal(refused.statusCode, 401)
    assert.equal(reasonOf(refused), 'token_before_restore')
    const renewed = await app.inject({
      method: 'POST',
      url: '/ssh/renew',
      payload: {
        ott: await mintSshpopToken(hostKey.keyObject, cert, {
          caUrl: 'https://127.0.0.1',
          action: 'renew',
          provisioner: SSHPOP_PROVISIONER,
          rootFingerprint,
          now,
        }),
      },
    })
    assert.equal(renewed.statusCode, 201, renewed.body)
  })

  it('the emergency stop in the store refuses every path with 503, whatever ca.yaml says, and lifting it resumes', async () => {
    rt.safety = {stop: {at: now, reason: 'drill'}, restoredAt: null}
    assert.equal(rt.policy.config.disabled, false)
    const user = await sign(await mintOidc(now))
    assert.equal(user.statusCode, 503)
    assert.equal(reasonOf(user), 'issuance_stopped')
    const hostKey = generatePrivateKey('ed25519')
    const t = await mintEnrollmentToken(enrollmentKey, {rootFingerprint, hostname: 'web3', ttlSeconds: 3600, now})
    const host = await sign(t.token, {certType: 'host', publicKey: hostKey.publicKey.blob.toString('base64')})
    assert.equal(host.statusCode, 503)
    const renew = await app.inject({method: 'POST', url: '/ssh/renew', payload: {ott: 'x.y.z'}})
    assert.equal(renew.statusCode, 503, 'refused before the proof is even read')
    rt.safety = {stop: null, restoredAt: null}
    assert.equal((await sign(await mintOidc(now))).statusCode, 201)
  })
})
