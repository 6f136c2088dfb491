/**
 * The host's side of sshca in process (src/client/host/host.ts): `sshca certificate --host --sign`,
 * `sshca renew` and `sshca krl` against a scripted HTTPS CA (test/helpers/scripted-server.ts) whose
 * every answer the test chooses, into temp folders standing in for /etc/ssh. What is written (the
 * exact line or bytes, 0644), what is sent (the key, the token, the principals, the proof of
 * possession), what is refused (by code) with nothing written and no temp file left, and that the
 * connection to the CA is closed after every call, refused or not.
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {compactVerify, decodeJwt, decodeProtectedHeader} from 'jose'
import {bootstrap} from '../../../src/client/setup/bootstrap.ts'
import {
  certPathFor,
  fetchKrl,
  reloadSshd,
  reloadSshdIfOwed,
  RENEW_WHEN_LEFT,
  renewHostCert,
  signHostKey,
} from '../../../src/client/host/host.ts'
import {caIssuer, sshpopAudience} from '../../../src/protocol/tokens.ts'
import {certificateLine, parseCertificate, signCertificate, type Certificate} from '../../../src/ssh/cert.ts'
import {buildKrl} from '../../../src/ssh/krl.ts'
import {PublicKey} from '../../../src/ssh/keys.ts'
import {formatOpenSshPrivateKey, generatePrivateKey, type PrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {rejectsCode} from '../../helpers/assert.ts'
import {krlOpenSshRefuses} from '../../helpers/forge.ts'
import {json, startScriptedCa, type Answer, type ScriptedCa} from '../../helpers/scripted-server.ts'
import {snapshot} from '../../helpers/snapshot.ts'
import {tempDir} from '../../helpers/tmp.ts'

const b64 = (k: PublicKey): string => k.blob.toString('base64')
const mode = (p: string): number => statSync(p).mode & 0o777
/** A compact JWS whose claims the client may read (the CA would refuse its signature; here it answers as told). */
const unsignedJwt = (claims: Record<string, unknown>): string =>
  [{alg: 'EdDSA', typ: 'JWT'}, claims].map((p) => Buffer.from(JSON.stringify(p)).toString('base64url')).join('.') +
  '.c2ln'

/** What the scripted CA signs with: a real certificate, as the test says. */
interface Issue {
  signer: PrivateKey
  type: 'host' | 'user'
  /** The key certified: the one asked for unless told. */
  publicKey?: PublicKey
  /** Valid from and until (seconds), when not from a minute ago into 2030. */
  validity?: [bigint, bigint]
}

/** Certificates a CA with a wrong clock would return, by a clock reading `now`: refused by enrollment and renewal. */
const wrongClock = (now: () => bigint) =>
  [
    ['a certificate that has already expired', (): [bigint, bigint] => [now() - 7200n, now() - 1n]],
    ['a certificate that starts in ten minutes', (): [bigint, bigint] => [now() + 600n, now() + 7200n]],
  ] as const

