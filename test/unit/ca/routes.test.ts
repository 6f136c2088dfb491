/**
 * The HTTP layer through fastify's inject, with an in-memory store, in-memory keys and an issuer
 * served by a fetch function: every route's shape, status and audit line, in milliseconds. The
 * real-HTTPS end-to-end tests (test/integration/ca-api.test.ts, ca-limits.test.ts) stay.
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync, randomUUID} from 'node:crypto'
import type {FastifyInstance} from 'fastify'
import {SignJWT} from 'jose'
import {Authority} from '../../../src/ca/authority/authority.ts'
import type {CaRuntime} from '../../../src/ca/authority/runtime.ts'
import {parseConfig} from '../../../src/ca/config/config.ts'
import {buildApp} from '../../../src/ca/http/app.ts'
import {soleKeySet, type CaMaterial} from '../../../src/ca/keys/material.ts'
import {createRoot} from '../../../src/ca/keys/pki.ts'
import {memoryAuditLog} from '../../../src/ca/observe/audit.ts'
import {TokenVerifier} from '../../../src/ca/provisioner/oidc.ts'
import {SqliteStore} from '../../../src/ca/store/sqlite.ts'
import {parseKrl} from '../../../src/ssh/krl.ts'
import {parseCertificate} from '../../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {waitFor} from '../../helpers/proc.ts'
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
      - {name: deploy, match: {repository: acme/app}, certificate: {principals: [deploy], ttl: 10m, keyId: "gha:\${run_id}"}}
`

describe('CA routes through app.inject', () => {
  let app: FastifyInstance
  let audit: ReturnType<typeof memoryAuditLog>
  let material: CaMaterial
  let mint: (claims?: Record<string, unknown>) => Promise<string>

  before(async () => {
    const {config} = parseConfig(YAML, '/nonexistent/ca.yaml')
    const {privateKey: issuerPrivateKey, fetch: fetchFn} = await memoryIssuer(ISSUER)
    mint = (claims = {}) => {
      const now = Math.floor(Date.now() / 1000)
      return new SignJWT({repository: 'acme/app', run_id: String(Math.random()), jti: randomUUID(), ...claims})
        .setProtectedHeader({alg: 'ES256', kid: 'k1'})
        .setIssuer(ISSUER)
        .setAudience('sshca-ci')
        .setSubject('repo:acme/app')
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .sign(issuerPrivateKey)
    }
    const root = await createRoot('Inject')
    const {certFingerprint} = await import('../../../src/ca/keys/pki.ts')
    material = {
      rootPem: root.pem,
      rootFingerprint: certFingerprint(root.der),
      intermediatePem: root.pem,
      intermediateKey: root.key,
      tls: {certPem: '', keyPem: '', notAfter: new Date(0)},
      roots: [
        {
          pem: root.pem,
          fingerprint: certFingerprint(root.der),
          state: 'active',
          subject: 'CN=Inject',
          notAfter: new Date(Date.now() + 86_400_000),
        },
      ],
      crossPems: [],
      userCa: soleKeySet(keySigner(generatePrivateKey('ed25519').keyObject)),
      hostCa: soleKeySet(keySigner(generatePrivateKey('ed25519').keyObject)),
      enrollmentKey: generateKeyPairSync('ed25519').privateKey,
    }
    audit = memoryAuditLog()
    const rt: CaRuntime = {
      policy: {config, verifier: new TokenVerifier(config.provisioners, {fetch: fetchFn})},
      material,
      store: new SqliteStore(':memory:', {background: false}),
      audit,
      clock: Date.now,
    }
    app = buildApp(new Authority(rt), undefined)
    await app.ready()
  })
  after(async () => app?.close())

  const key = () => generatePrivateKey('ed25519').publicKey.blob.toString('base64')
  /** The audit lines one request wrote. */
  const linesOf = (requestId: string) => audit.events.filter((e) => e.request_id === requestId)

  it('a store that does not answer: /ready is 503 (a balancer takes the replica out), /health stays 200 and says so', async () => {
    const store = new SqliteStore(':memory:', {background: false})
    const {config} = parseConfig(YAML, '/nonexistent/ca.yaml')
    const rt: CaRuntime = {
      policy: {config, verifier: new TokenVerifier([])},
      material,
      store,
      audit: memoryAuditLog(),
      clock: Date.now,
    }
    const down = buildApp(new Authority(rt), undefined)
    try {
      assert.equal((await down.inject({method: 'GET', url: '/ready'})).statusCode, 200)
      await store.close()
      // the answer stands a second (balancers poll often); then the closed store is seen
      await waitFor(
        '/ready to turn 503',
        async () => (await down.inject({method: 'GET', url: '/ready'})).statusCode === 503,
        5_000,
      )
      assert.deepEqual((await down.inject({method: 'GET', url: '/ready'})).json(), {ready: false, db: 'unreachable'})
      const health = await down.inject({method: 'GET', url: '/health'})
      assert.equal(health.statusCode, 200)
      assert.deepEqual(health.json(), {status: 'ok', db: 'unreachable'})
    } finally {
      await down.close()
    }
  })

  it("read routes answer step-ca's shapes at / and /1.0, with x-request-id and no-store", async () => {
    for (const prefix of ['', '/1.0']) {
      const health = await app.inject({method: 'GET', url: `${prefix}/health`})
      assert.equal(health.statusCode, 200)
      assert.deepEqual(health.json(), {status: 'ok', db: 'ok'})
      assert.deepEqual((await app.inject({method: 'GET', url: `${prefix}/ready`})).json(), {ready: true})
      assert.match(String(health.headers['x-request-id']), /^[0-9a-f-]{36}$/)
      assert.equal(health.headers['cache-control'], 'no-store')
      assert.deepEqual((await app.inject({method: 'GET', url: `${prefix}/root/${material.rootFingerprint}`})).json(), {
        ca: material.rootPem,
      })
      assert.deepEqual((await app.inject({method: 'GET', url: `${prefix}/roots`})).json(), {crts: [material.rootPem]})
      const provisioners = (await app.inject({method: 'GET', url: `${prefix}/provisioners`})).json()
      assert.deepEqual(
        provisioners.provisioners.map((p: {name: string; type: string; interactive: boolean}) => [
          p.name,
          p.type,
          p.interactive,
        ]),
        [
          ['ci', 'OIDC', false],
          ['sshpop', 'SSHPOP', undefined],
        ],
      )
      const roots = (await app.inject({method: 'GET', url: `${prefix}/ssh/roots`})).json()
      assert.deepEqual(roots.userKey, [material.userCa.active.publicKey.blob.toString('base64')])
      assert.deepEqual(roots.hostKey, [material.hostCa.active.publicKey.blob.toString('base64')])
    }
  })

  it("a root by another fingerprint, or not a fingerprint at all, is 404 in the API's error shape", async () => {
    for (const fp of ['0'.repeat(64), 'nope']) {
      const r = await app.inject({method: 'GET', url: `/root/${fp}`})
      assert.equal(r.statusCode, 404)
      assert.equal(r.json().request_id, r.headers['x-request-id'])
    }
    const missing = await app.inject({method: 'GET', url: '/nowhere'})
    assert.deepEqual(missing.json(), {
      status: 404,
      message: 'no route GET /nowhere',
      request_id: missing.headers['x-request-id'],
    })
  })

  it('POST /ssh/sign: 201 with a certificate shaped by the rule; one certificate_issued line', async () => {
    const r = await app.inject({
      method: 'POST',
      url: '/ssh/sign',
      payload: {publicKey: key(), ott: await mint(), principals: ['root'], validBefore: 'forever'},
    })
    assert.equal(r.statusCode, 201, r.body)
    const cert = parseCertificate(Buffer.from(r.json().crt, 'base64'))
    assert.deepEqual(cert.principals, ['deploy'])
    assert.deepEqual(
      linesOf(String(r.headers['x-request-id'])).map((l) => l.event),
      ['certificate_issued'],
    )
  })

  it("bad bodies are 400 through src/protocol's shapes; each refusal is audited once with its reason", async () => {
    const cases: [unknown, RegExp][] = [
      [{ott: 'x'}, /publicKey/],
      [{publicKey: key(), ott: 'x', certType: 'admin'}, /certType/],
      [{publicKey: 'not base64!', ott: await mint()}, /public key/],
    ]
    for (const [payload, message] of cases) {
      const r = await app.inject({method: 'POST', url: '/ssh/sign', payload: payload as Record<string, unknown>})
      assert.equal(r.statusCode, 400, r.body)
      assert.match(r.json().message, message)
      const lines = linesOf(String(r.headers['x-request-id']))
      assert.deepEqual(
        lines.map((l) => [l.event, l.reason]),
        [['certificate_denied', 'bad_request']],
      )
    }
    const type = await app.inject({
      method: 'POST',
      url: '/ssh/sign',
      headers: {'content-type': 'application/xml'},
      payload: '<hello/>',
    })
    assert.equal(type.statusCode, 415)
    assert.equal(type.json().request_id, type.headers['x-request-id'])
  })

  it('401 for a bad token, 403 for a rule that does not match, 401 again for a replay — the body says nothing of why', async () => {
    const bad = await app.inject({method: 'POST', url: '/ssh/sign', payload: {publicKey: key(), ott: 'a.b.c'}})
    assert.equal(bad.statusCode, 401)
    const other = await app.inject({
      method: 'POST',
      url: '/ssh/sign',
      payload: {publicKey: key(), ott: await mint({repository: 'mallory/app'})},
    })
    assert.equal(other.statusCode, 403)
    assert.equal(other.json().message, 'the CA policy does not allow a certificate for this request')
    assert.equal(linesOf(String(other.headers['x-request-id']))[0]!.reason, 'no_rule_matched')
    const ott = await mint()
    assert.equal(
      (await app.inject({method: 'POST', url: '/1.0/ssh/sign', payload: {publicKey: key(), ott}})).statusCode,
      201,
    )
    const again = await app.inject({method: 'POST', url: '/ssh/sign', payload: {publicKey: key(), ott}})
    assert.equal(again.statusCode, 401)
    assert.match(again.json().message, /already used at/)
  })

  it('POST /sign wants a bearer token and an authorized_keys line; answers the certificate line', async () => {
    const line = generatePrivateKey('ed25519').publicKey.toLine()
    const none = await app.inject({method: 'POST', url: '/sign', payload: {public_key: line}})
    assert.equal(none.statusCode, 400)
    assert.match(none.json().message, /Authorization: Bearer/)
    const ok = await app.inject({
      method: 'POST',
      url: '/sign',
      headers: {authorization: `Bearer ${await mint()}`},
      payload: {public_key: line},
    })
    assert.equal(ok.statusCode, 200)
    assert.equal(ok.headers['content-type'], 'text/plain; charset=utf-8')
    assert.match(ok.body, /^ssh-ed25519-cert-v01@openssh\.com \S+\n$/)
  })

  it('the KRL parses; /ssh/hosts wants a token; a renewal proof that is no JWT is 401 proof_invalid', async () => {
    const krl = await app.inject({method: 'GET', url: '/ssh/krl'})
    assert.equal(krl.headers['content-type'], 'application/octet-stream')
    assert.doesNotThrow(() => parseKrl(krl.rawPayload))
    assert.equal((await app.inject({method: 'GET', url: '/ssh/hosts'})).statusCode, 401)
    assert.equal(
      (await app.inject({method: 'GET', url: '/ssh/hosts', headers: {authorization: `Bearer ${await mint()}`}}))
        .statusCode,
      200,
    )
    const renew = await app.inject({method: 'POST', url: '/ssh/renew', payload: {ott: 'nope'}})
    assert.equal(renew.statusCode, 401)
    assert.equal(linesOf(String(renew.headers['x-request-id']))[0]!.reason, 'proof_invalid')
  })
})
