/**
 * The attacks of the security review (issue 8), each performed against the real CA over HTTPS and
 * the real CLI, with the refusal asserted by status and audit reason. One describe per item; the
 * client-side items live beside the client's tests.
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync, randomUUID} from 'node:crypto'
import {chmodSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {mintSshpopToken, SSHPOP_PROVISIONER} from '../../src/protocol/tokens.ts'
import {certificateLine, parseCertificate, signCertificate} from '../../src/ssh/cert.ts'
import {generatePrivateKey, type PrivateKey} from '../../src/ssh/private-key.ts'
import {keySigner} from '../../src/ssh/signature.ts'
import {SshWriter} from '../../src/ssh/wire.ts'
import {PASSWORD, startTestCa, writePolicy, type TestCa} from '../helpers/ca.ts'
import {sshca} from '../helpers/cli.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {run, waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'

const b64 = (k: PrivateKey) => k.publicKey.blob.toString('base64')
const now = () => Math.floor(Date.now() / 1000)

function policy(gh: string): Record<string, unknown> {
  return {
    provisioners: [
      {
        name: 'ci',
        type: 'oidc',
        issuer: gh,
        audience: 'sshca-ci',
        rules: [
          {
            name: 'deploy',
            match: {repository: 'acme/app', ref: 'refs/heads/main'},
            certificate: {principals: ['deploy'], ttl: '10m', keyId: 'gha:${repository}'},
          },
          {
            name: 'other',
            match: {repository: 'acme/other'},
            certificate: {principals: ['other'], ttl: '10m', keyId: 'gha:${repository}:${run_id}'},
          },
        ],
      },
      {
        // people: email claims minted by the same test issuer, for another audience
        name: 'people',
        type: 'oidc',
        issuer: gh,
        audience: 'sshca-people',
        rules: [
          {
            name: 'staff',
            match: {email_verified: true, email: {domain: 'example.com'}},
            certificate: {principals: ['${email.local}'], ttl: '1h', keyId: '${email}'},
          },
          {
            name: 'step-style',
            match: {email_verified: true, email: {domain: 'step.example'}},
            certificate: {principals: ['${email.local|step}'], ttl: '1h', keyId: '${email}'},
          },
        ],
      },
      {
        name: 'longer',
        type: 'oidc',
        issuer: gh,
        audience: 'sshca-longer',
        maxTokenAge: '3h',
        rules: [{name: 'r', match: {repository: 'acme/app'}, certificate: {principals: ['deploy'], ttl: '5m'}}],
      },
    ],
  }
}

describe('trust hardening: the attacks of the security review, performed', function () {
  this.timeout(120_000)
  let gh: GithubIssuer
  let es: GithubIssuer
  let t: TestCa
  const ca = () => ['--config', t.init.config]

  before(async () => {
    gh = await startGithubIssuer()
    es = await startGithubIssuer('sshca-es', 'ES256')
    const p = policy(gh.issuer)
    ;(p.provisioners as unknown[]).push({
      name: 'es',
      type: 'oidc',
      issuer: es.issuer,
      audience: 'sshca-es',
      rules: [{name: 'r', match: {repository: 'acme/app'}, certificate: {principals: ['deploy'], ttl: '5m'}}],
    })
    t = await startTestCa(p, {adminEventsIntervalMs: 100})
  })
  after(async () => {
    await t?.stop()
    await gh?.stop()
    await es?.stop()
  })

  const post = (path: string, body: unknown, headers?: Record<string, string>) => t.call('POST', path, body, headers)
  /** The one decision audited for a request id. */
  const auditOf = (requestId: unknown) =>
    t
      .audit()
      .find(
        (l) => l.request_id === requestId && (l.event === 'certificate_issued' || l.event === 'certificate_denied'),
      )!
  async function expectDenied(res: {status: number; json: unknown}, status: number, reason: string) {
    assert.equal(res.status, status, JSON.stringify(res.json))
    const line = auditOf((res.json as {request_id: string}).request_id)
    assert.equal(line.event, 'certificate_denied')
    assert.equal(line.reason, reason)
    return line
  }

  async function caToken(host: string, extra: string[] = []): Promise<{token: string; stdout: string; stderr: string}> {
    const r = await sshca(['ca', 'token', '--host', host, ...extra, ...ca(), '--password-file', t.passwordFile])
    assert.equal(r.code, 0, r.stderr)
    return {token: r.stdout.trim().split('\n').pop()!, stdout: r.stdout, stderr: r.stderr}
  }

  function hostKey(): {key: PrivateKey; pubFile: string} {
    const key = generatePrivateKey('ed25519')
    const pubFile = join(tempDir(), 'ssh_host_ed25519_key.pub')
    writeFileSync(pubFile, `${key.publicKey.toLine('host')}\n`)
    return {key, pubFile}
  }

  async function enrol(host: string, key: PrivateKey) {
    const {token} = await caToken(host)
    const res = await post('/ssh/sign', {publicKey: b64(key), ott: token, certType: 'host'})
    assert.equal(res.status, 201, res.text)
    return parseCertificate(Buffer.from((res.json as {crt: string}).crt, 'base64'))
  }

  const renew = async (key: PrivateKey, cert: ReturnType<typeof parseCertificate>) =>
    post('/ssh/renew', {
      ott: await mintSshpopToken(key.keyObject, cert, {
        caUrl: t.url,
        action: 'renew',
        provisioner: SSHPOP_PROVISIONER,
        rootFingerprint: t.init.rootFingerprint,
        now: now(),
      }),
    })
  const crtOf = (res: {json: unknown}) => parseCertificate(Buffer.from((res.json as {crt: string}).crt, 'base64'))

  describe('1. enrollment tokens: bound to one host key, and a second use says when it was spent', () => {
    it('a token bound with --key enrols that key only (403 key_not_bound for any other)', async () => {
      const host = hostKey()
      const bound = await caToken('web-bound', ['--key', host.pubFile])
      assert.match(
        bound.stdout,
        new RegExp(`bound to host key ${host.key.publicKey.fingerprint().replace(/[+/]/g, '\\$&')}`),
      )
      const thief = generatePrivateKey('ed25519')
      await expectDenied(
        await post('/ssh/sign', {publicKey: b64(thief), ott: bound.token, certType: 'host'}),
        403,
        'key_not_bound',
      )
      // the refusal spent nothing: the host itself still enrols with it
      const ok = await post('/ssh/sign', {publicKey: b64(host.key), ott: bound.token, certType: 'host'})
      assert.equal(ok.status, 201, ok.text)
      // by fingerprint too
      const other = hostKey()
      const byFp = await caToken('web-fp', ['--key', other.key.publicKey.fingerprint()])
      await expectDenied(
        await post('/ssh/sign', {publicKey: b64(thief), ott: byFp.token, certType: 'host'}),
        403,
        'key_not_bound',
      )
    })

    it('without --key, ca token says the token is unbound', async () => {
      const unbound = await caToken('web-unbound')
      assert.match(unbound.stdout, /UNBOUND/)
      assert.match(unbound.stderr, /not bound to a host key/)
    })

    it('a second use → 401 saying it was already used and when; the audit line names the serial it bought', async () => {
      const host = hostKey()
      const {token} = await caToken('web-twice')
      const first = await post('/ssh/sign', {publicKey: b64(host.key), ott: token, certType: 'host'})
      assert.equal(first.status, 201)
      const serial = crtOf(first).serial.toString()
      const attacker = generatePrivateKey('ed25519')
      const second = await post('/ssh/sign', {publicKey: b64(attacker), ott: token, certType: 'host'})
      const line = await expectDenied(second, 401, 'token_replayed')
      assert.match((second.json as {message: string}).message, /already used at \d{4}-\d\d-\d\dT/)
      assert.doesNotMatch((second.json as {message: string}).message, /sign in again/)
      assert.equal(line.spent_on_serial, serial)
    })
  })

  describe('2. a revoked or superseded certificate ends its renewal lineage', () => {
    it('enrol A, renew A→B, revoke B: renewing A is 403 superseded, renewing B 403 certificate_revoked', async () => {
      const {key} = hostKey()
      const a = await enrol('lineage', key)
      const rb = await renew(key, a)
      assert.equal(rb.status, 201, rb.text)
      const b = crtOf(rb)
      assert.equal((await sshca(['ca', 'revoke', '--serial', b.serial.toString(), ...ca()])).code, 0)
      await expectDenied(await renew(key, a), 403, 'superseded')
      await expectDenied(await renew(key, b), 403, 'certificate_revoked')
    })

    it('three renewals of one certificate at once: exactly one certificate is issued, and all three get it', async () => {
      const {key} = hostKey()
      const a = await enrol('race', key)
      const mark = t.mark()
      const results = await Promise.all([renew(key, a), renew(key, a), renew(key, a)])
      assert.deepEqual(
        results.map((r) => r.status),
        [201, 201, 201],
      )
      const crts = new Set(results.map((r) => (r.json as {crt: string}).crt))
      assert.equal(crts.size, 1, 'one certificate, byte for byte')
      const lines = t.since(mark).filter((l) => String(l.event).startsWith('certificate_'))
      assert.deepEqual(lines.map((l) => l.event).sort(), [
        'certificate_issued',
        'certificate_redelivered',
        'certificate_redelivered',
      ])
      assert.equal(new Set(lines.map((l) => l.serial)).size, 1)
    })

    it("another host's public key (ssh-keyscan gives it) cannot take its lineage: rekey or unbound enrolment → 403 key_in_use", async () => {
      const victim = hostKey()
      const victimCert = await enrol('victim', victim.key)
      const attacker = hostKey()
      const attackerCert = await enrol('attacker', attacker.key)
      const rekey = await post('/ssh/rekey', {
        ott: await mintSshpopToken(attacker.key.keyObject, attackerCert, {
          caUrl: t.url,
          action: 'rekey',
          provisioner: SSHPOP_PROVISIONER,
          rootFingerprint: t.init.rootFingerprint,
          now: now(),
        }),
        publicKey: b64(victim.key),
      })
      const line = await expectDenied(rekey, 403, 'key_in_use')
      assert.equal(line.newest_serial, victimCert.serial.toString())
      // a token for another name, not bound to a key, with the victim's key
      const {token} = await caToken('elsewhere')
      await expectDenied(
        await post('/ssh/sign', {publicKey: b64(victim.key), ott: token, certType: 'host'}),
        403,
        'key_in_use',
      )
      // the victim still renews, and the inventory still names it
      const renewed = await renew(victim.key, victimCert)
      assert.equal(renewed.status, 201, renewed.text)
      const inventory = await sshca(['ca', 'hosts', '--json', ...ca()])
      const hosts = (JSON.parse(inventory.stdout) as {hosts: {keyFingerprint: string; principals: string[]}[]}).hosts
      assert.deepEqual(hosts.find((h) => h.keyFingerprint === victim.key.publicKey.fingerprint())?.principals, [
        'victim',
      ])
      // the admin may still move a key on purpose: a token bound to it with --key
      const moved = await caToken('victim-renamed', ['--key', victim.pubFile])
      const ok = await post('/ssh/sign', {publicKey: b64(victim.key), ott: moved.token, certType: 'host'})
      assert.equal(ok.status, 201, ok.text)
    })

    it('ca revoke --key: every certificate of the key is REVOKED for ssh-keygen -Q, and no new one is issued', async () => {
      const host = hostKey()
      const a = await enrol('leaked', host.key)
      const r = await sshca(['ca', 'revoke', '--key', host.pubFile, '--reason', 'host key leaked', ...ca(), '--json'])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(JSON.parse(r.stdout).blocksFutureCertificates, true)
      await expectDenied(await renew(host.key, a), 403, 'revoked')
      const {token} = await caToken('leaked')
      await expectDenied(
        await post('/ssh/sign', {publicKey: b64(host.key), ott: token, certType: 'host'}),
        403,
        'revoked',
      )
      // the KRL lists the key itself: any certificate of it is revoked, even one this CA never recorded
      const dir = tempDir()
      const krl = join(dir, 'krl')
      writeFileSync(krl, await fetchKrl())
      const foreign = await signCertificate(
        {
          type: 'host',
          publicKey: host.key.publicKey,
          serial: 77n,
          keyId: 'never-issued',
          principals: ['x'],
          validAfter: 0n,
          validBefore: BigInt(now() + 600),
        },
        keySigner(generatePrivateKey('ed25519').keyObject),
      )
      const files = [join(dir, 'a-cert.pub'), join(dir, 'foreign-cert.pub')]
      writeFileSync(files[0]!, `${certificateLine(a)}\n`)
      writeFileSync(files[1]!, `${certificateLine(foreign)}\n`)
      for (const f of files) assert.match((await run('ssh-keygen', ['-Q', '-f', krl, f])).stdout, /REVOKED/)
      const unrelated = join(dir, 'unrelated-cert.pub')
      writeFileSync(unrelated, `${certificateLine(await enrol('unrelated', generatePrivateKey('ed25519')))}\n`)
      assert.match((await run('ssh-keygen', ['-Q', '-f', krl, unrelated])).stdout, /: ok$/m)
    })

    it('--key-id host:NAME refuses re-enrolment under that name until ca unrevoke', async () => {
      await enrol('web9', generatePrivateKey('ed25519'))
      const r = await sshca(['ca', 'revoke', '--key-id', 'host:web9', ...ca(), '--json'])
      assert.equal(r.code, 0, r.stderr)
      const id = JSON.parse(r.stdout).revocations[0].id as string
      const {token} = await caToken('web9')
      await expectDenied(
        await post('/ssh/sign', {publicKey: b64(generatePrivateKey('ed25519')), ott: token, certType: 'host'}),
        403,
        'revoked',
      )
      const u = await sshca(['ca', 'unrevoke', id, ...ca()])
      assert.equal(u.code, 0, u.stderr)
      await enrol('web9', generatePrivateKey('ed25519'))
    })
  })

  async function fetchKrl(): Promise<Buffer> {
    const {request} = await import('undici')
    const res = await request(`${t.url}/ssh/krl`, {dispatcher: t.dispatcher})
    return Buffer.from(await res.body.arrayBuffer())
  }

  describe('4. revocations are checked at every issuance', () => {
    it('after ca revoke --key-id gha:acme/app a new sign is 403 revoked; a revoked user key too', async () => {
      assert.equal(
        (await post('/ssh/sign', {publicKey: b64(generatePrivateKey('ed25519')), ott: await gh.mint()})).status,
        201,
      )
      assert.equal((await sshca(['ca', 'revoke', '--key-id', 'gha:acme/app', ...ca()])).code, 0)
      await expectDenied(
        await post('/ssh/sign', {publicKey: b64(generatePrivateKey('ed25519')), ott: await gh.mint()}),
        403,
        'revoked',
      )
      // the oidc-ssh-ca route as well
      const key = generatePrivateKey('ed25519')
      const viaSign = await post(
        '/sign',
        {public_key: key.publicKey.toLine()},
        {authorization: `Bearer ${await gh.mint()}`},
      )
      await expectDenied(viaSign, 403, 'revoked')
      // a key: other rules, other key IDs, still refused
      const userKey = generatePrivateKey('ed25519')
      assert.equal((await sshca(['ca', 'revoke', '--key', userKey.publicKey.fingerprint(), ...ca()])).code, 0)
      await expectDenied(
        await post('/ssh/sign', {publicKey: b64(userKey), ott: await gh.mint({repository: 'acme/other'})}),
        403,
        'revoked',
      )
      assert.equal(
        (
          await post('/ssh/sign', {
            publicKey: b64(generatePrivateKey('ed25519')),
            ott: await gh.mint({repository: 'acme/other'}),
          })
        ).status,
        201,
      )
      // ca unrevoke lifts a key-ID revocation at once
      const list = JSON.parse((await sshca(['ca', 'revocations', ...ca(), '--json'])).stdout).revocations as {
        id: string
        keyId: string | null
      }[]
      const id = list.find((r) => r.keyId === 'gha:acme/app')!.id
      assert.equal((await sshca(['ca', 'unrevoke', id, ...ca()])).code, 0)
      assert.equal(
        (await post('/ssh/sign', {publicKey: b64(generatePrivateKey('ed25519')), ott: await gh.mint()})).status,
        201,
      )
    })
  })

  describe('6. renewal checks the signing CA key before any signature', () => {
    it('a certificate from a foreign CA with a bad signature is refused as ca_key_unknown, never verified', async () => {
      const {key} = hostKey()
      const rogue = generatePrivateKey('ed25519')
      const good = await signCertificate(
        {
          type: 'host',
          publicKey: key.publicKey,
          serial: 5n,
          keyId: 'host:x',
          principals: ['x'],
          validAfter: 0n,
          validBefore: BigInt(now() + 600),
        },
        keySigner(rogue.keyObject),
      )
      // break the signature: were it verified first, the reason would be proof_invalid
      const blob = Buffer.from(good.blob)
      blob[blob.length - 1]! ^= 1
      const broken = parseCertificate(blob)
      await expectDenied(await renew(key, broken), 401, 'ca_key_unknown')
      // an RSA "CA" with a huge public exponent: refused before any exponentiation
      const n = (generateKeyPairSync('rsa', {modulusLength: 2048}).publicKey.export({format: 'jwk'}) as {n: string}).n
      const hugeE = Buffer.alloc(512, 0xff)
      const caBlob = new SshWriter().string('ssh-rsa').mpint(hugeE).mpint(Buffer.from(n, 'base64url')).toBuffer()
      const certBody = Buffer.from(good.blob.subarray(0, good.blob.length - (4 + good.signature.length)))
      const reSigned = replaceSignatureKey(certBody, good, caBlob)
      assert.ok(reSigned, 'the forged certificate parses')
      assert.equal(reSigned.signatureKey.type, 'ssh-rsa')
      await expectDenied(await renew(key, reSigned), 401, 'ca_key_unknown')
    })
  })

  describe('7. replay keys on what the signature covers', () => {
    it('the same token re-spelled (stray bits, padding, spaces) gets one certificate in all', async () => {
      const token = await gh.mint({jti: undefined})
      const [h, p, s] = token.split('.') as [string, string, string]
      // RS256's 256-byte signature leaves 4 unused bits in the last base64url character
      const last = s.at(-1)!
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
      const flipped = `${h}.${p}.${s.slice(0, -1)}${alphabet[alphabet.indexOf(last) ^ 1]}`
      const variants = [flipped, `${token}==`, `${h}.${p}.${s}=`, ` ${token}`, `${h}.${p} .${s}`, `${token}\n`]
      assert.equal((await post('/ssh/sign', {publicKey: b64(generatePrivateKey('ed25519')), ott: token})).status, 201)
      for (const v of variants) {
        const res = await post('/ssh/sign', {publicKey: b64(generatePrivateKey('ed25519')), ott: v})
        assert.equal(res.status, 401, `variant ${JSON.stringify(v.slice(-8))} got ${res.status}`)
      }
      // the canonical check refuses the re-spelled ones outright
      await expectDenied(
        await post('/ssh/sign', {publicKey: b64(generatePrivateKey('ed25519')), ott: flipped}),
        401,
        'token_invalid',
      )
    })

    it('an ECDSA signature made malleable (s → n − s) is the same token: 401 token_replayed', async () => {
      const token = await es.mint({jti: undefined})
      const [h, p, s] = token.split('.') as [string, string, string]
      const sig = Buffer.from(s, 'base64url')
      const n = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n
      const sVal = BigInt(`0x${sig.subarray(32).toString('hex')}`)
      const twin = Buffer.concat([sig.subarray(0, 32), Buffer.from((n - sVal).toString(16).padStart(64, '0'), 'hex')])
      const malleated = `${h}.${p}.${twin.toString('base64url')}`
      // it verifies: jose accepts high-s ECDSA signatures
      assert.equal(
        (await post('/ssh/sign', {publicKey: b64(generatePrivateKey('ed25519')), ott: malleated})).status,
        201,
      )
      await expectDenied(
        await post('/ssh/sign', {publicKey: b64(generatePrivateKey('ed25519')), ott: token}),
        401,
        'token_replayed',
      )
    })
  })

  describe('8. several audiences need azp; tokens may not live long', () => {
    it('aud [ours, another] without azp → 401 audience_mismatch; with azp = ours → 201', async () => {
      await expectDenied(
        await post('/ssh/sign', {
          publicKey: b64(generatePrivateKey('ed25519')),
          ott: await gh.mint({aud: ['sshca-ci', 'someone-else']}),
        }),
        401,
        'audience_mismatch',
      )
      await expectDenied(
        await post('/ssh/sign', {
          publicKey: b64(generatePrivateKey('ed25519')),
          ott: await gh.mint({aud: ['sshca-ci', 'someone-else'], azp: 'someone-else'}),
        }),
        401,
        'audience_mismatch',
      )
      assert.equal(
        (
          await post('/ssh/sign', {
            publicKey: b64(generatePrivateKey('ed25519')),
            ott: await gh.mint({aud: ['sshca-ci', 'someone-else'], azp: 'sshca-ci'}),
          })
        ).status,
        201,
      )
    })

    it('a token that lives a year → 401 token_lifetime_too_long; one issued 2 h ago → 401 token_expired; maxTokenAge raises the bar', async () => {
      await expectDenied(
        await post('/ssh/sign', {
          publicKey: b64(generatePrivateKey('ed25519')),
          ott: await gh.mint({}, {exp: now() + 365 * 86400}),
        }),
        401,
        'token_lifetime_too_long',
      )
      await expectDenied(
        await post('/ssh/sign', {
          publicKey: b64(generatePrivateKey('ed25519')),
          ott: await gh.mint({}, {exp: now() + 3600 + 120}),
        }),
        401,
        'token_lifetime_too_long',
      )
      // still unexpired, but issued longer ago than maxTokenAge
      await expectDenied(
        await post('/ssh/sign', {
          publicKey: b64(generatePrivateKey('ed25519')),
          ott: await gh.mint({}, {iat: now() - 7200, nbf: now() - 7200, exp: now() + 300}),
        }),
        401,
        'token_expired',
      )
      // exactly an hour (Google's ID tokens) is fine
      assert.equal(
        (
          await post('/ssh/sign', {
            publicKey: b64(generatePrivateKey('ed25519')),
            ott: await gh.mint({}, {iat: now() - 60, exp: now() + 3540}),
          })
        ).status,
        201,
      )
      // a provisioner with maxTokenAge 3h accepts a 2.5 h token, refuses a 4 h one
      assert.equal(
        (
          await post('/ssh/sign', {
            publicKey: b64(generatePrivateKey('ed25519')),
            ott: await gh.mint({aud: 'sshca-longer'}, {iat: now() - 7200, nbf: now() - 7200, exp: now() + 1800}),
          })
        ).status,
        201,
      )
      await expectDenied(
        await post('/ssh/sign', {
          publicKey: b64(generatePrivateKey('ed25519')),
          ott: await gh.mint({aud: 'sshca-longer'}, {iat: now() - 60, exp: now() + 4 * 3600}),
        }),
        401,
        'token_lifetime_too_long',
      )
      await expectDenied(
        await post('/ssh/sign', {
          publicKey: b64(generatePrivateKey('ed25519')),
          ott: await gh.mint({aud: 'sshca-longer'}, {iat: now() - 4 * 3600, nbf: now() - 4 * 3600, exp: now() + 60}),
        }),
        401,
        'token_expired',
      )
    })
  })

  describe('10. ${email.local} denies instead of rewriting; templates never render a reserved account', () => {
    const people = (email: string) =>
      gh.mint({aud: 'sshca-people', email, email_verified: true, sub: `user-${randomUUID()}`})
    const signAs = async (email: string) =>
      post('/ssh/sign', {publicKey: b64(generatePrivateKey('ed25519')), ott: await people(email)})

    it('J.Doe@ and jdoe@ get different principals; r.o.o.t@ stays r.o.o.t', async () => {
      const a = await signAs('J.Doe@example.com')
      const b = await signAs('jdoe@example.com')
      const c = await signAs('r.o.o.t@example.com')
      assert.deepEqual(
        [a, b, c].map((r) => r.status),
        [201, 201, 201],
      )
      assert.deepEqual(crtOf(a).principals, ['j.doe'])
      assert.deepEqual(crtOf(b).principals, ['jdoe'])
      assert.deepEqual(crtOf(c).principals, ['r.o.o.t'])
    })

    it('root@ → 403 principal_reserved; j+x@ → 403 principal_invalid; step-style sanitizing still refuses root', async () => {
      await expectDenied(await signAs('root@example.com'), 403, 'principal_reserved')
      await expectDenied(await signAs('Root@example.com'), 403, 'principal_reserved')
      await expectDenied(await signAs('j+x@example.com'), 403, 'principal_invalid')
      await expectDenied(await signAs('r.o.o.t@step.example'), 403, 'principal_reserved')
      const step = await signAs('J.Doe@step.example')
      assert.equal(step.status, 201)
      assert.deepEqual(crtOf(step).principals, ['jdoe'])
    })
  })

  describe('15. every admin action is audited, whatever the audit sink', () => {
    it("ca token and ca revoke reach the running CA's audit log (never the token itself)", async () => {
      const {token} = await caToken('audited')
      const tok = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as {jti: string}
      await waitFor('enrollment_token_issued in the audit log', () =>
        t.audit().some((l) => l.event === 'enrollment_token_issued' && l.jti === tok.jti),
      )
      const line = t.audit().find((l) => l.event === 'enrollment_token_issued' && l.jti === tok.jti)!
      assert.equal(line.hostname, 'audited')
      assert.equal(line.bound_key, null)
      assert.match(String(line.token_sha256), /^[0-9a-f]{64}$/)
      assert.ok(!readFileSync(t.auditFile, 'utf8').includes(token), 'the token itself is never audited')
      const r = await sshca(['ca', 'revoke', '--key-id', 'nobody@example.com', '--reason', 'test', ...ca(), '--json'])
      const id = JSON.parse(r.stdout).revocations[0].id
      await waitFor('certificate_revoked in the audit log', () =>
        t.audit().some((l) => l.event === 'certificate_revoked' && (l.revocations as {id: string}[])[0]?.id === id),
      )
    })

    it("with the audit log on standard output (the default), the admin event still reaches the server's sink", async () => {
      // ca.yaml says "-": the admin command has no file to append to; the server copies from the store
      const cfg = readFileSync(t.init.config, 'utf8')
      try {
        await writePolicy(t.init.config, {audit: {file: '-'}})
        const {token} = await caToken('stdout-sink')
        const jti = (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as {jti: string}).jti
        await waitFor('the event forwarded', () =>
          t.audit().some((l) => l.event === 'enrollment_token_issued' && l.jti === jti),
        )
      } finally {
        writeFileSync(t.init.config, cfg)
      }
    })
  })

  describe("16. password files follow the prompt's rules; keys are sealed with scrypt 2^17 and a full GCM tag", () => {
    it('a 1-character or group-readable password file is refused by ca init and ca token', async () => {
      const dir = tempDir()
      const short = join(dir, 'short')
      writeFileSync(short, 'x\n', {mode: 0o600})
      const loose = join(dir, 'loose')
      writeFileSync(loose, `${PASSWORD}\n`, {mode: 0o644})
      chmodSync(loose, 0o644)
      const init = await sshca(['ca', 'init', '--dir', join(dir, 'ca'), '--password-file', short, '--json'])
      assert.equal(init.code, 2)
      assert.equal(JSON.parse(init.stdout).error.code, 'ERR_CA_PASSWORD')
      const init2 = await sshca(['ca', 'init', '--dir', join(dir, 'ca'), '--password-file', loose, '--json'])
      assert.equal(JSON.parse(init2.stdout).error.code, 'ERR_FILE_PERMISSIONS')
      const tok = await sshca(['ca', 'token', '--host', 'x', ...ca(), '--password-file', loose, '--json'])
      assert.equal(JSON.parse(tok.stdout).error.code, 'ERR_FILE_PERMISSIONS')
      const missing = await sshca(['ca', 'token', '--host', 'x', ...ca(), '--password-file', join(dir, 'nope')])
      assert.match(missing.stderr, /create .*nope with the CA password/)
    })

    it('sealed keys use scrypt N=2^17; a truncated GCM tag is refused even with the right password', async () => {
      const file = join(t.init.dir, 'secrets', 'enrollment.key')
      const env = JSON.parse(readFileSync(file, 'utf8')) as {kdf: {N: number}; tag: string}
      assert.equal(env.kdf.N, 1 << 17)
      const {openPrivateKey} = await import('../../src/ca/keys/keystore.ts')
      await openPrivateKey(readFileSync(file, 'utf8'), PASSWORD)
      const truncated = JSON.stringify({...env, tag: Buffer.from(env.tag, 'base64').subarray(0, 12).toString('base64')})
      await assert.rejects(openPrivateKey(truncated, PASSWORD), (e: {code?: string}) => e.code === 'ERR_INPUT')
    })
  })

  describe('9. check-config warns about risky rules; --strict fails on them; ca serve reports them', () => {
    const risky = (gh: string) => ({
      provisioners: [
        {
          name: 'sso',
          type: 'oidc',
          issuer: gh,
          clientId: 'sshca-cli',
          rules: [
            {
              name: 'no-verified',
              match: {email: {domain: 'example.com'}},
              certificate: {principals: ['${email.local}'], ttl: '1h'},
            },
            {
              name: 'chosen',
              match: {email_verified: true, email: {domain: 'corp.example'}},
              certificate: {principals: ['${preferred_username}', 'root'], ttl: '1h'},
            },
            {
              name: 'lossy',
              match: {email_verified: true, email: {domain: 'lossy.example'}},
              certificate: {principals: ['${email.local|step}'], ttl: '1h'},
            },
          ],
        },
        {
          name: 'gha',
          type: 'oidc',
          issuer: 'https://token.actions.githubusercontent.com',
          audience: 'sshca',
          rules: [{name: 'any-repo', match: {ref: 'refs/heads/main'}, certificate: {principals: ['root'], ttl: '5m'}}],
        },
      ],
    })

    it('names each risk; --strict exits 3; ca explain shows what the unpinned CI rule would grant', async () => {
      const dir = tempDir()
      const cfg = join(dir, 'ca.yaml')
      writeFileSync(cfg, JSON.stringify(risky(gh.issuer)))
      const r = await sshca(['ca', 'check-config', '--config', cfg, '--json'])
      assert.equal(r.code, 0, r.stderr)
      const warnings = JSON.parse(r.stdout).warnings as string[]
      const has = (re: RegExp) =>
        assert.ok(
          warnings.some((w) => re.test(w)),
          `no warning matching ${re}:\n${warnings.join('\n')}`,
        )
      has(/no-verified.*without email_verified: true/)
      has(/principals\[0\].*preferred_username.*the user chooses/)
      has(/principals\[1\].*reserved account "root"/)
      has(/lossy sanitizing/)
      has(/any-repo.*pins neither repository/)
      const strict = await sshca(['ca', 'check-config', '--config', cfg, '--strict', '--json'])
      assert.equal(strict.code, 3)
      assert.equal(JSON.parse(strict.stdout).error.code, 'ERR_CA_CONFIG')
      const claims = join(dir, 'claims.json')
      writeFileSync(
        claims,
        JSON.stringify({
          iss: 'https://token.actions.githubusercontent.com',
          aud: 'sshca',
          sub: 'repo:mallory/anything:ref:refs/heads/main',
          repository: 'mallory/anything',
          ref: 'refs/heads/main',
        }),
      )
      const ex = await sshca(['ca', 'explain', '--config', cfg, '--claims', claims, '--json'])
      const decision = JSON.parse(ex.stdout).decision
      assert.equal(decision.issued, true, ex.stdout)
      assert.deepEqual(decision.certificate.principals, ['root'])
    })

    it('ca serve prints the warnings at start and again on a SIGHUP reload', async () => {
      const {spawnSshca} = await import('../helpers/world.ts')
      const cfg = readFileSync(t.init.config, 'utf8')
      // a second CA process on the same directory, with a risky policy
      await writePolicy(t.init.config, risky(gh.issuer))
      const serve = spawnSshca(
        ['ca', 'serve', '--config', t.init.config, '--password-file', t.passwordFile, '--address', '127.0.0.1:0'],
        {},
      )
      try {
        await serve.waitFor(/listening on/, 60_000)
        assert.match(serve.stderr(), /warning: .*pins neither repository/)
        serve.child.kill('SIGHUP')
        await serve.waitFor(/warning \(reload\): .*pins neither repository/, 30_000)
      } finally {
        serve.child.kill('SIGTERM')
        await serve.exit()
        writeFileSync(t.init.config, cfg)
      }
    })
  })
})

/** The certificate with its signature key swapped for `caBlob` (and the old signature kept), or undefined if unparsable. */
function replaceSignatureKey(
  body: Buffer,
  cert: ReturnType<typeof parseCertificate>,
  caBlob: Buffer,
): ReturnType<typeof parseCertificate> | undefined {
  const oldKey = cert.signatureKey.blob
  const keyField = new SshWriter().string(oldKey).toBuffer()
  const at = body.lastIndexOf(keyField)
  if (at < 0) return undefined
  const swapped = Buffer.concat([
    body.subarray(0, at),
    new SshWriter().string(caBlob).toBuffer(),
    body.subarray(at + keyField.length),
    new SshWriter().string(cert.signature).toBuffer(),
  ])
  try {
    return parseCertificate(swapped)
  } catch {
    return undefined
  }
}