describe('host certificates in process (src/client/host/host.ts)', function () {
  this.timeout(60_000)
  let ca: ScriptedCa
  let home: string
  /** Stands in for /etc/ssh. */
  let etc: string
  const hostCa = generatePrivateKey('ed25519')
  const hostCa2 = generatePrivateKey('ed25519')
  const userCa = generatePrivateKey('ed25519').publicKey
  /** How /ssh/sign and /ssh/renew answer: a certificate issued as told, or an answer as is. */
  let issue: Issue | Answer
  let provisioners: Answer
  /** The certificates the scripted CA issued, newest last. */
  let issued: Certificate[]

  async function answerWith(key: PublicKey, principals: string[]): Promise<Answer> {
    if (!('signer' in issue)) return issue
    const now = BigInt(Math.floor(Date.now() / 1000))
    const cert = await signCertificate(
      {
        type: issue.type,
        publicKey: issue.publicKey ?? key,
        serial: 4242n + BigInt(issued.length),
        keyId: 'host:web1',
        principals,
        validAfter: issue.validity?.[0] ?? now - 60n,
        validBefore: issue.validity?.[1] ?? 1_900_000_000n + BigInt(issued.length),
      },
      keySigner(issue.signer.keyObject),
    )
    issued.push(cert)
    return json({crt: cert.blob.toString('base64')}, 201)
  }

  before(async () => {
    ca = await startScriptedCa()
    const scripted = ca.server.answer
    ca.server.answer = async (path, body) => {
      if (path === '/ssh/sign') {
        const req = JSON.parse(body) as {publicKey: string; principals: string[]}
        return answerWith(PublicKey.fromBlob(Buffer.from(req.publicKey, 'base64')), req.principals)
      }
      if (path === '/ssh/renew') {
        const {ott} = JSON.parse(body) as {ott: string}
        const old = decodeProtectedHeader(ott).sshpop as string
        const cert = parseCertificate(Buffer.from(old, 'base64'))
        return answerWith(cert.publicKey, [...cert.principals])
      }
      if (path.startsWith('/provisioners')) return provisioners
      return scripted(path, body)
    }
  })
  after(async () => {
    await ca?.server.stop()
  })
  beforeEach(async () => {
    home = join(tempDir('sshca-host-home-'), 'sshca')
    etc = tempDir('sshca-etc-ssh-')
    ca.roots = json({userKey: [b64(userCa)], hostKey: [b64(hostCa.publicKey)], hostPattern: '*.example.com'})
    ca.krl = {status: 404, body: ''}
    issue = {signer: hostCa, type: 'host'}
    issued = []
    provisioners = json({
      provisioners: [
        {type: 'OIDC', name: 'people'},
        {type: 'sshpop', name: 'renewals'},
      ],
      nextCursor: '',
    })
    await bootstrap(home, {caUrl: ca.server.url, fingerprint: ca.fingerprint, context: 'demo'})
    ca.server.requests.length = 0
    ca.server.received.length = 0
  })
  // every call closes its connection to the CA, whatever happened: a mutant that forgets hangs here
  afterEach(async () => {
    await ca.server.allClosed()
  })

  const requests = () => ca.server.requests.map((r) => r.replace(/\?.*/, ''))
  const sent = (request: string) => {
    const r = ca.server.received.find((x) => x.request === request)
    assert.ok(r, `${request} was sent`)
    return JSON.parse(r.body) as Record<string, unknown>
  }

  /** A host key in `etc`: its .pub (and private key file), named as sshd's. */
  function hostKey(name = 'ssh_host_ed25519_key'): {key: PrivateKey; pub: string; file: string} {
    const key = generatePrivateKey('ed25519')
    const file = join(etc, name)
    writeFileSync(file, formatOpenSshPrivateKey(key, 'root@web1'), {mode: 0o600})
    writeFileSync(`${file}.pub`, `${key.publicKey.toLine('root@web1')}\n`)
    return {key, pub: `${file}.pub`, file}
  }

  /** A file that cannot be read: root reads any file mode allows, but not a write-only sysctl. */
  function unreadable(): string {
    if (process.getuid?.() !== 0) {
      const f = join(etc, 'unreadable')
      writeFileSync(f, 'x', {mode: 0o000})
      return f
    }
    return '/proc/sys/vm/drop_caches'
  }

  describe('certPathFor', () => {
    it('names the certificate as ssh-keygen does: .pub replaced at the end only, or -cert.pub appended', () => {
      assert.equal(certPathFor('/etc/ssh/ssh_host_ed25519_key.pub'), '/etc/ssh/ssh_host_ed25519_key-cert.pub')
      assert.equal(certPathFor('/srv/keys.pub/host.pub'), '/srv/keys.pub/host-cert.pub')
      assert.equal(certPathFor('/srv/host_key'), '/srv/host_key-cert.pub')
      assert.equal(certPathFor('/srv/host.pubkey'), '/srv/host.pubkey-cert.pub')
    })
  })

  describe('signHostKey (sshca certificate --host --sign)', () => {
    const sign = (pub: string, o: {token?: string; principals?: string[]; context?: string} = {}) =>
      signHostKey(home, {token: o.token ?? 'enroll-token', hostname: 'web1', pubkeyFile: pub, ...o})

    it('writes <key>-cert.pub beside the key, 0644, the exact line the CA issued; asks once per name, with the token trimmed', async () => {
      const {key, pub, file} = hostKey()
      const r = await sign(pub, {
        token: '  enroll-token\n',
        principals: ['web1.example.com', 'web1', 'web1.example.com'],
      })
      assert.deepEqual(sent('POST /ssh/sign'), {
        publicKey: b64(key.publicKey),
        ott: 'enroll-token',
        certType: 'host',
        principals: ['web1', 'web1.example.com'],
      })
      const cert = issued[0]!
      assert.equal(readFileSync(`${file}-cert.pub`, 'utf8'), `${certificateLine(cert)}\n`)
      assert.equal(mode(`${file}-cert.pub`), 0o644)
      assert.deepEqual(r, {
        context: 'demo',
        certificate: `${file}-cert.pub`,
        principals: ['web1', 'web1.example.com'],
        serial: '4242',
        keyId: 'host:web1',
        validBefore: new Date(1_900_000_000 * 1000).toISOString(),
      })
      // the published host CA keys are looked at before the certificate is checked
      assert.deepEqual(requests().sort(), ['GET /roots', 'GET /ssh/roots', 'POST /ssh/sign'])
    })

    it('without --principal asks for the hostname alone; a key file without .pub gets -cert.pub appended', async () => {
      const {key} = hostKey()
      const bare = join(etc, 'bare_key')
      writeFileSync(bare, `${key.publicKey.toLine('')}\n`)
      const r = await sign(bare)
      assert.deepEqual(sent('POST /ssh/sign').principals, ['web1'])
      assert.equal(r.certificate, `${bare}-cert.pub`)
      assert.equal(readFileSync(`${bare}-cert.pub`, 'utf8'), `${certificateLine(issued[0]!)}\n`)
    })

    it('a certificate file already there is replaced', async () => {
      const {pub, file} = hostKey()
      writeFileSync(`${file}-cert.pub`, 'old\n', {mode: 0o600})
      await sign(pub)
      assert.equal(readFileSync(`${file}-cert.pub`, 'utf8'), `${certificateLine(issued[0]!)}\n`)
      assert.equal(mode(`${file}-cert.pub`), 0o644)
    })

    it('a CA rotating its host key: the certificate is checked against the keys it publishes now', async () => {
      const {pub, file} = hostKey()
      ca.roots = json({userKey: [b64(userCa)], hostKey: [b64(hostCa2.publicKey)], hostPattern: '*.example.com'})
      issue = {signer: hostCa2, type: 'host'}
      await sign(pub)
      assert.equal(readFileSync(`${file}-cert.pub`, 'utf8'), `${certificateLine(issued[0]!)}\n`)
    })

    it('when /ssh/roots fails, the host CA keys remembered at bootstrap decide', async () => {
      const {pub, file} = hostKey()
      ca.roots = {status: 500, body: ''}
      await sign(pub)
      assert.equal(readFileSync(`${file}-cert.pub`, 'utf8'), `${certificateLine(issued[0]!)}\n`)
      // a new key the CA could not vouch for just now is not trusted on its word
      issue = {signer: hostCa2, type: 'host'}
      const before = snapshot(etc)
      await rejectsCode(sign(pub), 'ERR_CA_BAD_RESPONSE')
      assert.deepEqual(snapshot(etc), before)
    })

    it('a CA that publishes no host CA key: nothing is installed, whoever signed (nothing could vouch for it, and no known_hosts trusts it)', async () => {
      ca.roots = json({userKey: [b64(userCa)], hostKey: [], hostPattern: '*.example.com'})
      const {pub} = hostKey()
      for (const signer of [hostCa2, hostCa]) {
        issue = {signer, type: 'host'}
        const before = snapshot(etc)
        await rejectsCode(sign(pub), 'ERR_CA_BAD_RESPONSE', {}, /publishes no host CA key/)
        assert.deepEqual(snapshot(etc), before)
      }
    })

    for (const [what, bad] of [
      ['a user certificate', () => ({signer: hostCa, type: 'user'})],
      [
        'a certificate of another key',
        () => ({signer: hostCa, type: 'host', publicKey: generatePrivateKey().publicKey}),
      ],
      ['a certificate signed by a key the CA does not publish', () => ({signer: hostCa2, type: 'host'})],
      ...wrongClock(() => BigInt(Math.floor(Date.now() / 1000))).map(
        ([w, v]) => [w, () => ({signer: hostCa, type: 'host', validity: v()})] as const,
      ),
    ] as const) {
      it(`refuses ${what} (ERR_CA_BAD_RESPONSE): nothing written`, async () => {
        const {pub} = hostKey()
        issue = bad() as Issue
        const before = snapshot(etc)
        await rejectsCode(sign(pub), 'ERR_CA_BAD_RESPONSE')
        assert.deepEqual(snapshot(etc), before)
        assert.equal(issued.length, 1)
      })
    }

    it('a key file that is missing, unreadable, a folder or endless: refused before the CA is asked', async () => {
      await rejectsCode(sign(join(etc, 'nope.pub')), 'ERR_FILE_NOT_FOUND')
      await rejectsCode(sign(unreadable()), 'ERR_FILE_PERMISSIONS')
      await rejectsCode(sign(etc), 'ERR_INPUT')
      // read until the memory ran out, once
      await rejectsCode(sign('/dev/zero'), 'ERR_INPUT')
      assert.deepEqual(requests(), [])
    })

    it('a write that fails (a folder where the certificate goes) leaves no temp file', async () => {
      const {pub, file} = hostKey()
      mkdirSync(`${file}-cert.pub`)
      writeFileSync(join(`${file}-cert.pub`, 'kept'), 'x')
      const before = snapshot(etc)
      await assert.rejects(sign(pub))
      assert.deepEqual(snapshot(etc), before)
    })

    describe('refusals', () => {
      const now = () => Math.floor(Date.now() / 1000)
      /** An enrollment token as the CA would mint it for this host and key, with `over` changed. */
      const token = (key: PublicKey, over: Record<string, unknown> = {}) =>
        unsignedJwt({
          iss: caIssuer(ca.fingerprint),
          aud: 'sshca-host-enrollment',
          iat: now(),
          exp: now() + 600,
          principals: ['web1'],
          cnf: {kid: key.fingerprint()},
          ...over,
        })

      it('401: ERR_TOKEN_INVALID; "already used": ERR_TOKEN_REPLAYED; 500 passes as the CA answered; nothing written', async () => {
        const {key, pub} = hostKey()
        const before = snapshot(etc)
        issue = json({status: 401, message: 'the token was rejected: bad signature'}, 401)
        await rejectsCode(sign(pub, {token: token(key.publicKey)}), 'ERR_TOKEN_INVALID', {status: 401})
        issue = json({status: 401, message: 'token already used'}, 401)
        await rejectsCode(sign(pub, {token: token(key.publicKey)}), 'ERR_TOKEN_REPLAYED', {status: 401})
        issue = {status: 500, body: ''}
        await rejectsCode(sign(pub), 'ERR_CA_BAD_RESPONSE', {status: 500})
        assert.deepEqual(snapshot(etc), before)
      })

      it("403: explained from the token's claims when they show why (expired, another CA, another key, another host)", async () => {
        const {key, pub} = hostKey()
        issue = json({status: 403, message: 'denied'}, 403)
        for (const over of [
          {exp: now() - 3600, iat: now() - 4000},
          {iss: 'sshca:another-root'},
          {cnf: {kid: generatePrivateKey().publicKey.fingerprint()}},
          {principals: ['web2']},
        ]) {
          await assert.rejects(sign(pub, {token: token(key.publicKey, over)}), (err: SshcaErrorLike) => {
            assert.equal(err.code, 'ERR_CA_DENIED')
            // the CA's own refusal is kept as the cause of the explained one
            assert.equal(err.cause?.code, 'ERR_CA_DENIED')
            assert.equal(err.details?.status, 403)
            return true
          })
        }
        // --principal names are part of what the token must name
        await assert.rejects(
          sign(pub, {token: token(key.publicKey), principals: ['web1.example.com']}),
          (err: SshcaErrorLike) => err.code === 'ERR_CA_DENIED' && err.cause?.code === 'ERR_CA_DENIED',
        )
      })

      it("403 with a token that names this CA, key and host, in time: the CA's refusal as it is", async () => {
        const {key, pub} = hostKey()
        issue = json({status: 403, message: 'denied'}, 403)
        await assert.rejects(
          sign(pub, {
            token: token(key.publicKey, {principals: ['web1', 'web1.example.com']}),
            principals: ['web1.example.com'],
          }),
          (err: SshcaErrorLike) => {
            assert.equal(err.code, 'ERR_CA_DENIED')
            assert.equal(err.cause, undefined)
            assert.deepEqual(err.details, {status: 403, caMessage: 'denied'})
            return true
          },
        )
      })
    })
  })

  describe('renewHostCert (sshca renew)', () => {
    /** The clock of these tests, in seconds. */
    const T = 1_800_000_000
    const clock = () => T * 1000 + 999

    /** A host key and its certificate from `signer`, valid from T - (total - left) to T + left. */
    async function enrolled(o: {total: number; left: number; signer?: PrivateKey}) {
      const k = hostKey()
      const cert = await signCertificate(
        {
          type: 'host',
          publicKey: k.key.publicKey,
          serial: 7n,
          keyId: 'host:web1',
          principals: ['web1', 'web1.example.com'],
          validAfter: BigInt(T - (o.total - o.left)),
          validBefore: BigInt(T + o.left),
        },
        keySigner((o.signer ?? hostCa).keyObject),
      )
      const certFile = `${k.file}-cert.pub`
      writeFileSync(certFile, `${certificateLine(cert, 'old')}\n`, {mode: 0o640})
      return {...k, cert, certFile}
    }
    const renew = (
      e: {certFile: string; file: string},
      o: {force?: boolean; keyFile?: string; certFile?: string} = {},
    ) => renewHostCert(home, {certFile: e.certFile, keyFile: e.file, clock, ...o})

    /** What a renewal that did not happen returns: the old certificate described. */
    const kept = (e: {certFile: string; cert: Certificate}) => ({
      context: 'demo',
      certificate: e.certFile,
      principals: ['web1', 'web1.example.com'],
      serial: '7',
      keyId: 'host:web1',
      validBefore: new Date(Number(e.cert.validBefore) * 1000).toISOString(),
    })

    it('the threshold is a third of the validity', () => {
      assert.equal(RENEW_WHEN_LEFT, 1 / 3)
    })

    it('more than a third left: not renewed, nothing written, the key not even read', async () => {
      const e = await enrolled({total: 300, left: 101})
      const before = snapshot(etc)
      const r = await renewHostCert(home, {certFile: e.certFile, keyFile: join(etc, 'no-such-key'), clock})
      assert.deepEqual(r, {
        ...kept(e),
        renewed: false,
        reason: '34% of its validity is left; renewal starts below 33% (or use --force)',
      })
      assert.deepEqual(snapshot(etc), before)
      assert.deepEqual(requests().sort(), ['GET /roots', 'GET /ssh/roots'])
    })

    it('a third left exactly: renewed, 0644, the exact line issued, the old file replaced', async () => {
      const e = await enrolled({total: 300, left: 100})
      const r = await renew(e)
      const fresh = issued[0]!
      assert.equal(readFileSync(e.certFile, 'utf8'), `${certificateLine(fresh)}\n`)
      assert.equal(mode(e.certFile), 0o644)
      assert.deepEqual(r, {
        context: 'demo',
        certificate: e.certFile,
        principals: ['web1', 'web1.example.com'],
        serial: '4242',
        keyId: 'host:web1',
        validBefore: new Date(1_900_000_000 * 1000).toISOString(),
        renewed: true,
        reason: '33% of its validity was left',
      })
      assert.deepEqual(requests().sort(), ['GET /provisioners', 'GET /roots', 'GET /ssh/roots', 'POST /ssh/renew'])
      // nothing but the certificate changed
      assert.deepEqual(Object.keys(snapshot(etc)).sort(), [e.certFile, e.file, `${e.file}.pub`].sort())
    })

    it('the proof of possession: signed by the host key, the old certificate in its header, for the SSHPOP provisioner by its name', async () => {
      const e = await enrolled({total: 300, left: 10})
      await renew(e)
      const ott = sent('POST /ssh/renew').ott as string
      assert.deepEqual(Object.keys(sent('POST /ssh/renew')), ['ott'])
      await compactVerify(ott, e.key.publicKey.keyObject)
      assert.equal(decodeProtectedHeader(ott).sshpop, e.cert.blob.toString('base64'))
      const claims = decodeJwt(ott)
      assert.equal(claims.iss, 'renewals')
      assert.equal(claims.sub, '7')
      assert.equal(claims.aud, sshpopAudience(ca.server.url, 'renew', 'renewals'))
      assert.equal(claims.sha, ca.fingerprint)
      // the clock given, in seconds
      assert.equal(claims.iat, T)
      assert.equal(claims.nbf, T)
    })

    it('--force renews however much is left', async () => {
      const e = await enrolled({total: 300, left: 299})
      const r = await renew(e, {force: true})
      assert.equal(r.renewed, true)
      assert.equal(r.reason, '--force')
      assert.equal(readFileSync(e.certFile, 'utf8'), `${certificateLine(issued[0]!)}\n`)
    })

    it('expired (none left, or less): renewed, and said so before --force', async () => {
      for (const left of [0, -50]) {
        const e = await enrolled({total: 300, left})
        const r = await renew(e, {force: true})
        assert.deepEqual([r.renewed, r.reason], [true, 'it had expired'])
        assert.equal(readFileSync(e.certFile, 'utf8'), `${certificateLine(issued.at(-1)!)}\n`)
      }
    })

    describe('a host CA key rotation', () => {
      const keys = (host: {key: PrivateKey; state: 'next' | 'active' | 'previous'}[]) =>
        json({
          userKey: [b64(userCa)],
          hostKey: host.map((h) => b64(h.key.publicKey)),
          hostPattern: '*.example.com',
          keys: {
            user: [{key: b64(userCa), id: 'u1', state: 'active'}],
            host: host.map((h, i) => ({key: b64(h.key.publicKey), id: `h${i}`, state: h.state})),
          },
        })

      it('signed by the key being rotated out: renewed now, by the new key, which the refreshed keys trust', async () => {
        const e = await enrolled({total: 300, left: 290})
        ca.roots = keys([
          {key: hostCa2, state: 'active'},
          {key: hostCa, state: 'previous'},
        ])
        issue = {signer: hostCa2, type: 'host'}
        const r = await renew(e)
        assert.equal(r.renewed, true)
        assert.equal(r.reason, 'it was signed by a host CA key the CA is rotating out (previous)')
        assert.equal(readFileSync(e.certFile, 'utf8'), `${certificateLine(issued[0]!)}\n`)
      })

      it('signed by a key the CA no longer publishes: renewed now', async () => {
        const e = await enrolled({total: 300, left: 290})
        ca.roots = keys([{key: hostCa2, state: 'active'}])
        issue = {signer: hostCa2, type: 'host'}
        const r = await renew(e)
        assert.deepEqual(
          [r.renewed, r.reason],
          [true, 'it was signed by a host CA key the CA is rotating out (no longer published)'],
        )
      })

      it('signed by the active key, or a CA that gives no states (step-ca), or /ssh/roots failing: not renewed early', async () => {
        for (const roots of [
          keys([
            {key: hostCa, state: 'active'},
            {key: hostCa2, state: 'next'},
          ]),
          json({userKey: [b64(userCa)], hostKey: [b64(hostCa2.publicKey)]}),
          {status: 500, body: ''},
        ]) {
          ca.roots = roots
          const e = await enrolled({total: 300, left: 290})
          const r = await renew(e)
          assert.equal(r.renewed, false)
          assert.equal(issued.length, 0)
        }
      })

      it('/ssh/roots failing: the host CA keys remembered decide what is installed', async () => {
        ca.roots = {status: 500, body: ''}
        const e = await enrolled({total: 300, left: 10})
        issue = {signer: hostCa2, type: 'host'}
        const before = snapshot(etc)
        await rejectsCode(renew(e), 'ERR_CA_BAD_RESPONSE')
        assert.deepEqual(snapshot(etc), before)
        issue = {signer: hostCa, type: 'host'}
        assert.equal((await renew(e)).renewed, true)
      })
    })

    for (const [what, bad] of [
      ['a user certificate', () => ({signer: hostCa, type: 'user'})],
      [
        'a certificate of another key',
        () => ({signer: hostCa, type: 'host', publicKey: generatePrivateKey().publicKey}),
      ],
      ['a certificate signed by a key the CA does not publish', () => ({signer: hostCa2, type: 'host'})],
      ...wrongClock(() => BigInt(T)).map(
        ([w, v]) => [w, () => ({signer: hostCa, type: 'host', validity: v()})] as const,
      ),
    ] as const) {
      it(`refuses ${what} (ERR_CA_BAD_RESPONSE): the old certificate kept, no temp file`, async () => {
        const e = await enrolled({total: 300, left: 10})
        issue = bad() as Issue
        const before = snapshot(etc)
        await rejectsCode(renew(e), 'ERR_CA_BAD_RESPONSE')
        assert.deepEqual(snapshot(etc), before)
        assert.equal(issued.length, 1)
      })
    }

    it('a key file that is not the certified key: ERR_INPUT before anything is sent', async () => {
      const e = await enrolled({total: 300, left: 10})
      const other = hostKey('ssh_host_other_key')
      const before = snapshot(etc)
      await rejectsCode(renew(e, {keyFile: other.file}), 'ERR_INPUT')
      assert.deepEqual(snapshot(etc), before)
      assert.deepEqual(requests().sort(), ['GET /roots', 'GET /ssh/roots'])
    })

    it('a certificate or key file missing or unreadable: refused by code', async () => {
      const e = await enrolled({total: 300, left: 10})
      await rejectsCode(renew(e, {certFile: join(etc, 'none-cert.pub')}), 'ERR_FILE_NOT_FOUND')
      await rejectsCode(renew(e, {certFile: unreadable()}), 'ERR_FILE_PERMISSIONS')
      await rejectsCode(renew(e, {certFile: etc}), 'ERR_INPUT')
      await rejectsCode(renew(e, {keyFile: '/dev/zero'}), 'ERR_INPUT')
      await rejectsCode(renew(e, {keyFile: join(etc, 'none')}), 'ERR_FILE_NOT_FOUND')
      await rejectsCode(renew(e, {keyFile: unreadable()}), 'ERR_FILE_PERMISSIONS')
      assert.equal(readFileSync(e.certFile, 'utf8'), `${certificateLine(e.cert, 'old')}\n`)
    })

    it('a CA without an SSHPOP provisioner: ERR_CA_UNSUPPORTED, nothing sent to renew', async () => {
      provisioners = json({provisioners: [{type: 'OIDC', name: 'people'}], nextCursor: ''})
      const e = await enrolled({total: 300, left: 10})
      const before = snapshot(etc)
      await rejectsCode(renew(e), 'ERR_CA_UNSUPPORTED')
      assert.deepEqual(snapshot(etc), before)
      assert.equal(requests().includes('POST /ssh/renew'), false)
    })

    it('refused: 401 is ERR_TOKEN_INVALID, "already used" ERR_TOKEN_REPLAYED, 403 passes as ERR_CA_DENIED; the old certificate kept', async () => {
      const e = await enrolled({total: 300, left: 10})
      const before = snapshot(etc)
      // a refused proof comes with a next step for a host (what the hint says is for a person)
      const withHint = (code: string) => (err: SshcaErrorLike) => {
        assert.equal(err.code, code)
        assert.equal(err.details?.status, 401)
        assert.equal(typeof err.hint, 'string')
        return true
      }
      issue = json({status: 401, message: 'the token was rejected: proof_invalid'}, 401)
      await assert.rejects(renew(e), withHint('ERR_TOKEN_INVALID'))
      issue = json({status: 401, message: 'token already used'}, 401)
      await assert.rejects(renew(e), withHint('ERR_TOKEN_REPLAYED'))
      issue = json({status: 403, message: 'revoked'}, 403)
      await rejectsCode(renew(e), 'ERR_CA_DENIED', {status: 403})
      issue = {status: 0, body: '', hangUp: true}
      await rejectsCode(renew(e), 'ERR_CA_UNREACHABLE')
      assert.deepEqual(snapshot(etc), before)
    })
  })

  describe('reloadSshd (renew --reload-sshd)', () => {
    /** A real sshd configuration in a temp folder, with a host key of its own; `bad` adds a line sshd rejects. */
    function sshdConfig(bad = false): string {
      const dir = tempDir('sshca-reload-')
      const key = join(dir, 'host_key')
      assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]).status, 0)
      const file = join(dir, 'sshd_config')
      writeFileSync(file, `HostKey ${key}\n${bad ? 'NoSuchKeyword yes\n' : ''}`)
      return file
    }
    const recorder = (code: number, stderr = '') => {
      const calls: number[] = []
      return {calls, reload: async () => (calls.push(1), {code, stderr, missing: false})}
    }

    it('sshd -t accepts its configuration: reloaded', async () => {
      const r = recorder(0)
      assert.deepEqual(await reloadSshd({sshdConfig: sshdConfig(), reload: r.reload}), {reloaded: true, note: null})
      assert.equal(r.calls.length, 1)
    })

    it('a configuration sshd rejects is never reloaded (a SIGHUP would stop sshd): ERR_SSHD_CONFIG, naming the problem', async () => {
      const r = recorder(0)
      await rejectsCode(
        reloadSshd({sshdConfig: sshdConfig(true), reload: r.reload}),
        'ERR_SSHD_CONFIG',
        {},
        /^sshd -t refuses its configuration \(.*NoSuchKeyword.*\): sshd was not reloaded/,
      )
      assert.equal(r.calls.length, 0)
    })

    it('a reload missed after a renewal is owed: each later run retries it, renewed or not, until one succeeds', async () => {
      const home = tempDir('sshca-reload-home-')
      const owed = join(home, 'sshd-reload-owed')
      const config = sshdConfig()
      const failing = recorder(1, 'Failed to reload ssh.service: Transport endpoint is not connected\n')
      // nothing renewed, nothing owed: no sshd -t, no reload
      assert.equal(await reloadSshdIfOwed(home, false, {sshdConfig: config, reload: failing.reload}), undefined)
      assert.equal(failing.calls.length, 0)
      assert.equal((await reloadSshdIfOwed(home, true, {sshdConfig: config, reload: failing.reload}))?.reloaded, false)
      assert.ok(existsSync(owed))
      // sshd -t refusing its configuration the next day: still owed
      await rejectsCode(
        reloadSshdIfOwed(home, false, {sshdConfig: sshdConfig(true), reload: failing.reload}),
        'ERR_SSHD_CONFIG',
      )
      assert.ok(existsSync(owed))
      const ok = recorder(0)
      assert.deepEqual(await reloadSshdIfOwed(home, false, {sshdConfig: config, reload: ok.reload}), {
        reloaded: true,
        note: null,
      })
      assert.equal(existsSync(owed), false)
      assert.equal(await reloadSshdIfOwed(home, false, {sshdConfig: config, reload: ok.reload}), undefined)
      assert.equal(ok.calls.length, 1)
    })

    it('a reload that fails (no such unit) is said, not thrown: the certificate is in place', async () => {
      const r = recorder(5, 'Failed to reload ssh.service: Unit ssh.service not found.\n')
      assert.deepEqual(await reloadSshd({sshdConfig: sshdConfig(), reload: r.reload}), {
        reloaded: false,
        note: 'the reload failed (Failed to reload ssh.service: Unit ssh.service not found.): sshd presents the new certificate after its next reload',
      })
      await rejectsCode(reloadSshd({sshd: '/nonexistent/sshd', reload: r.reload}), 'ERR_FILE_NOT_FOUND')
    })
  })

  describe('fetchKrl (sshca krl)', () => {
    // two CA keys' sections: a serial and a key ID revoked under both count once
    const krl = buildKrl({
      version: 12n,
      generatedAt: 1_700_000_000n,
      comment: '',
      sections: [
        {caKey: userCa, serials: [3n, 5n], keyIds: ['alice', 'bob']},
        {caKey: hostCa.publicKey, serials: [5n, 8n, 13n], keyIds: ['bob']},
      ],
    })
    let out: string
    let userCaFile: string
    beforeEach(() => {
      out = join(etc, 'sshca_revoked_keys.krl')
      userCaFile = join(etc, 'sshca_user_ca.pub')
      ca.krl = {status: 200, body: krl}
    })
    const fetch = (o: {userCaKeys?: string} = {}) => fetchKrl(home, {out, ...o})

    it('writes the KRL byte for byte, 0644, and says what it holds', async () => {
      const r = await fetch()
      assert.deepEqual(readFileSync(out), krl)
      assert.equal(mode(out), 0o644)
      assert.deepEqual(r, {
        context: 'demo',
        published: true,
        file: out,
        version: '12',
        revokedSerials: 4,
        revokedKeyIds: 2,
        bytes: krl.length,
      })
      // without --user-ca-keys: /ssh/roots is not asked, no such file
      assert.deepEqual(requests(), ['GET /ssh/krl'])
      assert.deepEqual(Object.keys(snapshot(etc)), [out])
    })

    it('an older KRL is replaced', async () => {
      writeFileSync(out, buildKrl({version: 1n, generatedAt: 1n, comment: '', sections: []}), {mode: 0o600})
      await fetch()
      assert.deepEqual(readFileSync(out), krl)
      assert.equal(mode(out), 0o644)
    })

    it('--user-ca-keys: the published user CA keys beside it, rewritten only when they change', async () => {
      const userCa2 = generatePrivateKey('ed25519').publicKey
      ca.roots = json({userKey: [b64(userCa), b64(userCa2)], hostKey: [b64(hostCa.publicKey)]})
      const r = await fetch({userCaKeys: userCaFile})
      const text = `${userCa.toLine('demo user CA')}\n${userCa2.toLine('demo user CA')}\n`
      assert.deepEqual(r.userCaKeys, {file: userCaFile, keys: 2, changed: true})
      assert.equal(r.published, true)
      assert.equal(readFileSync(userCaFile, 'utf8'), text)
      assert.equal(mode(userCaFile), 0o644)
      assert.deepEqual(readFileSync(out), krl)
      const again = await fetch({userCaKeys: userCaFile})
      assert.deepEqual(again.userCaKeys, {file: userCaFile, keys: 2, changed: false})
    })

    it('--user-ca-keys with /ssh/roots failing, or publishing no user CA key: an error, nothing written', async () => {
      const before = snapshot(etc)
      ca.roots = {status: 500, body: ''}
      await rejectsCode(fetch({userCaKeys: userCaFile}), 'ERR_CA_BAD_RESPONSE', {status: 500})
      ca.roots = json({userKey: [], hostKey: [b64(hostCa.publicKey)]})
      await rejectsCode(fetch({userCaKeys: userCaFile}), 'ERR_CA_BAD_RESPONSE')
      assert.deepEqual(snapshot(etc), before)
    })

    it('a CA that publishes no KRL (404), and no KRL here yet: published false, nothing written', async () => {
      ca.krl = {status: 404, body: ''}
      const r = await fetch()
      const {note, ...rest} = r as typeof r & {note: string}
      assert.deepEqual(rest, {context: 'demo', published: false, file: null})
      // the note names the CA it is about (a host may follow several)
      assert.match(note, /"demo"/)
      assert.deepEqual(snapshot(etc), {})
    })

    it('404 with --user-ca-keys: the user CA keys are still kept current', async () => {
      ca.krl = {status: 404, body: ''}
      const r = await fetch({userCaKeys: userCaFile})
      assert.equal(r.published, false)
      assert.deepEqual(r.userCaKeys, {file: userCaFile, keys: 1, changed: true})
      assert.deepEqual(Object.keys(snapshot(etc)), [userCaFile])
    })

    it('404 when a KRL is already here: ERR_CA_UNSUPPORTED, the old KRL kept (a timer shows it)', async () => {
      writeFileSync(out, krl, {mode: 0o644})
      ca.krl = {status: 404, body: ''}
      const before = snapshot(etc)
      await rejectsCode(fetch(), 'ERR_CA_UNSUPPORTED')
      assert.deepEqual(snapshot(etc), before)
    })

    it('a KRL that does not parse, a 500, a cut connection: an error, the old KRL kept, no temp file', async () => {
      const old = buildKrl({version: 1n, generatedAt: 1n, comment: '', sections: []})
      writeFileSync(out, old, {mode: 0o644})
      const before = snapshot(etc)
      ca.krl = {status: 200, body: Buffer.from('not a KRL at all')}
      await rejectsCode(fetch(), 'ERR_SSH_FORMAT')
      ca.krl = {status: 500, body: ''}
      await rejectsCode(fetch(), 'ERR_CA_BAD_RESPONSE', {status: 500})
      ca.krl = {status: 0, body: '', hangUp: true}
      await rejectsCode(fetch(), 'ERR_CA_UNREACHABLE')
      assert.deepEqual(snapshot(etc), before)
    })

    it("a KRL this machine's OpenSSH cannot load (sshd would refuse every public key): an error, the old KRL kept", async () => {
      const old = buildKrl({version: 1n, generatedAt: 1n, comment: '', sections: []})
      writeFileSync(out, old, {mode: 0o644})
      const before = snapshot(etc)
      ca.krl = {status: 200, body: krlOpenSshRefuses()}
      await rejectsCode(
        fetch(),
        'ERR_CA_BAD_RESPONSE',
        {},
        /OpenSSH here cannot load \(ssh-keygen -Q: .*Invalid key length\).*was kept as it is/,
      )
      assert.deepEqual(snapshot(etc), before)
    })

    it("as root, the KRL is checked by the system's ssh-keygen, never one a PATH with another user's folder names", async function () {
      // root runs `sshca krl` (or config --host) with a PATH that holds a folder another user can
      // write (su without -, sudo keeping PATH, a ~/bin first): their `ssh-keygen` ran as root, and
      // answered for a list the real one refuses
      if (process.getuid?.() !== 0) this.skip()
      const bin = tempDir('sshca-their-bin-')
      const ran = join(bin, 'ran')
      writeFileSync(join(bin, 'ssh-keygen'), `#!/bin/sh\necho "$(id -u)" > ${ran}\nexit 0\n`, {mode: 0o755})
      const old = buildKrl({version: 1n, generatedAt: 1n, comment: '', sections: []})
      writeFileSync(out, old, {mode: 0o644})
      const before = snapshot(etc)
      ca.krl = {status: 200, body: krlOpenSshRefuses()}
      const path = process.env.PATH
      process.env.PATH = `${bin}:${path}`
      try {
        await rejectsCode(fetch(), 'ERR_CA_BAD_RESPONSE', {}, /OpenSSH here cannot load/)
      } finally {
        process.env.PATH = path
      }
      assert.equal(
        existsSync(ran),
        false,
        `the planted ssh-keygen ran as uid ${existsSync(ran) ? readFileSync(ran, 'utf8').trim() : ''}`,
      )
      assert.deepEqual(snapshot(etc), before)
    })
  })
})

interface SshcaErrorLike {
  code?: string
  hint?: string
  cause?: {code?: string}
  details?: Record<string, unknown>
}
