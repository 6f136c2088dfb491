/**
 * step-ca's routes on sshca's CA, over real HTTPS: SSHPOP renew/rekey/revoke in step's shape and the
 * attacks on them, step's X.509 identity and the mutual TLS that reads the host inventory with it,
 * /ssh/config, /ssh/check-host, /ssh/bastion, /version, paged /provisioners, and /sign's 501 for a
 * CSR. The step CLI itself drives these routes in test/interop (npm run test:interop).
 */
import assert from 'node:assert/strict'
import {createPrivateKey, randomUUID, webcrypto, X509Certificate, type KeyObject} from 'node:crypto'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import {SignJWT} from 'jose'
import {Agent, request} from 'undici'
import {createIntermediate, createRoot, createTlsCert} from '../../src/ca/keys/pki.ts'
import {loadMaterial} from '../../src/ca/keys/material.ts'
import {revoke} from '../../src/ca/admin.ts'
import {resumeIssuance, stopIssuance} from '../../src/ca/safety.ts'
import {issue, randomSerial} from '../../src/ca/authority/sign.ts'
import {mintEnrollmentToken} from '../../src/ca/provisioner/enrollment.ts'
import {
  caIssuer,
  ENROLLMENT_AUDIENCE,
  ENROLLMENT_TYP,
  mintSshpopToken,
  mintSshpopTokenWith,
  SSHPOP_PROVISIONER,
  type SshpopAction,
} from '../../src/protocol/tokens.ts'
import {parseCertificate, signCertificate, type Certificate} from '../../src/ssh/cert.ts'
import {parseKrl} from '../../src/ssh/krl.ts'
import {PublicKey} from '../../src/ssh/keys.ts'
import {generatePrivateKey, type PrivateKey} from '../../src/ssh/private-key.ts'
import {SshWriter} from '../../src/ssh/wire.ts'
import {PASSWORD, startTestCa, type TestCa} from '../helpers/ca.ts'
import {neutralKeyBlob, neutralSshSignature, smallOrderEncodings} from '../helpers/ed25519.ts'
import {hugeExponentRsaKey, roughModulus, rsaBlob} from '../helpers/forge.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {run, waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'

const now = () => Math.floor(Date.now() / 1000)
const b64 = (k: PrivateKey) => k.publicKey.blob.toString('base64')
const crtOf = (res: {json: unknown}) => parseCertificate(Buffer.from((res.json as {crt: string}).crt, 'base64'))

/** A CSR for a fresh ECDSA P-256 key, as step's identity request; `corrupt` breaks its signature. */
async function identityCsr(corrupt = false): Promise<{pem: string; key: KeyObject}> {
  const alg = {name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256'} as const
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=alice@example.com',
    keys,
    signingAlgorithm: alg,
  })
  const der = Buffer.from(csr.rawData)
  if (corrupt) der[der.length - 5]! ^= 0xff
  const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey))
  return {pem, key: createPrivateKey({key: pkcs8, format: 'der', type: 'pkcs8'})}
}

