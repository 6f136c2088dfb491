/**
 * What lands while a request waits on its rule's authorizing webhook (up to 30 s): a restore mark
 * (SECURITY.md row 35, as row 27 is for the stop) must hold for a token issued before it, and a policy
 * reload must decide the request, not the policy it arrived under (row 43).
 */
import assert from 'node:assert/strict'
import {randomUUID} from 'node:crypto'
import {createServer, type IncomingMessage, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import type {FastifyInstance} from 'fastify'
import {SignJWT} from 'jose'
import {Authority} from '../../../src/ca/authority/authority.ts'
import type {CaRuntime} from '../../../src/ca/authority/runtime.ts'
import {parseConfig} from '../../../src/ca/config/config.ts'
import {buildApp} from '../../../src/ca/http/app.ts'
import {memoryAuditLog} from '../../../src/ca/observe/audit.ts'
import {TokenVerifier} from '../../../src/ca/provisioner/oidc.ts'
import {SqliteStore} from '../../../src/ca/store/sqlite.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {testMaterial} from '../../helpers/material.ts'
import {memoryIssuer} from '../../helpers/memory-issuer.ts'

const ISSUER = 'https://ci.example.com'

/** ca.yaml with the CI provisioner and one rule (its YAML lines). */
const ciYaml = (rule: string) => `
limits: {rate: false}
provisioners:
  - name: ci
    type: oidc
    issuer: ${ISSUER}
    audience: sshca-ci
    rules:
${rule}
`

/** ca.yaml as the operator edits it to: the webhook rule removed, another in its place. */
const withoutTheRule = () =>
  parseConfig(
    ciYaml(`      - name: others
        match: {repository: acme/other}
        certificate: {principals: [other], ttl: 10m}`),
    '/nonexistent/ca.yaml',
  ).config

describe('what lands while a request waits on its webhook: a restore mark, a policy reload', () => {
  let app: FastifyInstance
  let rt: CaRuntime
  let audit: ReturnType<typeof memoryAuditLog>
  let store: SqliteStore
  let now: number
  let mint: (iat: number) => Promise<string>
  let verifierOf: (c: ReturnType<typeof parseConfig>['config']) => TokenVerifier
  let webhookPolicy: CaRuntime['policy']
  let webhookYaml: string
  const hook = createServer()
  const pending: ((allow: boolean) => void)[] = []
  let arrived: () => void = () => undefined

  before(async () => {
    hook.on('request', (req: IncomingMessage, res: ServerResponse) => {
      req.resume()
      req.on('end', () => {
        pending.push((allow) => res.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify({allow})))
        arrived()
      })
    })
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r))
    const port = (hook.address() as AddressInfo).port
    webhookYaml = ciYaml(`      - name: deploy
        match: {repository: acme/app}
        webhook: {url: "http://127.0.0.1:${port}/authorize", timeout: 5s}
        certificate: {principals: [deploy], ttl: 10m}`)
    const {config} = parseConfig(webhookYaml, '/nonexistent/ca.yaml')
    const {privateKey, fetch: fetchFn} = await memoryIssuer(ISSUER)
    verifierOf = (c) => new TokenVerifier(c.provisioners, {fetch: fetchFn, clock: () => now * 1000})
    mint = (iat) =>
      new SignJWT({repository: 'acme/app', jti: randomUUID()})
        .setProtectedHeader({alg: 'ES256', kid: 'k1'})
        .setIssuer(ISSUER)
        .setAudience('sshca-ci')
        .setSubject('repo:acme/app')
        .setIssuedAt(iat)
        .setExpirationTime(iat + 1800)
        .sign(privateKey)
    now = Math.floor(Date.now() / 1000)
    store = new SqliteStore(':memory:', {background: false})
    audit = memoryAuditLog()
    rt = {
      policy: {config, verifier: verifierOf(config)},
      material: await testMaterial('Inflight'),
      store,
      audit,
      clock: () => now * 1000,
      safety: {stop: null, restoredAt: null},
    }
    webhookPolicy = rt.policy
    app = buildApp(new Authority(rt), undefined)
    await app.ready()
  })
  after(async () => {
    for (const answer of pending) answer(false)
    await app?.close()
    await store?.close()
    await new Promise((r) => hook.close(r))
  })

  it('a token issued before a restore mark set while its request waited on the webhook is refused (token_before_restore), not signed', async () => {
    // issued (and, on the copy the store came back from, perhaps already spent) before the restore
    const token = await mint(now - 300)
    const atWebhook = new Promise<void>((r) => (arrived = r))
    const response = app.inject({
      method: 'POST',
      url: '/ssh/sign',
      payload: {publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'), ott: token},
    })
    await atWebhook
    // `ca mark-restored` lands now: every CA serving from the store reads the mark within a second
    rt.safety = {stop: null, restoredAt: now}
    now += 5
    pending.shift()!(true)
    const r = await response
    const reason = audit.events.find((e) => e.request_id === r.headers['x-request-id'])?.reason
    assert.equal(r.statusCode, 401, `the request waiting on its webhook got ${r.statusCode} (${String(reason)})`)
    assert.equal(reason, 'token_before_restore')
    assert.equal((await store.certificates({limit: 10})).length, 0, 'no certificate recorded')
  })

  it('a policy reloaded while the request waited on its webhook decides it: refused (503, policy_reloaded), nothing spent, and sent again it meets the new policy', async () => {
    rt.safety = {stop: null, restoredAt: null}
    const token = await mint(now)
    const publicKey = generatePrivateKey('ed25519').publicKey.blob.toString('base64')
    const atWebhook = new Promise<void>((r) => (arrived = r))
    const response = app.inject({method: 'POST', url: '/ssh/sign', payload: {publicKey, ott: token}})
    await atWebhook
    // the operator removes the rule (SIGHUP): every thread has the new policy within the reload
    const config = withoutTheRule()
    rt.policy = {config, verifier: verifierOf(config)}
    pending.shift()!(true)
    const r = await response
    const reason = audit.events.find((e) => e.request_id === r.headers['x-request-id'])?.reason
    assert.equal(r.statusCode, 503, `the request waiting on its webhook got ${r.statusCode} (${String(reason)})`)
    assert.equal(reason, 'policy_reloaded')
    assert.equal((await store.certificates({limit: 10})).length, 0, 'no certificate recorded')
    // sent again: not a replay (nothing was spent), and the policy in force has no rule for it
    const again = await app.inject({method: 'POST', url: '/ssh/sign', payload: {publicKey, ott: token}})
    const why = audit.events.find((e) => e.request_id === again.headers['x-request-id'])?.reason
    assert.equal(again.statusCode, 403, String(why))
    assert.equal(why, 'no_rule_matched')
  })
  it('a policy reloaded while the certificate was being signed (a slow HSM) decides it too: refused (503, policy_reloaded), nothing recorded', async () => {
    rt.safety = {stop: null, restoredAt: null}
    // the rule with its webhook, as at the start (the test before reloaded it away)
    rt.policy = webhookPolicy
    const material = rt.material
    const signer = material.userCa.active
    const config = withoutTheRule()
    // the webhook says yes; the reload (SIGHUP) lands while the signer works, after the webhook's answer
    rt.material = {
      ...material,
      userCa: {
        ...material.userCa,
        active: {
          publicKey: signer.publicKey,
          sign: async (data: Buffer) => {
            rt.policy = {config, verifier: verifierOf(config)}
            return signer.sign(data)
          },
        },
      },
    }
    try {
      const atWebhook = new Promise<void>((r) => (arrived = r))
      const response = app.inject({
        method: 'POST',
        url: '/ssh/sign',
        payload: {publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'), ott: await mint(now)},
      })
      await atWebhook
      pending.shift()!(true)
      const r = await response
      const reason = audit.events.find((e) => e.request_id === r.headers['x-request-id'])?.reason
      assert.equal(r.statusCode, 503, `a request signed across a reload got ${r.statusCode} (${String(reason)})`)
      assert.equal(reason, 'policy_reloaded')
      assert.equal((await store.certificates({limit: 10})).length, 0, 'no certificate recorded')
    } finally {
      rt.material = material
    }
  })

  it("a reload that leaves the request's provisioner and the ssh settings as they were (a SIGHUP after a key rotation) refuses nothing in flight", async () => {
    rt.safety = {stop: null, restoredAt: null}
    rt.policy = webhookPolicy
    const atWebhook = new Promise<void>((r) => (arrived = r))
    const response = app.inject({
      method: 'POST',
      url: '/ssh/sign',
      payload: {publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'), ott: await mint(now)},
    })
    await atWebhook
    // the same ca.yaml read again: a new policy object, the same grant
    const same = parseConfig(webhookYaml, '/nonexistent/ca.yaml').config
    rt.policy = {config: same, verifier: verifierOf(same)}
    pending.shift()!(true)
    const r = await response
    assert.equal(r.statusCode, 201, r.body)
  })

  it('a policy reloaded while the request waited on its webhook, the rule narrowed but kept: sent again as told, the token asks the webhook of the policy in force', async () => {
    rt.safety = {stop: null, restoredAt: null}
    rt.policy = webhookPolicy
    const token = await mint(now)
    const publicKey = generatePrivateKey('ed25519').publicKey.blob.toString('base64')
    const atWebhook = new Promise<void>((r) => (arrived = r))
    const response = app.inject({method: 'POST', url: '/ssh/sign', payload: {publicKey, ott: token}})
    await atWebhook
    // the operator shortens the rule's certificates (SIGHUP); its webhook stays
    const {config} = parseConfig(webhookYaml.replace('ttl: 10m', 'ttl: 5m'), '/nonexistent/ca.yaml')
    rt.policy = {config, verifier: verifierOf(config)}
    try {
      pending.shift()!(true)
      const r = await response
      assert.equal(r.statusCode, 503, r.body)
      assert.equal(audit.events.find((e) => e.request_id === r.headers['x-request-id'])?.reason, 'policy_reloaded')
      // "send it again": the policy in force decides it, its webhook asked about the certificate it builds
      const atWebhookAgain = new Promise<void>((r) => (arrived = r))
      const again = app.inject({method: 'POST', url: '/ssh/sign', payload: {publicKey, ott: token}})
      const first = await Promise.race([atWebhookAgain.then(() => 'asked' as const), again.then((a) => a)])
      if (first !== 'asked') {
        const why = audit.events.find((e) => e.request_id === first.headers['x-request-id'])?.reason
        assert.fail(`sent again as told, the request got ${first.statusCode} (${String(why)}) without its webhook`)
      }
      pending.shift()!(true)
      assert.equal((await again).statusCode, 201)
    } finally {
      rt.policy = webhookPolicy
    }
  })
})
