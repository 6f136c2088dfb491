/**
 * The signing core over HTTPS with real tokens: oidc-provider for people, a GitHub-shaped issuer
 * for CI. Every hostile case gets its status and audit reason, and the CA keeps serving after them.
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync} from 'node:crypto'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {certFingerprint, pemToDer} from '../../src/ca/keys/pki.ts'
import {startDevIdp, type DevIdp} from '../../src/demo/idp.ts'
import {parseCertificate, parseCertificateLine, verifyCertificate} from '../../src/ssh/cert.ts'
import {PublicKey} from '../../src/ssh/keys.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {SshWriter} from '../../src/ssh/wire.ts'
import {startTestCa, type TestCa} from '../helpers/ca.ts'
import {JSON_UNSAFE} from '../helpers/assert.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {idToken} from '../helpers/idp-token.ts'
import {keygenShow} from '../helpers/openssh.ts'
import {tempDir} from '../helpers/tmp.ts'

const keyB64 = (k = generatePrivateKey('ed25519')) => k.publicKey.blob.toString('base64')

export function policy(idpIssuer: string, ghIssuer: string): Record<string, unknown> {
  return {
    provisioners: [
      {
        name: 'sso',
        type: 'oidc',
        issuer: idpIssuer,
        clientId: 'sshca-cli',
        rules: [
          {
            name: 'engineers',
            match: {email_verified: true, email: {domain: 'example.com'}},
            certificate: {
              principals: ['${email.local}', '${email}'],
              keyId: '${email}',
              ttl: '8h',
              extensions: ['permit-pty'],
            },
          },
        ],
      },
      {
        name: 'ci',
        type: 'oidc',
        issuer: ghIssuer,
        audience: 'sshca-ci',
        maxTtl: '15m',
        rules: [
          {
            name: 'deploy',
            match: {repository: 'acme/app', ref: 'refs/heads/main', event_name: ['push', 'workflow_dispatch']},
            certificate: {
              principals: ['deploy'],
              ttl: '10m',
              keyId: 'gha:${repository}:${run_id}',
              forceCommand: '/usr/local/bin/deploy.sh',
              sourceAddress: ['10.0.0.0/8'],
            },
          },
          {name: 'twice-a', match: {repository: 'acme/twice'}, certificate: {principals: ['a'], ttl: '5m'}},
          {
            name: 'twice-b',
            match: {repository: 'acme/twice', ref: 'refs/heads/main'},
            certificate: {principals: ['b'], ttl: '5m'},
          },
          {name: 'by-actor', match: {repository: 'acme/tmpl'}, certificate: {principals: ['${actor}'], ttl: '5m'}},
        ],
      },
      {
        name: 'unreachable',
        type: 'oidc',
        issuer: 'http://127.0.0.1:9',
        audience: 'sshca-nowhere',
        rules: [{name: 'r', match: {sub: 'x'}, certificate: {principals: ['x'], ttl: '5m'}}],
      },
    ],
  }
}

describe('signing core over HTTPS', function () {
  this.timeout(60_000)
  let idp: DevIdp
  let gh: GithubIssuer
  let t: TestCa

  before(async () => {
    idp = await startDevIdp({
      clients: [{clientId: 'sshca-cli'}],
      accounts: {'mallory@evil.io': {email: 'mallory@evil.io'}},
      quiet: true,
    })
    gh = await startGithubIssuer()
    t = await startTestCa(policy(idp.issuer, gh.issuer))
  })
  after(async () => {
    await t?.stop()
    await idp?.stop()
    await gh?.stop()
  })

  /** POST /ssh/sign and the one audit line it produced. */
  async function sign(body: unknown, raw = false) {
    const mark = t.mark()
    const res = await t.call('POST', '/ssh/sign', raw ? body : body)
    const lines = t.since(mark).filter((l) => l.event === 'certificate_issued' || l.event === 'certificate_denied')
    assert.equal(lines.length, 1, `expected one audit line, got ${JSON.stringify(lines)}`)
    return {res, audit: lines[0]!}
  }

  async function denied(body: unknown, status: number, reason: string) {
    const {res, audit} = await sign(body)
    assert.equal(res.status, status, `${res.text}`)
    assert.equal(audit.event, 'certificate_denied')
    assert.equal(audit.reason, reason)
    const b = res.json as {status: number; message: string; request_id: string}
    assert.equal(b.status, status)
    assert.equal(b.request_id, res.headers['x-request-id'])
    assert.equal(audit.request_id, b.request_id)
    return {res, audit, body: b}
  }

  it('serves the step-ca read routes at / and /1.0', async () => {
    for (const prefix of ['', '/1.0']) {
      assert.deepEqual((await t.call('GET', `${prefix}/health`)).json, {status: 'ok', db: 'ok'})
      assert.deepEqual((await t.call('GET', `${prefix}/ready`)).json, {ready: true})
    }
    const fp = certFingerprint(pemToDer(t.rootPem))
    assert.equal(fp, t.init.rootFingerprint)
    assert.deepEqual((await t.call('GET', `/root/${fp}`)).json, {ca: t.rootPem})
    const colons = fp.toUpperCase().match(/../g)!.join(':')
    assert.equal((await t.call('GET', `/root/${colons}`)).status, 200)
    assert.equal((await t.call('GET', `/root/${'0'.repeat(64)}`)).status, 404)
    assert.equal((await t.call('GET', '/root/nothex')).status, 404)
    assert.deepEqual((await t.call('GET', '/roots')).json, {crts: [t.rootPem]})
    const provs = (await t.call('GET', '/provisioners')).json as {provisioners: Record<string, unknown>[]}
    assert.deepEqual(provs.provisioners[0], {
      type: 'OIDC',
      name: 'sso',
      clientID: 'sshca-cli',
      audience: 'sshca-cli',
      interactive: true,
      configurationEndpoint: `${idp.issuer}/.well-known/openid-configuration`,
    })
    assert.equal(provs.provisioners[1]!.interactive, false)
    const roots = (await t.call('GET', '/ssh/roots')).json as {
      userKey: string[]
      hostKey: string[]
      hostPattern: string
    }
    assert.equal(
      PublicKey.fromBlob(Buffer.from(roots.userKey[0]!, 'base64')).toLine(),
      t.init.userCaKey.split(' ').slice(0, 2).join(' '),
    )
    // ca init derives ssh.hostPattern from --dns; an IP address names no domain, so no hosts ("!*")
    assert.equal(roots.hostPattern, '!*')
    assert.equal((await t.call('GET', '/nope')).status, 404)
  })

  it('signs a user certificate for a real oidc-provider ID token, shaped by the rule alone', async () => {
    const {idToken: ott} = await idToken(idp.issuer, {clientId: 'sshca-cli', login: 'Jane.Doe@example.com'})
    const key = generatePrivateKey('ed25519')
    const before = Math.floor(Date.now() / 1000)
    const {res, audit} = await sign({
      publicKey: keyB64(key),
      ott,
      certType: 'user',
      principals: ['root'],
      validBefore: '2099-01-01T00:00:00Z',
      keyID: 'evil',
    })
    const after = Math.floor(Date.now() / 1000)
    assert.equal(res.status, 201, res.text)
    const cert = parseCertificate(Buffer.from((res.json as {crt: string}).crt, 'base64'))
    assert.equal(verifyCertificate(cert).valid, true)
    assert.ok(cert.signatureKey.equals(PublicKey.parseLine(t.init.userCaKey).key))
    assert.deepEqual(cert.principals, ['jane.doe', 'Jane.Doe@example.com'])
    assert.equal(cert.keyId, 'Jane.Doe@example.com')
    assert.deepEqual(cert.extensions, {'permit-pty': true})
    assert.deepEqual(cert.criticalOptions, {})
    // signed at some moment between before and after, however slow the machine
    assert.ok(
      Number(cert.validAfter) >= before - 60 && Number(cert.validAfter) <= after - 60,
      `validAfter ${cert.validAfter}, signed in ${before}..${after}`,
    )
    assert.equal(cert.validBefore - cert.validAfter, BigInt(8 * 3600 + 60))
    assert.equal(audit.event, 'certificate_issued')
    assert.equal(audit.provisioner, 'sso')
    assert.equal(audit.rule, 'engineers')
    assert.equal(audit.serial, cert.serial.toString())
    assert.equal(audit.key_fingerprint, key.publicKey.fingerprint())
    assert.equal((audit.token as {sha256: string}).sha256.length, 64)
    assert.equal((audit.claims as {email: string}).email, 'Jane.Doe@example.com')
    assert.ok(!readFileSync(t.auditFile, 'utf8').includes(ott.split('.')[2]!), 'the raw token is in the audit log')
    // ssh-keygen agrees
    const file = join(tempDir(), 'u-cert.pub')
    writeFileSync(file, `${cert.keyType} ${cert.blob.toString('base64')}\n`)
    const shown = await keygenShow(file)
    assert.deepEqual(shown.principals, ['jane.doe', 'Jane.Doe@example.com'])
    assert.deepEqual(shown.extensions, ['permit-pty'])
  })

  it('signs a CI certificate with force-command and source-address, capped at 10 minutes', async () => {
    const token = await gh.mint()
    const {res, audit} = await sign({publicKey: keyB64(), ott: token})
    assert.equal(res.status, 201, res.text)
    const cert = parseCertificate(Buffer.from((res.json as {crt: string}).crt, 'base64'))
    assert.deepEqual(cert.principals, ['deploy'])
    assert.match(cert.keyId, /^gha:acme\/app:\d+$/)
    assert.deepEqual(cert.criticalOptions, {
      'force-command': '/usr/local/bin/deploy.sh',
      'source-address': '10.0.0.0/8',
    })
    assert.deepEqual(cert.extensions, {})
    assert.equal(Number(cert.validBefore - cert.validAfter), 600 + 60)
    assert.equal((audit.claims as Record<string, unknown>).repository, 'acme/app')
    assert.equal((audit.claims as Record<string, unknown>).run_id, cert.keyId.split(':')[2])
  })

  it("answers oidc-ssh-ca's POST /sign with a text/plain certificate line", async () => {
    const key = generatePrivateKey('ecdsa')
    const res = await t.call(
      'POST',
      '/sign',
      {public_key: key.publicKey.toLine('me')},
      {authorization: `Bearer ${await gh.mint()}`},
    )
    assert.equal(res.status, 200, res.text)
    assert.match(String(res.headers['content-type']), /^text\/plain/)
    const {cert} = parseCertificateLine(res.text)
    assert.ok(cert.publicKey.equals(key.publicKey))
    const noAuth = await t.call('POST', '/sign', {public_key: key.publicKey.toLine()})
    assert.equal(noAuth.status, 400)
  })

  describe('hostile requests', () => {
    it('alg none → 401 token_invalid', async () =>
      denied({publicKey: keyB64(), ott: await gh.mint({}, {alg: 'none'})}, 401, 'token_invalid'))
    it("HS256 signed with the issuer's public key → 401 token_invalid", async () =>
      denied({publicKey: keyB64(), ott: await gh.mint({}, {alg: 'HS256-with-public-key'})}, 401, 'token_invalid'))
    it('a key the issuer does not publish (same kid, and another kid) → 401 token_invalid', async () => {
      const other = generateKeyPairSync('rsa', {modulusLength: 2048}).privateKey
      await denied({publicKey: keyB64(), ott: await gh.mint({}, {key: other})}, 401, 'token_invalid')
      await denied(
        {publicKey: keyB64(), ott: await gh.mint({}, {key: other, kid: 'unknown-kid'})},
        401,
        'token_invalid',
      )
    })
    it('expired (beyond the 60 s leeway) → 401 token_expired; within the leeway it passes', async () => {
      const now = Math.floor(Date.now() / 1000)
      await denied(
        {publicKey: keyB64(), ott: await gh.mint({}, {iat: now - 600, nbf: now - 600, exp: now - 61})},
        401,
        'token_expired',
      )
      const {res} = await sign({
        publicKey: keyB64(),
        ott: await gh.mint({}, {iat: now - 600, nbf: now - 600, exp: now - 30}),
      })
      assert.equal(res.status, 201)
    })
    it('not yet valid → 401 token_not_yet_valid (nbf, and iat in the future)', async () => {
      const now = Math.floor(Date.now() / 1000)
      await denied(
        {publicKey: keyB64(), ott: await gh.mint({}, {nbf: now + 120, iat: now})},
        401,
        'token_not_yet_valid',
      )
      await denied(
        {publicKey: keyB64(), ott: await gh.mint({}, {iat: now + 120, nbf: now - 5})},
        401,
        'token_not_yet_valid',
      )
    })
    it('wrong issuer → 401 issuer_unknown; wrong audience → 401 audience_mismatch', async () => {
      await denied(
        {publicKey: keyB64(), ott: await gh.mint({iss: 'https://token.actions.githubusercontent.com'})},
        401,
        'issuer_unknown',
      )
      await denied({publicKey: keyB64(), ott: await gh.mint({aud: 'someone-else'})}, 401, 'audience_mismatch')
    })
    it('an unauthenticated token whose issuer carries C1 and bidirectional controls: audited as \\u escapes, never raw', async () => {
      // `ca serve` logs to stdout by default: a raw U+009B (CSI) or U+202E would reach the operator's terminal
      const iss = 'https://evil\u009b2J\u202eexample\u007f.test'
      const {audit} = await denied({publicKey: keyB64(), ott: await gh.mint({iss})}, 401, 'issuer_unknown')
      assert.ok(String(audit.detail).includes(iss), String(audit.detail))
      assert.doesNotMatch(readFileSync(t.auditFile, 'utf8'), JSON_UNSAFE)
    })
    it('a replayed token → 401 token_replayed', async () => {
      const ott = await gh.mint()
      assert.equal((await sign({publicKey: keyB64(), ott})).res.status, 201)
      await denied({publicKey: keyB64(), ott}, 401, 'token_replayed')
    })
    it("JWKS unreachable with an empty cache → 503 jwks_unavailable (fail closed); the caller learns nothing of the CA's insides", async () => {
      const {body, audit} = await denied(
        {publicKey: keyB64(), ott: await gh.mint({iss: 'http://127.0.0.1:9', aud: 'sshca-nowhere', sub: 'x'})},
        503,
        'jwks_unavailable',
      )
      // the unauthenticated caller gets a generic message and the request id; the detail is audited
      assert.doesNotMatch(body.message, /127\.0\.0\.1|fetch|discovery|http/)
      assert.match(String(audit.detail), /cannot fetch the discovery document of http:\/\/127\.0\.0\.1:9/)
    })
    it('a claim the rule needs is absent → 403 no_rule_matched', async () => {
      const {body} = await denied({publicKey: keyB64(), ott: await gh.mint({ref: undefined})}, 403, 'no_rule_matched')
      assert.equal(body.message, 'the CA policy does not allow a certificate for this request')
    })
    it('a person outside the allowed domain → 403 no_rule_matched', async () => {
      const {idToken: ott} = await idToken(idp.issuer, {clientId: 'sshca-cli', login: 'mallory@evil.io'})
      await denied({publicKey: keyB64(), ott}, 403, 'no_rule_matched')
    })
    it('two rules match → 403 multiple_rules_matched', async () => {
      const {audit} = await denied(
        {publicKey: keyB64(), ott: await gh.mint({repository: 'acme/twice'})},
        403,
        'multiple_rules_matched',
      )
      assert.deepEqual(audit.provisioner, 'ci')
    })
    it('a principal template that renders "root\\nfoo" or "a,b" → 403 principal_invalid', async () => {
      await denied(
        {publicKey: keyB64(), ott: await gh.mint({repository: 'acme/tmpl', actor: 'root\nfoo'})},
        403,
        'principal_invalid',
      )
      await denied(
        {publicKey: keyB64(), ott: await gh.mint({repository: 'acme/tmpl', actor: 'a,b'})},
        403,
        'principal_invalid',
      )
      assert.equal(
        (await sign({publicKey: keyB64(), ott: await gh.mint({repository: 'acme/tmpl', actor: 'octocat'})})).res.status,
        201,
      )
    })
    it('an oversized body → 413 bad_request', async () => {
      const {res, audit} = await sign({publicKey: keyB64(), ott: 'x'.repeat(20_000)})
      assert.equal(res.status, 413)
      assert.equal(audit.reason, 'bad_request')
    })
    it('bad JSON, a missing field → 400 bad_request', async () => {
      const r1 = await sign('{"publicKey": ', true)
      assert.equal(r1.res.status, 400)
      assert.equal(r1.audit.reason, 'bad_request')
      await denied({publicKey: keyB64()}, 400, 'bad_request')
    })
    it('a malformed public key → 400 bad_request', async () => {
      await denied({publicKey: 'AAAA', ott: await gh.mint()}, 400, 'bad_request')
      await denied({publicKey: '!!notbase64', ott: await gh.mint()}, 400, 'bad_request')
    })
    it('a DSA key and a 1024-bit RSA key → 400 bad_request; RSA 3072 is fine', async () => {
      const dsa = new SshWriter()
        .string('ssh-dss')
        .mpint(Buffer.alloc(128, 0x7f))
        .mpint(Buffer.alloc(20, 1))
        .mpint(Buffer.alloc(128, 2))
        .mpint(Buffer.alloc(128, 3))
        .toBuffer()
      const {body} = await denied({publicKey: dsa.toString('base64'), ott: await gh.mint()}, 400, 'bad_request')
      assert.match(body.message, /ssh-dss/)
      const rsa1024 = generatePrivateKey('rsa', 1024)
      const r = await denied({publicKey: keyB64(rsa1024), ott: await gh.mint()}, 400, 'bad_request')
      assert.match(r.body.message, /at least 3072 bits/)
      assert.equal(
        (await sign({publicKey: keyB64(generatePrivateKey('rsa', 3072)), ott: await gh.mint()})).res.status,
        201,
      )
    })
    it('keeps serving after all of them', async () => {
      assert.equal((await t.call('GET', '/health')).status, 200)
      assert.equal((await sign({publicKey: keyB64(), ott: await gh.mint()})).res.status, 201)
    })
  })

  it('reload: a broken ca.yaml is logged and the old policy keeps issuing; a valid one takes effect', async () => {
    const original = readFileSync(t.init.config, 'utf8')
    try {
      writeFileSync(t.init.config, original.replace('maxTtl: 15m', 'maxTtl: 15x'))
      const mark = t.mark()
      assert.equal(await t.ca.reload(), false)
      const failed = t.since(mark).find((l) => l.event === 'policy_reload_failed')!
      assert.match(String(failed.error), /maxTtl: "15x" is not a duration/)
      assert.equal((await sign({publicKey: keyB64(), ott: await gh.mint()})).res.status, 201)

      writeFileSync(t.init.config, original.replace('disabled: false', 'disabled: true'))
      assert.equal(await t.ca.reload(), true)
      await denied({publicKey: keyB64(), ott: await gh.mint()}, 503, 'policy_disabled')
    } finally {
      writeFileSync(t.init.config, original)
      assert.equal(await t.ca.reload(), true)
    }
    assert.equal((await sign({publicKey: keyB64(), ott: await gh.mint()})).res.status, 201)
  })
})