describe("step's routes on sshca's CA", function () {
  this.timeout(120_000)
  let gh: GithubIssuer
  let t: TestCa

  before(async () => {
    gh = await startGithubIssuer('sshca-people')
    t = await startTestCa({
      provisioners: [
        {
          name: 'people',
          type: 'oidc',
          issuer: gh.issuer,
          audience: 'sshca-people',
          rules: [
            {
              name: 'staff',
              match: {email_verified: true, email: {domain: 'example.com'}},
              certificate: {principals: ['${email.local}'], ttl: '1h', keyId: '${email}'},
            },
          ],
        },
        ...Array.from({length: 3}, (_, i) => ({
          name: `extra-${i}`,
          type: 'oidc',
          issuer: gh.issuer,
          audience: `extra-${i}`,
          rules: [],
        })),
      ],
      ssh: {hostPattern: '*.example.test'},
      limits: {rate: false},
      // step's X.509 identity over mutual TLS (/ssh/hosts): asked for only when ca.yaml says so
      tls: {clientCertificates: 'request'},
    })
  })
  after(async () => {
    await t?.stop()
    await gh?.stop()
  })

  const post = (path: string, body: unknown, headers?: Record<string, string>) => t.call('POST', path, body, headers)
  const people = (login = 'alice') =>
    gh.mint({aud: 'sshca-people', email: `${login}@example.com`, email_verified: true, sub: login})
  const denied = (requestId: unknown) =>
    t.audit().find((l) => l.request_id === requestId && l.event !== 'certificate_issued')
  const sshpop = (
    key: PrivateKey,
    cert: Certificate,
    action: SshpopAction,
    over: {caUrl?: string; provisioner?: string; newKey?: string} = {},
  ) =>
    mintSshpopToken(key.keyObject, cert, {
      caUrl: over.caUrl ?? t.url,
      action,
      provisioner: over.provisioner ?? SSHPOP_PROVISIONER,
      ...(over.newKey ? {newKey: over.newKey} : {}),
      rootFingerprint: t.init.rootFingerprint,
      now: now(),
    })

  async function enrol(host: string): Promise<{key: PrivateKey; cert: Certificate}> {
    const key = generatePrivateKey('ed25519')
    const {token} = await mintEnrollmentToken(t.ca.runtime.material.enrollmentKey, {
      rootFingerprint: t.init.rootFingerprint,
      hostname: host,
      ttlSeconds: 600,
      now: now(),
    })
    const res = await post('/ssh/sign', {publicKey: b64(key), ott: token, certType: 'host'})
    assert.equal(res.status, 201, res.text)
    return {key, cert: crtOf(res)}
  }

  async function userCert(
    extra: Record<string, unknown> = {},
  ): Promise<{key: PrivateKey; cert: Certificate; res: Awaited<ReturnType<typeof post>>}> {
    const key = generatePrivateKey('ed25519')
    const res = await post('/ssh/sign', {publicKey: b64(key), ott: await people(), certType: 'user', ...extra})
    assert.equal(res.status, 201, res.text)
    return {key, cert: crtOf(res), res}
  }

  describe('an RSA subject key with a huge public exponent (each proof verified with it would cost ~40× the CPU)', () => {
    let huge: PublicKey
    before(() => {
      huge = hugeExponentRsaKey(3072, 3000)
    })
    const refused = (res: Awaited<ReturnType<typeof post>>) => {
      assert.equal(res.status, 400, res.text)
      const d = denied((res.json as {request_id: string}).request_id)!
      assert.equal(d.reason, 'bad_request')
      assert.equal(d.event, 'certificate_denied')
      assert.match((res.json as {message: string}).message, /exponent/)
    }

    it('/ssh/sign for a user: 400, no certificate', async () => {
      refused(await post('/ssh/sign', {publicKey: huge.blob.toString('base64'), ott: await people(), certType: 'user'}))
    })

    it('/ssh/sign for a host (enrollment): 400, and the enrollment token is not spent', async () => {
      const {token} = await mintEnrollmentToken(t.ca.runtime.material.enrollmentKey, {
        rootFingerprint: t.init.rootFingerprint,
        hostname: 'huge-e.example.test',
        ttlSeconds: 600,
        now: now(),
      })
      refused(await post('/ssh/sign', {publicKey: huge.blob.toString('base64'), ott: token, certType: 'host'}))
      const key = generatePrivateKey('ed25519')
      assert.equal((await post('/ssh/sign', {publicKey: b64(key), ott: token, certType: 'host'})).status, 201)
    })

    it('/ssh/rekey to such a key: 400, the host keeps its certificate', async () => {
      const h = await enrol('huge-rekey.example.test')
      refused(
        await post('/ssh/rekey', {ott: await sshpop(h.key, h.cert, 'rekey'), publicKey: huge.blob.toString('base64')}),
      )
      assert.equal((await post('/ssh/renew', {ott: await sshpop(h.key, h.cert, 'renew')})).status, 201)
    })
  })

  describe('keys anyone can sign with (row 65): the Ed25519 neutral element and the other points of small order, RSA moduli anyone can factor', () => {
    const blob = (encoded: Buffer) =>
      new SshWriter().string('ssh-ed25519').string(encoded).toBuffer().toString('base64')
    let unsafe: string[]
    before(() => {
      const q = roughModulus(1537)
      unsafe = [
        ...smallOrderEncodings().map(blob),
        rsaBlob(65537n, 3n * roughModulus(3071)).toString('base64'),
        rsaBlob(65537n, q * q).toString('base64'),
      ]
    })
    const refused = (res: Awaited<ReturnType<typeof post>>, status = 400) => {
      assert.equal(res.status, status, res.text)
      const d = denied((res.json as {request_id: string}).request_id)!
      assert.deepEqual([d.event, d.reason], ['certificate_denied', 'key_unsafe'])
    }

    it('OpenSSH takes (R, s) = (B, 1) as a valid signature of anything by the neutral element: why the CA must never certify it', async () => {
      const dir = tempDir('sshca-neutral-')
      const key = neutralKeyBlob()
      const sshsig = new SshWriter()
        .raw(Buffer.from('SSHSIG'))
        .u32(1)
        .string(key)
        .string('file')
        .string('')
        .string('sha512')
        .string(neutralSshSignature())
        .toBuffer()
      const pem = `-----BEGIN SSH SIGNATURE-----\n${sshsig.toString('base64').replace(/.{70}/g, '$&\n')}\n-----END SSH SIGNATURE-----\n`
      writeFileSync(join(dir, 'msg.sig'), pem)
      writeFileSync(join(dir, 'allowed'), `anyone ssh-ed25519 ${key.toString('base64')}\n`)
      const r = await run(
        'ssh-keygen',
        ['-Y', 'verify', '-f', join(dir, 'allowed'), '-I', 'anyone', '-n', 'file', '-s', join(dir, 'msg.sig')],
        {input: 'a message its key never signed'},
      )
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /Good "file" signature for anyone/)
    })

    it('/ssh/sign for a user: 400 for each, and the token is not spent', async () => {
      const ott = await people()
      for (const publicKey of unsafe) refused(await post('/ssh/sign', {publicKey, ott, certType: 'user'}))
      const key = generatePrivateKey('ed25519')
      assert.equal((await post('/ssh/sign', {publicKey: b64(key), ott, certType: 'user'})).status, 201)
    })

    it('/ssh/sign for a host (enrollment): 400 for each, and the enrollment token is not spent', async () => {
      const {token} = await mintEnrollmentToken(t.ca.runtime.material.enrollmentKey, {
        rootFingerprint: t.init.rootFingerprint,
        hostname: 'neutral.example.test',
        ttlSeconds: 600,
        now: now(),
      })
      for (const publicKey of unsafe) refused(await post('/ssh/sign', {publicKey, ott: token, certType: 'host'}))
      const key = generatePrivateKey('ed25519')
      assert.equal((await post('/ssh/sign', {publicKey: b64(key), ott: token, certType: 'host'})).status, 201)
    })

    it('/ssh/rekey onto the neutral element: 400, the host keeps its certificate', async () => {
      const h = await enrol('neutral-rekey.example.test')
      refused(await post('/ssh/rekey', {ott: await sshpop(h.key, h.cert, 'rekey'), publicKey: unsafe[0]}))
      assert.equal((await post('/ssh/renew', {ott: await sshpop(h.key, h.cert, 'renew')})).status, 201)
    })

    it("a host certificate for the neutral element issued before the fix: SSHPOP proofs forged by anyone who saw it (renew, rekey onto a thief's key, revoke) are refused, 403", async () => {
      const rt = t.ca.runtime
      const old = await signCertificate(
        {
          type: 'host',
          publicKey: PublicKey.fromBlob(neutralKeyBlob()),
          serial: randomSerial(),
          keyId: 'host:neutral-old.example.test',
          principals: ['neutral-old.example.test'],
          validAfter: BigInt(now() - 60),
          validBefore: BigInt(now() + 86400),
        },
        rt.material.hostCa.active,
      )
      // as the CA issued it before it refused such keys
      await issue(
        rt,
        old,
        {id: `enroll#${randomUUID()}`, expiresAt: now() + 600, issuedAt: now()},
        {request_id: 'x'},
        {
          kind: 'enrol',
          keyBound: false,
        },
      )
      const thief = generatePrivateKey('ed25519')
      const forged = (action: SshpopAction, newKey?: string) =>
        mintSshpopTokenWith(async () => neutralSshSignature(), old, {
          caUrl: t.url,
          action,
          provisioner: SSHPOP_PROVISIONER,
          rootFingerprint: t.init.rootFingerprint,
          now: now(),
          ...(newKey ? {newKey} : {}),
        })
      refused(await post('/ssh/renew', {ott: await forged('renew')}), 403)
      refused(
        await post('/ssh/rekey', {ott: await forged('rekey', thief.publicKey.fingerprint()), publicKey: b64(thief)}),
        403,
      )
      const revoke = await post('/ssh/revoke', {
        ott: await forged('revoke'),
        serial: old.serial.toString(),
        reason: 'x',
      })
      assert.equal(revoke.status, 403, revoke.text)
      assert.equal(denied((revoke.json as {request_id: string}).request_id)!.reason, 'key_unsafe')
      assert.deepEqual(await rt.store.certificates({keyFingerprint: thief.publicKey.fingerprint(), limit: 5}), [])
    })
  })

  it('an enrollment token that names no host (row 66): 401, no certificate (OpenSSH would take one without principals for every host name)', async () => {
    const key = generatePrivateKey('ed25519')
    const token = await new SignJWT({})
      .setProtectedHeader({alg: 'EdDSA', typ: ENROLLMENT_TYP})
      .setIssuer(caIssuer(t.init.rootFingerprint))
      .setAudience(ENROLLMENT_AUDIENCE)
      .setSubject('nameless.example.test')
      .setJti(randomUUID())
      .setIssuedAt(now())
      .setExpirationTime(now() + 600)
      .sign(t.ca.runtime.material.enrollmentKey)
    const res = await post('/ssh/sign', {publicKey: b64(key), ott: token, certType: 'host'})
    assert.equal(res.status, 401, res.text)
    assert.equal(denied((res.json as {request_id: string}).request_id)!.reason, 'token_invalid')
    assert.deepEqual(await t.ca.runtime.store.certificates({keyFingerprint: key.publicKey.fingerprint(), limit: 5}), [])
  })

  describe('read routes', () => {
    it("GET /version: step's shape, and client authentication is asked for", async () => {
      const r = await t.call('GET', '/1.0/version')
      assert.equal(r.status, 200)
      assert.match((r.json as {version: string}).version, /^sshca\/\d+\.\d+\.\d+/)
      assert.equal((r.json as {requireClientAuthentication: boolean}).requireClientAuthentication, true)
    })

    it('GET /provisioners pages like step-ca (cursor, limit, nextCursor ""), with the SSHPOP provisioner last', async () => {
      const all = (await t.call('GET', '/provisioners')).json as {
        provisioners: {name: string; type: string}[]
        nextCursor: string
      }
      assert.deepEqual(
        all.provisioners.map((p) => p.name),
        ['people', 'extra-0', 'extra-1', 'extra-2', 'sshpop'],
      )
      assert.equal(all.provisioners.at(-1)!.type, 'SSHPOP')
      assert.equal(all.nextCursor, '')
      const seen: string[] = []
      let cursor = ''
      for (let i = 0; i < 10; i++) {
        const page = (await t.call('GET', `/provisioners?limit=2${cursor ? `&cursor=${cursor}` : ''}`))
          .json as typeof all
        seen.push(...page.provisioners.map((p) => p.name))
        cursor = page.nextCursor
        if (!cursor) break
      }
      assert.deepEqual(
        seen,
        all.provisioners.map((p) => p.name),
      )
      // a cursor that is not ours starts over rather than failing
      assert.equal(((await t.call('GET', '/provisioners?cursor=zz')).json as typeof all).provisioners.length, 5)
    })

    it('POST /ssh/bastion: none configured', async () => {
      const r = await post('/ssh/bastion', {user: 'alice', hostname: 'web1.example.test'})
      assert.equal(r.status, 200)
      assert.deepEqual(r.json, {hostname: 'web1.example.test'})
    })
  })

  describe('POST /ssh/renew, /ssh/rekey, /ssh/revoke with SSHPOP tokens', () => {
    it("renew takes step's shape: iss = the SSHPOP provisioner, aud = <ca>/1.0/ssh/renew#sshpop/sshpop, sub = the serial", async () => {
      const h = await enrol('renew1.example.test')
      const r = await post('/ssh/renew', {ott: await sshpop(h.key, h.cert, 'renew')})
      assert.equal(r.status, 201, r.text)
      assert.deepEqual(crtOf(r).principals, ['renew1.example.test'])
      // the CA's port does not matter (a balancer may change it), its name does; /ssh/renew without /1.0 too
      const h2 = await enrol('renew2.example.test')
      const token = await new SignJWT({sha: t.init.rootFingerprint})
        .setProtectedHeader({alg: 'EdDSA', typ: 'JWT', sshpop: h2.cert.blob.toString('base64')})
        .setIssuer('sshpop')
        .setSubject(h2.cert.serial.toString())
        .setAudience('https://127.0.0.1:1/ssh/renew#sshpop/sshpop')
        .setJti('j-port')
        .setIssuedAt(now())
        .setNotBefore(now())
        .setExpirationTime(now() + 300)
        .sign(h2.key.keyObject)
      assert.equal((await post('/ssh/renew', {ott: token})).status, 201)
    })

    it('refuses a token for another CA, another action, another provisioner, another serial or root, or too long a life', async () => {
      const h = await enrol('attack.example.test')
      const attempt = async (token: string, why: RegExp) => {
        const r = await post('/ssh/renew', {ott: token})
        assert.equal(r.status, 401, `${why}: ${r.text}`)
        const line = denied((r.json as {request_id: string}).request_id)!
        assert.equal(line.reason, 'proof_invalid')
        assert.match(String(line.detail), why)
      }
      await attempt(await sshpop(h.key, h.cert, 'renew', {caUrl: 'https://ca.elsewhere.example'}), /audience/)
      await attempt(await sshpop(h.key, h.cert, 'rekey'), /audience/)
      await attempt(await sshpop(h.key, h.cert, 'renew', {provisioner: 'other'}), /iss|audience/)
      const forge = (claims: {sub?: string; sha?: string; exp?: number}) =>
        new SignJWT({sha: claims.sha ?? t.init.rootFingerprint})
          .setProtectedHeader({alg: 'EdDSA', typ: 'JWT', sshpop: h.cert.blob.toString('base64')})
          .setIssuer('sshpop')
          .setSubject(claims.sub ?? h.cert.serial.toString())
          .setAudience(`${t.url}/1.0/ssh/renew#sshpop/sshpop`)
          .setJti(`j-${Math.random()}`)
          .setIssuedAt(now())
          .setNotBefore(now())
          .setExpirationTime(claims.exp ?? now() + 300)
          .sign(h.key.keyObject)
      await attempt(await forge({sub: '1'}), /subject must be the serial/)
      await attempt(await forge({sha: 'ab'.repeat(32)}), /another root/)
      await attempt(await forge({exp: now() + 3600}), /5 minutes|too far/)
      // signed by another key than the certified one
      await attempt(
        await mintSshpopToken(generatePrivateKey('ed25519').keyObject, h.cert, {
          caUrl: t.url,
          action: 'renew',
          provisioner: 'sshpop',
          rootFingerprint: t.init.rootFingerprint,
          now: now(),
        }),
        /signature/,
      )
    })

    it('a user certificate is renewed or rekeyed by no one (403): people sign in again', async () => {
      const u = await userCert()
      for (const action of ['renew', 'rekey'] as const) {
        const r = await post(`/ssh/${action}`, {
          ott: await sshpop(u.key, u.cert, action),
          ...(action === 'rekey' ? {publicKey: b64(generatePrivateKey('ed25519'))} : {}),
        })
        assert.equal(r.status, 403, r.text)
        assert.equal(denied((r.json as {request_id: string}).request_id)!.reason, 'cert_type_not_allowed')
      }
    })

    it("rekey: the same names for a new key, once; the old key's lineage ends; the token cannot be replayed", async () => {
      const h = await enrol('rekey.example.test')
      const fresh = generatePrivateKey('ed25519')
      const ott = await sshpop(h.key, h.cert, 'rekey')
      const r = await post('/ssh/rekey', {ott, publicKey: b64(fresh)})
      assert.equal(r.status, 201, r.text)
      const c = crtOf(r)
      assert.ok(c.publicKey.equals(fresh.publicKey))
      assert.deepEqual(c.principals, ['rekey.example.test'])
      assert.equal(c.keyId, h.cert.keyId)
      // replayed: the old certificate is no longer its lineage's newest (checked before the token is spent)
      const replay = await post('/ssh/rekey', {ott, publicKey: b64(generatePrivateKey('ed25519'))})
      assert.equal(replay.status, 403)
      assert.equal(denied((replay.json as {request_id: string}).request_id)!.reason, 'superseded')
      // the old certificate can no longer be renewed or rekeyed; the new one can
      const old = await post('/ssh/renew', {ott: await sshpop(h.key, h.cert, 'renew')})
      assert.equal(old.status, 403)
      assert.equal(denied((old.json as {request_id: string}).request_id)!.reason, 'superseded')
      assert.equal((await post('/ssh/renew', {ott: await sshpop(fresh, c, 'renew')})).status, 201)
      // rekeying to the same key is a renewal, said so
      const h2 = await enrol('rekey2.example.test')
      const same = await post('/ssh/rekey', {ott: await sshpop(h2.key, h2.cert, 'rekey'), publicKey: b64(h2.key)})
      assert.equal(same.status, 400)
      assert.match((same.json as {message: string}).message, /renew instead/)
    })

    it('a rekey token that names its new key (cnf.kid, as sshca writes it) rekeys to that key only: taken in flight, it buys the thief nothing', async () => {
      const h = await enrol('bound-rekey.example.test')
      const fresh = generatePrivateKey('ed25519')
      const ott = await sshpop(h.key, h.cert, 'rekey', {newKey: fresh.publicKey.fingerprint()})
      const thief = await post('/ssh/rekey', {ott, publicKey: b64(generatePrivateKey('ed25519'))})
      assert.equal(thief.status, 403, thief.text)
      assert.equal(denied((thief.json as {request_id: string}).request_id)!.reason, 'key_not_bound')
      // the refusal spent nothing: the host's own request with the same token goes through
      const r = await post('/ssh/rekey', {ott, publicKey: b64(fresh)})
      assert.equal(r.status, 201, r.text)
      assert.ok(crtOf(r).publicKey.equals(fresh.publicKey))
      // a binding that names no key refuses, never unbinds
      const h2 = await enrol('bad-binding.example.test')
      const bad = await sshpop(h2.key, h2.cert, 'rekey', {newKey: 'not a fingerprint'})
      const refused = await post('/ssh/rekey', {ott: bad, publicKey: b64(generatePrivateKey('ed25519'))})
      assert.equal(refused.status, 401, refused.text)
      assert.equal(denied((refused.json as {request_id: string}).request_id)!.reason, 'proof_invalid')
    })

    it('revoke: a certificate revokes itself (user or host), recorded and audited as ca revoke is, served in the KRL', async () => {
      const u = await userCert()
      const r = await post('/ssh/revoke', {
        serial: u.cert.serial.toString(),
        ott: await sshpop(u.key, u.cert, 'revoke'),
        reasonCode: 1,
        reason: 'key compromise',
        passive: true,
      })
      assert.equal(r.status, 200, r.text)
      assert.deepEqual(r.json, {status: 'ok'})
      const line = t
        .audit()
        .find((l) => l.event === 'certificate_revoked' && l.request_id === r.headers['x-request-id'])!
      assert.equal(line.by, 'sshpop')
      assert.equal(line.reason, 'key compromise')
      assert.deepEqual(line.certificates, [u.cert.serial.toString()])
      const krl = parseKrl(
        Buffer.from(await (await request(`${t.url}/ssh/krl`, {dispatcher: t.dispatcher})).body.arrayBuffer()),
      )
      assert.ok(krl.sections.some((s) => s.serials.includes(u.cert.serial)))
      // a second revocation of it is refused, and adds nothing
      const again = await post('/ssh/revoke', {
        serial: u.cert.serial.toString(),
        ott: await sshpop(u.key, u.cert, 'revoke'),
        passive: true,
      })
      assert.equal(again.status, 403)
      const refused = denied((again.json as {request_id: string}).request_id)!
      assert.equal(refused.event, 'revocation_denied')
      assert.equal(refused.reason, 'certificate_revoked')
      assert.match(String(refused.detail), /already revoked/)
      // and a revoked host certificate renews no more
      const h = await enrol('revoke.example.test')
      assert.equal(
        (
          await post('/ssh/revoke', {
            serial: h.cert.serial.toString(),
            ott: await sshpop(h.key, h.cert, 'revoke'),
            passive: true,
          })
        ).status,
        200,
      )
      const renewed = await post('/ssh/renew', {ott: await sshpop(h.key, h.cert, 'renew')})
      assert.equal(renewed.status, 403)
      assert.equal(denied((renewed.json as {request_id: string}).request_id)!.reason, 'certificate_revoked')
    })

    it("revoke: a certificate cannot revoke another (step-ca revokes the body's serial: sshca refuses)", async () => {
      const mine = await userCert()
      const victim = await userCert()
      const before = t.audit().filter((l) => l.event === 'certificate_revoked').length
      const r = await post('/ssh/revoke', {
        serial: victim.cert.serial.toString(),
        ott: await sshpop(mine.key, mine.cert, 'revoke'),
        passive: true,
      })
      assert.equal(r.status, 403, r.text)
      assert.equal(denied((r.json as {request_id: string}).request_id)!.reason, 'serial_mismatch')
      assert.equal(t.audit().filter((l) => l.event === 'certificate_revoked').length, before)
      // a renew token does not revoke
      const wrongAction = await post('/ssh/revoke', {
        serial: mine.cert.serial.toString(),
        ott: await sshpop(mine.key, mine.cert, 'renew'),
        passive: true,
      })
      assert.equal(wrongAction.status, 401)
      // only passive revocation, as step-ca
      const active = await post('/ssh/revoke', {
        serial: mine.cert.serial.toString(),
        ott: await sshpop(mine.key, mine.cert, 'revoke'),
        passive: false,
      })
      assert.equal(active.status, 501)
    })
  })

  describe("step's X.509 identity and the host inventory", () => {
    const mtls = (cert: string, key: KeyObject) =>
      new Agent({connect: {ca: t.rootPem, cert, key: key.export({type: 'pkcs8', format: 'pem'}) as string}})
    /** GET /ssh/hosts with a client certificate; `message` is the audited detail of a refusal. */
    const hostsWith = async (dispatcher: Agent) => {
      const res = await request(`${t.url}/ssh/hosts`, {dispatcher})
      const body = (await res.body.json()) as {hosts?: {hostname: string}[]; request_id?: string}
      await dispatcher.close()
      const line = res.statusCode === 200 ? undefined : denied(body.request_id)
      if (line) assert.equal(line.event, 'access_denied')
      else {
        // an answered read names the identity that read
        const granted = t.audit().find((l) => l.request_id === res.headers['x-request-id'])
        assert.equal(granted?.event, 'access_granted')
        assert.equal(typeof granted!.subject, 'string')
        assert.equal(granted!.hosts, body.hosts?.length)
      }
      return {status: res.statusCode, body: {...body, message: line?.detail}}
    }

    it('/ssh/sign with an identityCSR returns a client certificate bound to the SSH certificate', async () => {
      const csr = await identityCsr()
      const u = await userCert({identityCSR: csr.pem})
      const [leafPem, issuerPem] = (u.res.json as {identityCrt: string[]}).identityCrt
      const leaf = new X509Certificate(leafPem!)
      assert.equal(issuerPem, readIntermediate())
      assert.ok(leaf.checkIssued(new X509Certificate(issuerPem!)))
      assert.equal(BigInt(`0x${leaf.serialNumber}`), u.cert.serial)
      assert.equal(Date.parse(leaf.validTo) / 1000, Number(u.cert.validBefore))
      assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.2'])
      assert.equal(leaf.subject, 'CN=alice@example.com')
      assert.equal(leaf.subjectAltName, undefined)
      assert.ok(!leaf.ca)
    })

    it('a bad identityCSR is a 400 before the token is verified: no certificate, the token still good', async () => {
      const bad = await identityCsr(true)
      const key = generatePrivateKey('ed25519')
      const ott = await people()
      const r = await post('/ssh/sign', {publicKey: b64(key), ott, identityCSR: bad.pem})
      assert.equal(r.status, 400)
      assert.match((r.json as {message: string}).message, /identityCSR/)
      assert.equal((await post('/ssh/sign', {publicKey: b64(key), ott})).status, 201)
    })

    it("GET /ssh/hosts and /ssh/check-host: a person's identity (mTLS) or Bearer token may read; nobody else", async () => {
      await enrol('web1.example.test')
      const csr = await identityCsr()
      const u = await userCert({identityCSR: csr.pem})
      const [leafPem, issuerPem] = (u.res.json as {identityCrt: string[]}).identityCrt
      const ok = await hostsWith(mtls(leafPem! + issuerPem!, csr.key))
      assert.equal(ok.status, 200, JSON.stringify(ok.body))
      const web1 = ok.body.hosts!.find((h) => h.hostname === 'web1.example.test') as Record<string, unknown> | undefined
      assert.ok(web1)
      assert.match(String(web1.hid), /^SHA256:/)
      assert.deepEqual(web1.principals, ['web1.example.test'])
      // check-host: with the identity, and with sshca's Bearer form
      const dispatcher = mtls(leafPem! + issuerPem!, csr.key)
      const ch = await request(`${t.url}/ssh/check-host`, {
        method: 'POST',
        dispatcher,
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({type: 'host', principal: 'WEB1.example.test'}),
      })
      assert.deepEqual(await ch.body.json(), {exists: true})
      await dispatcher.close()
      const bearer = await post(
        '/ssh/check-host',
        {type: 'host', principal: 'nope.example.test'},
        {authorization: `Bearer ${await people()}`},
      )
      assert.deepEqual(bearer.json, {exists: false})
      // anonymous: 401, the answer that makes step sign in and ask again
      assert.equal((await t.call('GET', '/ssh/hosts')).status, 401)
      assert.equal((await post('/ssh/check-host', {type: 'host', principal: 'web1.example.test'})).status, 401)
      // once its SSH certificate is revoked, the identity reads nothing
      assert.equal(
        (
          await post('/ssh/revoke', {
            serial: u.cert.serial.toString(),
            ott: await sshpop(u.key, u.cert, 'revoke'),
            passive: true,
          })
        ).status,
        200,
      )
      const after = await hostsWith(mtls(leafPem! + issuerPem!, csr.key))
      assert.equal(after.status, 401)
      assert.match(String(after.body.message), /revoked/)
    })

    it('a Bearer token reads only when the CA would sign for it: not with a revoked key ID, nor when its rule renders no principal', async () => {
      const hosts = async (token: string) => {
        const r = await t.call('GET', '/ssh/hosts', undefined, {authorization: `Bearer ${token}`})
        return {
          status: r.status,
          line: r.status === 200 ? undefined : denied((r.json as {request_id: string}).request_id),
        }
      }
      const read = await t.call('GET', '/ssh/hosts', undefined, {authorization: `Bearer ${await people('carol')}`})
      assert.equal(read.status, 200)
      // an answered read is audited too: who enumerated the servers, with what
      const granted = t.audit().find((l) => l.request_id === read.headers['x-request-id'])
      assert.equal(granted?.event, 'access_granted')
      assert.equal(granted!.subject, 'carol')
      assert.equal(granted!.route, '/ssh/hosts')
      assert.equal(granted!.hosts, (read.json as {hosts: unknown[]}).hosts.length)
      assert.equal(typeof (granted!.token as {sha256?: unknown} | undefined)?.sha256, 'string')
      const asked = await post(
        '/ssh/check-host',
        {type: 'host', principal: 'web1.example.test'},
        {authorization: `Bearer ${await people('carol')}`},
      )
      assert.equal(asked.status, 200)
      const askedLine = t.audit().find((l) => l.request_id === asked.headers['x-request-id'])
      assert.deepEqual(
        [askedLine?.event, askedLine?.subject, askedLine?.principal, askedLine?.exists],
        ['access_granted', 'carol', 'web1.example.test', (asked.json as {exists: boolean}).exists],
      )
      await revoke({configPath: t.init.config, keyId: 'carol@example.com', reason: 'left the company'})
      const revoked = await hosts(await people('carol'))
      assert.equal(revoked.status, 403)
      assert.deepEqual([revoked.line!.event, revoked.line!.reason], ['access_denied', 'revoked'])
      assert.match(String(revoked.line!.detail), /key ID "carol@example\.com" is revoked/)
      const checked = await post(
        '/ssh/check-host',
        {type: 'host', principal: 'web1.example.test'},
        {authorization: `Bearer ${await people('carol')}`},
      )
      assert.equal(checked.status, 403)
      // "root" is reserved: the CA would not sign the principal ${email.local} renders, so no read either
      const root = await hosts(await people('root'))
      assert.equal(root.status, 403)
      assert.deepEqual([root.line!.event, root.line!.reason], ['access_denied', 'principal_reserved'])
      assert.equal((await hosts(await people('dave'))).status, 200, 'others still read')
      // the emergency stop: a token reads nothing either while it holds (a compromised IdP's tokens list no hosts)
      await stopIssuance({configPath: t.init.config, reason: 'identity provider compromised', settleMs: 0})
      try {
        await waitFor(
          'the CA to apply the stop',
          async () => (await hosts(await people('dave'))).status === 503,
          20_000,
        )
        const stopped = await hosts(await people('dave'))
        assert.equal(stopped.line!.event, 'access_denied')
        // the store's stop, or ca.yaml's `disabled: true` that stop-issuance writes too: whichever the CA read first
        assert.match(String(stopped.line!.reason), /^(issuance_stopped|policy_disabled)$/)
        assert.equal(stopped.line!.subject, 'dave', 'verified first: the audit line says who tried')
        // no credentials: 503 at once, not a 401 that sends the caller to a sign-in the stop refuses too
        assert.equal((await t.call('GET', '/ssh/hosts')).status, 503)
        // nor a token the CA refuses (which would send the caller to sign in again)
        const refused = await t.call('GET', '/ssh/hosts', undefined, {authorization: 'Bearer not.a.jwt'})
        assert.equal(refused.status, 503)
        const line = denied((refused.json as {request_id: string}).request_id)!
        assert.equal(line.token_refusal, 'token_invalid', 'the audit line keeps why the token was refused')
      } finally {
        await resumeIssuance({configPath: t.init.config, reason: 'test over'})
        await waitFor('the CA to resume', async () => (await hosts(await people('dave'))).status === 200, 20_000)
      }
    })

    it("client certificates that are not a person's current identity are refused: another CA's, the CA's own TLS certificate, a host's", async () => {
      // another CA's client certificate
      const root = await createRoot('Elsewhere')
      const mid = await createIntermediate('Elsewhere', root)
      const foreign = await createTlsCert(['127.0.0.1'], mid)
      const r1 = await hostsWith(mtls(foreign.pem + mid.pem, foreign.key))
      assert.equal(r1.status, 401)
      assert.match(String(r1.body.message), /not issued by this CA/)
      // the CA's own TLS server certificate (issued by the same intermediate): not a client certificate
      const m = await loadMaterial(t.init.dir, PASSWORD, ['127.0.0.1'])
      const r2 = await hostsWith(mtls(m.tls.certPem, createPrivateKey(m.tls.keyPem)))
      assert.equal(r2.status, 401)
      assert.match(String(r2.body.message), /not a client certificate/)
      // a host's identity (from a host enrollment with an identityCSR) does not read the inventory
      const key = generatePrivateKey('ed25519')
      const {token} = await mintEnrollmentToken(t.ca.runtime.material.enrollmentKey, {
        rootFingerprint: t.init.rootFingerprint,
        hostname: 'id.example.test',
        ttlSeconds: 600,
        now: now(),
      })
      const csr = await identityCsr()
      const h = await post('/ssh/sign', {publicKey: b64(key), ott: token, certType: 'host', identityCSR: csr.pem})
      assert.equal(h.status, 201, h.text)
      const [leaf, issuer] = (h.json as {identityCrt: string[]}).identityCrt
      const r3 = await hostsWith(mtls(leaf! + issuer!, csr.key))
      assert.equal(r3.status, 401)
      assert.match(String(r3.body.message), /not bound to a user certificate/)
    })
  })

  describe('POST /ssh/config', () => {
    const content = (r: {json: unknown}, name: string, kind = 'userTemplates') =>
      Buffer.from(
        (r.json as Record<string, {name: string; content: string}[]>)[kind]!.find((x) => x.name === name)!.content,
        'base64',
      ).toString('utf8')

    it("user templates as step-ca renders its defaults, known_hosts for the CA's host pattern", async () => {
      const r = await post('/ssh/config', {
        type: 'user',
        data: {StepPath: '/home/a/.step', User: 'alice', StepSSHTemplateVersion: 'v2'},
      })
      assert.equal(r.status, 200, r.text)
      assert.equal(content(r, 'config.tpl'), 'Host *\n\tInclude "/home/a/.step/ssh/includes"')
      assert.equal(content(r, 'step_includes.tpl'), 'Include "/home/a/.step/ssh/config"')
      assert.equal(
        content(r, 'step_config.tpl'),
        'Match exec "step ssh check-host %h"\n\tUser alice\n\tUserKnownHostsFile "/home/a/.step/ssh/known_hosts"\n\tProxyCommand step ssh proxycommand %r %h %p\n',
      )
      assert.equal(
        content(r, 'known_hosts.tpl'),
        `@cert-authority *.example.test ${t.ca.runtime.material.hostCa.active.publicKey.type} ${t.ca.runtime.material.hostCa.active.publicKey.blob.toString('base64')}\n`,
      )
    })

    it("host templates need Certificate and Key (step-ca's message); values that would break a line are refused", async () => {
      const missing = await post('/ssh/config/host', {data: {Key: 'k'}})
      assert.equal(missing.status, 400)
      assert.match(
        (missing.json as {message: string}).message,
        /requires Certificate, please use `--set <key=value>` flag/,
      )
      const ok = await post('/ssh/config', {
        type: 'host',
        data: {Certificate: 'ssh_host_ed25519_key-cert.pub', Key: 'ssh_host_ed25519_key'},
      })
      assert.equal(
        content(ok, 'sshd_config.tpl', 'hostTemplates'),
        'Match all\n\tTrustedUserCAKeys /etc/ssh/ca.pub\n\tHostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub\n\tHostKey /etc/ssh/ssh_host_ed25519_key',
      )
      for (const data of [{StepPath: '/x\n\tProxyCommand evil'}, {User: 'a"b'}, {StepPath: 5}])
        assert.equal((await post('/ssh/config', {type: 'user', data})).status, 400, JSON.stringify(data))
      assert.equal(
        (await post('/ssh/config', {type: 'host', data: {Certificate: '../../root/x', Key: 'k'}})).status,
        400,
      )
      assert.equal((await post('/ssh/config/nope', {})).status, 400)
    })
  })

  describe('POST /sign', () => {
    it("step's X.509 CSR gets a clear 501; sshca's own form still works", async () => {
      const csr = await identityCsr()
      const r = await post('/sign', {csr: csr.pem, ott: await people()})
      assert.equal(r.status, 501)
      assert.match((r.json as {message: string}).message, /SSH certificates only/)
      assert.equal((await post('/sign', {})).status, 400)
      const key = generatePrivateKey('ed25519')
      const ok = await post(
        '/sign',
        {public_key: key.publicKey.toLine('k')},
        {authorization: `Bearer ${await people()}`},
      )
      assert.equal(ok.status, 200, ok.text)
    })
  })

  function readIntermediate(): string {
    return t.ca.runtime.material.intermediatePem
  }
})
