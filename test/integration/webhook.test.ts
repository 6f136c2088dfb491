/**
 * Authorizing webhooks against a real HTTPS endpoint on loopback: the CA issues only on an answer of
 * {"allow": true} in time; a refusal, an error status, a body that is not exactly that, a slow
 * answer, an unreachable or untrusted endpoint all deny (fail closed), and every call is audited.
 */
import assert from 'node:assert/strict'
import {createHash, createHmac} from 'node:crypto'
import {chmodSync, writeFileSync} from 'node:fs'
import {createServer, type Server} from 'node:https'
import {join} from 'node:path'
import {createRoot, createTlsCert} from '../../src/ca/keys/pki.ts'
import {resumeIssuance, stopIssuance} from '../../src/ca/safety.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {startTestCa, type TestCa} from '../helpers/ca.ts'
import {waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'

type Answer = {status: number; body: string; delayMs?: number}

/** A loopback port nothing listens on: a connection to it is refused, nothing is sent. */
const closedPort = (): Promise<number> =>
  new Promise<number>((resolve) => {
    const probe = createServer()
    probe.listen(0, '127.0.0.1', () => {
      const port = (probe.address() as {port: number}).port
      probe.close(() => resolve(port))
    })
  })

describe('authorizing webhook: deny unless it answers allow in time', function () {
  this.timeout(120_000)
  let gh: GithubIssuer
  let t: TestCa
  let hook: Server
  let hookUrl = ''
  let answer: Answer = {status: 200, body: '{"allow": true}'}
  const seen: {body: string; signature: string | undefined}[] = []
  const dir = tempDir('sshca-webhook-')
  const secretFile = join(dir, 'secret')
  const caFile = join(dir, 'hook-ca.pem')

  /** One signing request with `ott` (a fresh token unless given). */
  const sign = async (ott?: string) => {
    ott ??= await gh.mint()
    const r = await t.call('POST', '/ssh/sign', {
      publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'),
      ott,
      certType: 'user',
    })
    return {...r, ott}
  }
  const lastLine = (event: string) =>
    t
      .audit()
      .filter((l) => l.event === event)
      .pop()!

  /** The test's policy: one rule with the webhook, its settings changed as given; other limits and rules beside it. */
  const policyWith = (
    webhook: Record<string, unknown> = {},
    o: {limits?: Record<string, unknown>; otherRules?: Record<string, unknown>[]} = {},
  ) => ({
    limits: {rate: false, ...o.limits},
    provisioners: [
      {
        name: 'ci',
        type: 'oidc',
        issuer: gh.issuer,
        audience: 'sshca-ci',
        rules: [
          {
            name: 'deploy',
            match: {repository: 'acme/app'},
            webhook: {url: hookUrl, timeout: 1, ca: caFile, secretFile, ...webhook},
            certificate: {principals: ['deploy'], ttl: '10m'},
          },
          ...(o.otherRules ?? []),
        ],
      },
    ],
  })
  /** The running CA reloads with the webhook's settings changed as given. */
  const withWebhook = async (webhook: Record<string, unknown>) => {
    const {writePolicy} = await import('../helpers/ca.ts')
    await writePolicy(t.init.config, policyWith(webhook))
    assert.equal(await t.ca.reload(), true)
  }

  before(async () => {
    gh = await startGithubIssuer()
    const root = await createRoot('webhook test')
    const tls = await createTlsCert(['127.0.0.1'], {cert: root.cert, key: root.key})
    writeFileSync(caFile, root.pem)
    writeFileSync(secretFile, 'hook-secret-0123456789\n', {mode: 0o600})
    hook = createServer({key: tls.key.export({type: 'pkcs8', format: 'pem'}), cert: tls.pem}, (req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => (body += c.toString()))
      req.on('end', () => {
        seen.push({body, signature: req.headers['x-sshca-signature'] as string | undefined})
        const a = answer
        setTimeout(() => res.writeHead(a.status, {'content-type': 'application/json'}).end(a.body), a.delayMs ?? 0)
      })
    })
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve))
    hookUrl = `https://127.0.0.1:${(hook.address() as {port: number}).port}/authorize`
    t = await startTestCa(policyWith())
  })
  after(async () => {
    await t?.stop()
    await gh?.stop()
    hook?.closeAllConnections()
    await new Promise((resolve) => hook?.close(resolve))
  })

  it('allows on {"allow": true}: the webhook gets the claims and the request, signed, and never the token', async () => {
    answer = {status: 200, body: '{"allow": true}'}
    const r = await sign()
    assert.equal(r.status, 201, r.text)
    const call = seen.pop()!
    const body = JSON.parse(call.body)
    assert.equal(body.type, 'sshca.authorize.v1')
    assert.equal(body.provisioner, 'ci')
    assert.equal(body.rule, 'deploy')
    assert.equal(body.claims.repository, 'acme/app')
    assert.deepEqual(body.certificate.principals, ['deploy'])
    assert.match(body.request.keyFingerprint, /^SHA256:/)
    assert.ok(!call.body.includes(r.ott), 'the token itself must never leave the CA')
    assert.equal(
      call.signature,
      `sha256=${createHmac('sha256', 'hook-secret-0123456789').update(call.body).digest('hex')}`,
    )
    const line = lastLine('certificate_issued')
    assert.equal((line.webhook as {outcome: string}).outcome, 'allow')
  })

  it('the signed body says when the CA sent it: a body captured from the webhook side cannot be replayed as fresh', async () => {
    answer = {status: 200, body: '{"allow": true}'}
    const sent = Date.now()
    assert.equal((await sign()).status, 201)
    const call = seen.pop()!
    const body = JSON.parse(call.body) as {timestamp?: unknown}
    // covered by X-Sshca-Signature with the rest of the body, as step-ca's webhooks carry theirs
    assert.equal(typeof body.timestamp, 'string', 'the body carries a timestamp')
    const at = Date.parse(body.timestamp as string)
    assert.ok(Math.abs(at - sent) < 10_000, `timestamp ${String(body.timestamp)} is the time of the call`)
    assert.equal(new Date(at).toISOString(), body.timestamp, 'RFC 3339, UTC, milliseconds')
  })

  it('is not asked when a token reads the host inventory: it authorizes certificates, and may count or prompt per call', async () => {
    answer = {status: 200, body: '{"allow": false}'}
    const before = seen.length
    const r = await t.call('GET', '/ssh/hosts', undefined, {authorization: `Bearer ${await gh.mint()}`})
    assert.equal(r.status, 200, r.text)
    assert.equal(seen.length, before, 'no call')
  })

  it('denies on {"allow": false} (403, webhook_denied, audited)', async () => {
    answer = {status: 200, body: '{"allow": false, "reason": "outside change window"}'}
    const r = await sign()
    assert.equal(r.status, 403)
    const line = lastLine('certificate_denied')
    assert.equal(line.reason, 'webhook_denied')
    assert.equal((line.webhook as {outcome: string}).outcome, 'deny')
  })

  for (const [what, a] of [
    ['an error status', {status: 500, body: '{"allow": true}'}],
    ['a redirect', {status: 302, body: ''}],
    ['a body that is not JSON', {status: 200, body: 'allow'}],
    ['"allow": "true" (a string)', {status: 200, body: '{"allow": "true"}'}],
    ['"allow": 1', {status: 200, body: '{"allow": 1}'}],
    ['an empty object', {status: 200, body: '{}'}],
  ] as [string, Answer][]) {
    it(`fails closed on ${what}`, async () => {
      answer = a
      const r = await sign()
      assert.ok(r.status === 403 || r.status === 503, `status ${r.status}`)
      assert.match(String(lastLine('certificate_denied').reason), /^webhook_(denied|unavailable)$/)
    })
  }

  it('fails closed when the answer comes after the timeout, without waiting for it', async () => {
    answer = {status: 200, body: '{"allow": true}', delayMs: 3000}
    const started = Date.now()
    const r = await sign()
    const took = Date.now() - started
    assert.equal(r.status, 503)
    assert.equal(lastLine('certificate_denied').reason, 'webhook_unavailable')
    assert.ok(took < 2800, `the CA waited ${took} ms for a 1 s webhook timeout`)
  })

  it('fails closed when the webhook is unreachable, or its TLS certificate is not vouched for', async () => {
    answer = {status: 200, body: '{"allow": true}'}
    await withWebhook({url: 'https://127.0.0.1:1/authorize', secretFile: undefined})
    assert.equal((await sign()).status, 503)
    assert.equal(lastLine('certificate_denied').reason, 'webhook_unavailable')
    // the same endpoint, without its CA: an endpoint anyone could impersonate is no authority
    await withWebhook({ca: undefined, secretFile: undefined})
    const before = seen.length
    assert.equal((await sign()).status, 503)
    assert.equal(seen.length, before, 'no request body was sent over an untrusted connection')
  })

  it('fails closed when the secret file is readable by others, sending nothing', async () => {
    answer = {status: 200, body: '{"allow": true}'}
    const loose = join(dir, 'loose-secret')
    writeFileSync(loose, 'hook-secret-0123456789\n', {mode: 0o644})
    chmodSync(loose, 0o644)
    await withWebhook({secretFile: loose})
    const before = seen.length
    assert.equal((await sign()).status, 503)
    const line = lastLine('certificate_denied')
    assert.equal(line.reason, 'webhook_unavailable')
    assert.match(String((line.webhook as {why: string}).why), /readable by others/)
    assert.equal(seen.length, before, 'nothing was sent')
  })

  it('fails closed when the secret file has no secret on its first line, sending nothing unsigned', async () => {
    answer = {status: 200, body: '{"allow": true}'}
    for (const [name, text, why] of [
      ['blank-first-line', '\nhook-secret-0123456789\n', /first line holds no secret/],
      ['short', 'short\n', /first line holds a secret of 5 characters; put one of at least 16/],
    ] as [string, string, RegExp][]) {
      const file = join(dir, name)
      writeFileSync(file, text, {mode: 0o600})
      await withWebhook({secretFile: file})
      const before = seen.length
      assert.equal((await sign()).status, 503)
      const line = lastLine('certificate_denied')
      assert.equal(line.reason, 'webhook_unavailable')
      assert.match(String((line.webhook as {why: string}).why), why)
      assert.equal(seen.length, before, 'nothing was sent')
    }
  })

  it('a spent token is refused before its webhook is asked: a leaked one cannot make it count or prompt again', async () => {
    answer = {status: 200, body: '{"allow": true}'}
    await withWebhook({})
    const ott = await gh.mint()
    assert.equal((await sign(ott)).status, 201)
    const before = seen.length
    for (let i = 0; i < 3; i++) {
      const again = await sign(ott)
      assert.equal(again.status, 401)
      assert.equal(lastLine('certificate_denied').reason, 'token_replayed')
    }
    assert.equal(seen.length, before, 'the webhook was not asked about a spent token')
  })

  it('a token asks its webhook once: sent again after a refusal, or raced to many requests, it prompts no more (push fatigue)', async () => {
    await withWebhook({})
    // a refusal: the same token again is refused without asking (a thief of a token whose person said no)
    answer = {status: 200, body: '{"allow": false}'}
    const refused = await gh.mint()
    assert.equal((await sign(refused)).status, 403)
    const before = seen.length
    for (let i = 0; i < 3; i++) {
      const again = await sign(refused)
      assert.equal(again.status, 401, again.text)
      // the caller learns when its token was spent, not which rule it matched nor that it has a webhook rule
      assert.match(again.text, /already presented to the CA's authorizing webhook at 20\d\d-/)
      assert.doesNotMatch(again.text, /deploy|rule/)
      const line = lastLine('certificate_denied')
      assert.equal(line.reason, 'webhook_already_asked')
      assert.equal(line.rule, 'deploy', 'the audit line names the rule')
    }
    assert.equal(seen.length, before, 'the webhook was not asked again for the refused token')
    // one token raced to eight requests at once, the webhook slow to say yes: asked once, one certificate
    answer = {status: 200, body: '{"allow": true}', delayMs: 300}
    const raced = await gh.mint()
    const results = await Promise.all(Array.from({length: 8}, () => sign(raced)))
    assert.equal(seen.length, before + 1, 'one call of the webhook for the raced token')
    assert.deepEqual(
      results.map((r) => r.status).sort(),
      [201, 401, 401, 401, 401, 401, 401, 401],
      results.map((r) => r.text).join('\n'),
    )
  })

  it('a call that never reached the webhook (it was down) lets its token ask again once it is back', async () => {
    answer = {status: 200, body: '{"allow": true}'}
    const closed = await closedPort()
    await withWebhook({url: `https://127.0.0.1:${closed}/authorize`})
    const ott = await gh.mint()
    assert.equal((await sign(ott)).status, 503)
    assert.equal(lastLine('certificate_denied').reason, 'webhook_unavailable')
    await withWebhook({})
    const before = seen.length
    const back = await sign(ott)
    assert.equal(back.status, 201, back.text)
    assert.equal(seen.length, before + 1)
  })

  it('the answer to a call that never reached the webhook comes once its ask is forgotten: the token sent again at once asks', async () => {
    answer = {status: 200, body: '{"allow": true}'}
    const closed = await closedPort()
    await withWebhook({url: `https://127.0.0.1:${closed}/authorize`})
    // a store slow to forget (PostgreSQL under load: a connection, then the statement)
    const store = t.ca.runtime.store
    const forget = store.forgetWebhookAsk.bind(store)
    store.forgetWebhookAsk = async (id: string) => {
      await new Promise((r) => setTimeout(r, 400))
      return forget(id)
    }
    try {
      const ott = await gh.mint()
      const down = await sign(ott)
      assert.equal(down.status, 503, down.text)
      await withWebhook({})
      const back = await sign(ott)
      assert.equal(back.status, 201, back.text)
    } finally {
      store.forgetWebhookAsk = forget
    }
  })

  it('an answer outside the protocol is the webhook failing (503), not a refusal; the audit line keeps no key in the URL', async () => {
    // a key in the path (as chat services' incoming webhooks take it) and another in the query
    const keyed = `${hookUrl}/services/T0/PATH-KEY-456?code=API-KEY-123`
    await withWebhook({url: keyed})
    answer = {status: 200, body: 'allow'}
    assert.equal((await sign()).status, 503)
    const failed = lastLine('certificate_denied')
    assert.deepEqual([failed.reason, (failed.webhook as {outcome: string}).outcome], ['webhook_unavailable', 'error'])
    answer = {status: 200, body: '{"allow": false}'}
    assert.equal((await sign()).status, 403)
    const refused = lastLine('certificate_denied')
    assert.deepEqual([refused.reason, (refused.webhook as {outcome: string}).outcome], ['webhook_denied', 'deny'])
    answer = {status: 200, body: '{"allow": true}'}
    assert.equal((await sign()).status, 201)
    const audited = lastLine('certificate_issued').webhook as {url: string; urlSha256: string}
    assert.equal(audited.url, new URL(hookUrl).origin)
    assert.equal(audited.urlSha256, createHash('sha256').update(keyed).digest('hex').slice(0, 16))
    for (const key of ['API-KEY-123', 'PATH-KEY-456'])
      assert.ok(!t.audit().some((l) => JSON.stringify(l).includes(key)), `${key} is in no audit line`)
  })

  it('a request waiting on its webhook when issuance stops gets 503, not a certificate that outlives the stop', async () => {
    await withWebhook({timeout: 8})
    // the webhook allows, after 4 s: longer than the stop takes to settle and report
    answer = {status: 200, body: '{"allow": true}', delayMs: 4000}
    const asked = seen.length
    const pending = sign()
    await waitFor('the webhook to be asked', () => seen.length > asked, 10_000)
    const stop = await stopIssuance({configPath: t.init.config, reason: 'IdP compromised'})
    try {
      const r = await pending
      assert.equal(r.status, 503, r.text)
      // the stop as the store says it, or as ca.yaml does (the stop sets both; whichever the CA read first)
      assert.ok(['issuance_stopped', 'policy_disabled'].includes(lastLine('certificate_denied').reason as string))
      assert.ok(
        !t
          .audit()
          .some((l) => l.event === 'certificate_issued' && l.request_id === lastLine('certificate_denied').request_id),
      )
      assert.equal(stop.issuing, false)
    } finally {
      await resumeIssuance({configPath: t.init.config, reason: 'test over'})
      await waitFor('issuance to resume', () => !t.ca.runtime.safety?.stop, 10_000)
      await withWebhook({})
      answer = {status: 200, body: '{"allow": true}'}
    }
  })

  it('a webhook that hangs holds at most half of the places: rules without one still sign, the excess is refused at once', async () => {
    // one thread, four places: two may wait on the webhook
    const own = await startTestCa(
      policyWith(
        {timeout: 5},
        {
          limits: {maxInFlight: 4},
          otherRules: [
            {name: 'docs', match: {repository: 'acme/docs'}, certificate: {principals: ['docs'], ttl: '10m'}},
          ],
        },
      ),
      {workers: 1},
    )
    try {
      answer = {status: 200, body: '{"allow": true}', delayMs: 3000}
      const signOn = async (repository: string) => {
        const ott = await gh.mint({repository})
        return own.call('POST', '/ssh/sign', {
          publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'),
          ott,
          certType: 'user',
        })
      }
      // four requests for the rule whose webhook takes 3 s: two wait on it, two are refused at once
      const slow = [1, 2, 3, 4].map(() => signOn('acme/app'))
      const refused = await Promise.race([Promise.all(slow), new Promise((r) => setTimeout(() => r('pending'), 1500))])
      assert.equal(refused, 'pending', 'two of them wait on the webhook')
      // meanwhile a rule without a webhook still has places
      const docs = await signOn('acme/docs')
      assert.equal(docs.status, 201, docs.text)
      const statuses = (await Promise.all(slow)).map((r) => r.status).sort()
      assert.deepEqual(statuses, [201, 201, 503, 503])
      const why = own
        .audit()
        .filter((l) => l.event === 'certificate_denied')
        .map((l) => (l.webhook as {why?: string} | undefined)?.why)
      assert.ok(
        why.some((w) => /already wait on authorizing webhooks \(at most 2\)/.test(String(w))),
        JSON.stringify(why),
      )
    } finally {
      answer = {status: 200, body: '{"allow": true}'}
      await own.stop()
    }
  })

  it('check-config refuses a plain-http webhook off loopback, and credentials in its URL', async () => {
    const {parseConfig} = await import('../../src/ca/config/config.ts')
    const yaml = (url: string) =>
      `provisioners:\n  - name: ci\n    type: oidc\n    issuer: https://token.actions.githubusercontent.com\n    audience: a\n    rules:\n      - name: r\n        match: {repository: acme/app, ref: refs/heads/main}\n        webhook: {url: "${url}"}\n        certificate: {principals: [deploy], ttl: 10m}\n`
    assert.throws(() => parseConfig(yaml('http://authz.example.com/x'), 'ca.yaml'), /webhook\.url: must be https/)
    assert.throws(
      () => parseConfig(yaml('https://user:pw@authz.example.com/x'), 'ca.yaml'),
      /no credentials in the URL/,
    )
    assert.ok(parseConfig(yaml('https://authz.example.com/x'), 'ca.yaml').warnings.some((w) => /no secretFile/.test(w)))
    // a webhook that may take longer than the socket stays open without a byte: the connection closes
    // while an allow still spends the token (webhook-deadline.test.ts)
    assert.ok(
      parseConfig(
        `limits: {idleTimeout: 15s}\n${yaml('https://authz.example.com/x').replace(
          'webhook: {url: "https://authz.example.com/x"}',
          'webhook: {url: "https://authz.example.com/x", timeout: 15s}',
        )}`,
        'ca.yaml',
      ).warnings.some((w) => /webhook\.timeout: 15s must be below limits\.idleTimeout \(15s\)/.test(w)),
    )
  })
})
