/**
 * The signing pipeline (src/ca/authority/sign.ts) and the host certificate flows (host.ts) called in
 * process, on a runtime with a real SQLite store (in memory), real CA keys, a clock the test moves
 * and an issuer served by a fetch function. Each attack is performed and its refusal asserted by code,
 * reason and what the store and audit log hold afterwards; written from the survivors of mutation
 * testing (issue 18).
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync, randomUUID} from 'node:crypto'
import {SignJWT} from 'jose'
import {
  currentHosts,
  currentKrl,
  rekeyHostCertificate,
  renewHostCertificate,
  revokeOwnCertificate,
  signHostCertificate,
} from '../../../src/ca/authority/host.ts'
import type {AuditTrace, CaRuntime} from '../../../src/ca/authority/runtime.ts'
import {
  checkSubjectKey,
  issue,
  metered,
  MIN_RSA_BITS,
  parseSubjectKey,
  randomSerial,
  signUserCertificate,
} from '../../../src/ca/authority/sign.ts'
import {RESTORE_LEEWAY} from '../../../src/ca/store/store.ts'
import {parseConfig} from '../../../src/ca/config/config.ts'
import {soleKeySet, type CaMaterial} from '../../../src/ca/keys/material.ts'
import {memoryAuditLog} from '../../../src/ca/observe/audit.ts'
import type {Meter} from '../../../src/ca/observe/meter.ts'
import {mintEnrollmentToken} from '../../../src/ca/provisioner/enrollment.ts'
import {TokenVerifier} from '../../../src/ca/provisioner/oidc.ts'
import {SqliteStore} from '../../../src/ca/store/sqlite.ts'
import type {SshSignRequest} from '../../../src/protocol/api.ts'
import {
  caIssuer,
  ENROLLMENT_AUDIENCE,
  ENROLLMENT_TYP,
  mintSshpopToken,
  mintSshpopTokenWith,
  SSHPOP_PROVISIONER,
  type SshpopAction,
} from '../../../src/protocol/tokens.ts'
import {parseCertificate, signCertificate, type Certificate} from '../../../src/ssh/cert.ts'
import {parseKrl} from '../../../src/ssh/krl.ts'
import {PublicKey} from '../../../src/ssh/keys.ts'
import {SshWriter} from '../../../src/ssh/wire.ts'
import {generatePrivateKey, type PrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {SshcaError} from '../../../src/errors.ts'
import {rejectsCode, throwsCode} from '../../helpers/assert.ts'
import {encode, neutralKeyBlob, neutralSshSignature, P, smallOrderEncodings} from '../../helpers/ed25519.ts'
import {roughModulus, rsaBlob} from '../../helpers/forge.ts'
import {memoryIssuer} from '../../helpers/memory-issuer.ts'

const ISSUER = 'https://idp.example.com'
const ROOT = 'ef'.repeat(32)
const T0 = 1_800_000_000
const YAML = `
limits: {rate: false}
dnsNames: [ca.example.com]
ssh: {hostTtl: 7d, maxHostTtl: 30d}
provisioners:
  - name: people
    type: oidc
    issuer: ${ISSUER}
    clientId: cli
    rules:
      - {name: staff, match: {email_verified: true, email: {domain: example.com}}, certificate: {principals: ["\${email.local}", ops], keyId: "\${email}", ttl: 1h, forceCommand: /bin/true, sourceAddress: [10.0.0.0/8], extensions: [permit-pty]}}
`

interface World {
  rt: CaRuntime
  audit: ReturnType<typeof memoryAuditLog>
  store: SqliteStore
  decisions: Parameters<Meter['decision']>[0][]
  verifications: Parameters<Meter['tokenVerification']>[0][]
  now: number
  mint(claims?: Record<string, unknown>): Promise<string>
}

async function world(yaml = YAML): Promise<World> {
  const {config} = parseConfig(yaml, '/nonexistent/ca.yaml')
  const {privateKey: issuerPrivateKey, fetch: fetchFn} = await memoryIssuer(ISSUER)
  const material = {
    rootFingerprint: ROOT,
    roots: [{fingerprint: ROOT}],
    userCa: soleKeySet(keySigner(generatePrivateKey('ed25519').keyObject)),
    hostCa: soleKeySet(keySigner(generatePrivateKey('ed25519').keyObject)),
    enrollmentKey: generateKeyPairSync('ed25519').privateKey,
  } as unknown as CaMaterial
  const audit = memoryAuditLog()
  const store = new SqliteStore(':memory:', {background: false})
  const decisions: World['decisions'] = []
  const verifications: World['verifications'] = []
  const w: World = {
    rt: undefined as unknown as CaRuntime,
    audit,
    store,
    decisions,
    verifications,
    now: T0,
    mint: (claims = {}) =>
      new SignJWT({email: 'alice@example.com', email_verified: true, sub: 'u-alice', jti: randomUUID(), ...claims})
        .setProtectedHeader({alg: 'ES256', kid: 'k1'})
        .setIssuer(ISSUER)
        .setAudience('cli')
        .setIssuedAt(w.now)
        .setExpirationTime(w.now + 300)
        .sign(issuerPrivateKey),
  }
  const clock = () => w.now * 1000
  const meter: Meter = {
    decision: (d) => decisions.push(d),
    request() {},
    commit() {},
    tokenVerification: (v) => verifications.push(v),
    jwksFetch() {},
    rateLimited() {},
    webhook() {},
  }
  w.rt = {
    policy: {config, verifier: new TokenVerifier(config.provisioners, {fetch: fetchFn, clock})},
    material,
    store,
    audit,
    meter,
    clock,
  }
  return w
}

const trace = (): AuditTrace => ({request_id: randomUUID()})
/** The /ssh/sign body signHostCertificate reads its principals from (the key and token come separately). */
const body = (principals?: string[]): SshSignRequest => ({publicKey: '', ott: '', ...(principals ? {principals} : {})})
const ed = () => generatePrivateKey('ed25519')
/** The host CA signs once a reload to `yaml` has replaced the policy, as a SIGHUP landing meanwhile does (a slow HSM). */
function reloadWhileHostSigns(w: World, yaml: string): void {
  const {config} = parseConfig(yaml, '/nonexistent/ca.yaml')
  const signer = w.rt.material.hostCa.active
  w.rt.material = {
    ...w.rt.material,
    hostCa: {
      ...w.rt.material.hostCa,
      active: {
        publicKey: signer.publicKey,
        sign: async (data: Buffer) => {
          w.rt.policy = {config, verifier: w.rt.policy.verifier}
          return signer.sign(data)
        },
      },
    },
  }
}

describe('the user signing pipeline (sign.ts)', () => {
  let w: World
  beforeEach(async () => {
    w = await world()
  })
  afterEach(async () => w.store.close())

  it('signs what the rule says with the user CA key, records it and audits it, filling in the trace', async () => {
    const key = ed()
    const t = trace()
    const token = await w.mint()
    const cert = await signUserCertificate(w.rt, key.publicKey, token, 'user', t)
    assert.equal(cert.type, 'user')
    assert.ok(cert.signatureKey.equals(w.rt.material.userCa.active.publicKey))
    assert.ok(cert.publicKey.equals(key.publicKey))
    assert.deepEqual(
      [cert.keyId, cert.principals, cert.validAfter, cert.validBefore],
      ['alice@example.com', ['alice', 'ops'], BigInt(T0 - 60), BigInt(T0 + 3600)],
    )
    assert.deepEqual(
      [cert.criticalOptions, cert.extensions],
      [{'force-command': '/bin/true', 'source-address': '10.0.0.0/8'}, {'permit-pty': true}],
    )
    assert.notEqual(cert.serial, 0n)
    assert.deepEqual(
      {
        provisioner: t.provisioner,
        rule: t.rule,
        subject: t.subject,
        key_type: t.key_type,
        cert_type: t.cert_type,
        key_fingerprint: t.key_fingerprint,
      },
      {
        provisioner: 'people',
        rule: 'staff',
        subject: 'u-alice',
        key_type: 'ssh-ed25519',
        cert_type: 'user',
        key_fingerprint: key.publicKey.fingerprint(),
      },
    )
    assert.match(t.token!.id, /^https:\/\/idp\.example\.com#jti:/)
    assert.match(t.token!.sha256, /^[0-9a-f]{64}$/)
    // the claims the rule matched on are audited, not every claim
    assert.deepEqual(t.claims, {email: 'alice@example.com', email_verified: true, sub: 'u-alice'})
    const rec = (await w.store.findCertificate(cert.serial))!
    assert.deepEqual(
      {...rec, serial: undefined},
      {
        serial: undefined,
        certType: 'user',
        keyId: 'alice@example.com',
        principals: ['alice', 'ops'],
        validAfter: BigInt(T0 - 60),
        validBefore: BigInt(T0 + 3600),
        provisioner: 'people',
        rule: 'staff',
        subject: 'u-alice',
        keyFingerprint: key.publicKey.fingerprint(),
        issuedAt: T0,
        requestId: t.request_id,
        certificate: cert.blob.toString('base64'),
        // the matched claims, kept for ca explain's what-if
        claims: {email: 'alice@example.com', email_verified: true, sub: 'u-alice'},
      },
    )
    const line = w.audit.events.find((e) => e.request_id === t.request_id)!
    assert.deepEqual(
      {
        event: line.event,
        serial: line.serial,
        key_id: line.key_id,
        principals: line.principals,
        valid_after: line.valid_after,
        valid_before: line.valid_before,
        critical_options: line.critical_options,
        extensions: line.extensions,
      },
      {
        event: 'certificate_issued',
        serial: cert.serial.toString(),
        key_id: 'alice@example.com',
        principals: ['alice', 'ops'],
        valid_after: new Date((T0 - 60) * 1000).toISOString(),
        valid_before: new Date((T0 + 3600) * 1000).toISOString(),
        critical_options: {'force-command': '/bin/true', 'source-address': '10.0.0.0/8'},
        extensions: ['permit-pty'],
      },
    )
    assert.deepEqual(w.decisions, [{outcome: 'issued', provisioner: 'people', rule: 'staff', certType: 'user'}])
    // a sub that is not text is not a subject
    const t2 = trace()
    await signUserCertificate(w.rt, ed().publicKey, await w.mint({sub: 42}), 'user', t2)
    assert.equal(t2.subject, undefined)
  })

  it('an OIDC token never gets a host certificate; nothing is recorded or spent', async () => {
    const token = await w.mint()
    await rejectsCode(signUserCertificate(w.rt, ed().publicKey, token, 'host', trace()), 'ERR_POLICY_DENIED', {
      reason: 'cert_type_not_allowed',
    })
    assert.equal((await signUserCertificate(w.rt, ed().publicKey, token, 'user', trace())).type, 'user')
  })

  it('a weak key, or issuance switched off, is refused before the token is looked at: the token stays good', async () => {
    const token = await w.mint()
    const rsa2048 = PublicKey.fromKeyObject(generateKeyPairSync('rsa', {modulusLength: 2048}).publicKey)
    await rejectsCode(signUserCertificate(w.rt, rsa2048, token, 'user', trace()), 'ERR_SSH_UNSUPPORTED', {
      reason: 'bad_request',
    })
    const off = await world(YAML.replace('limits:', 'disabled: true\nlimits:'))
    try {
      await rejectsCode(
        signUserCertificate(off.rt, ed().publicKey, await off.mint(), 'user', trace()),
        'ERR_ISSUANCE_DISABLED',
        {reason: 'policy_disabled'},
      )
      assert.deepEqual(off.decisions, [])
    } finally {
      await off.store.close()
    }
    assert.equal((await signUserCertificate(w.rt, ed().publicKey, token, 'user', trace())).type, 'user')
  })

  it('the emergency stop refuses issuance before the token is looked at, saying since when and why; lifted, the token is good', async () => {
    const token = await w.mint()
    w.rt.safety = {stop: {at: T0 - 30, reason: 'incident 42'}, restoredAt: null}
    await rejectsCode(signUserCertificate(w.rt, ed().publicKey, token, 'user', trace()), 'ERR_ISSUANCE_DISABLED', {
      reason: 'issuance_stopped',
      stopped_at: new Date((T0 - 30) * 1000).toISOString(),
      stop_reason: 'incident 42',
    })
    assert.deepEqual([w.decisions, w.verifications], [[], []])
    w.rt.safety = {stop: null, restoredAt: null}
    assert.equal((await signUserCertificate(w.rt, ed().publicKey, token, 'user', trace())).type, 'user')
  })

  it('after a restore from a backup: tokens issued before the mark are refused (a spent one as a replay); from mark + leeway on they pass', async () => {
    const spent = await w.mint()
    const first = await signUserCertificate(w.rt, ed().publicKey, spent, 'user', trace())
    const unspent = await w.mint()
    const mark = T0 + 100
    w.rt.safety = {stop: null, restoredAt: mark}
    w.now = mark + 20
    const iso = (s: number) => new Date(s * 1000).toISOString()
    await rejectsCode(signUserCertificate(w.rt, ed().publicKey, unspent, 'user', trace()), 'ERR_TOKEN_INVALID', {
      reason: 'token_before_restore',
      issued_at: iso(T0),
      restored_at: iso(mark),
    })
    await rejectsCode(signUserCertificate(w.rt, ed().publicKey, spent, 'user', trace()), 'ERR_TOKEN_REPLAYED', {
      reason: 'token_replayed',
      spent_on_serial: first.serial.toString(),
      spent_at: iso(T0),
    })
    // the leeway: an issuer whose clock runs ahead may stamp a token made before the mark up to a minute later
    w.now = mark + RESTORE_LEEWAY - 1
    const early = await w.mint()
    await rejectsCode(signUserCertificate(w.rt, ed().publicKey, early, 'user', trace()), 'ERR_TOKEN_INVALID', {
      reason: 'token_before_restore',
    })
    w.now = mark + RESTORE_LEEWAY
    assert.equal((await signUserCertificate(w.rt, ed().publicKey, await w.mint(), 'user', trace())).type, 'user')
    // a store never restored: no mark, no window
    w.rt.safety = {stop: null, restoredAt: null}
    assert.equal((await signUserCertificate(w.rt, ed().publicKey, early, 'user', trace())).type, 'user')
  })

  it('a stop or restore mark in the store that this CA has not polled yet refuses at commit, as the polled one would; nothing recorded', async () => {
    // `ca stop-issuance` or `ca mark-restored` from another process, within the second before the poll
    const iso = (s: number) => new Date(s * 1000).toISOString()
    await w.store.setIssuanceStop({at: T0 - 5, reason: 'incident 43'})
    await rejectsCode(
      signUserCertificate(w.rt, ed().publicKey, await w.mint(), 'user', trace()),
      'ERR_ISSUANCE_DISABLED',
      {
        reason: 'issuance_stopped',
        stopped_at: iso(T0 - 5),
        stop_reason: 'incident 43',
      },
    )
    await w.store.setIssuanceStop(null)
    const mark = T0 + 100
    await w.store.markRestored(mark)
    const before = await w.mint({jti: 'before-the-mark'})
    w.now = mark + 20
    await rejectsCode(signUserCertificate(w.rt, ed().publicKey, before, 'user', trace()), 'ERR_TOKEN_INVALID', {
      reason: 'token_before_restore',
      issued_at: iso(T0),
      restored_at: iso(mark),
    })
    assert.deepEqual(await w.store.certificates({limit: 10}), [])
    assert.equal(await w.store.spentToken(`${ISSUER}#before-the-mark`), undefined)
    w.now = mark + RESTORE_LEEWAY
    assert.equal((await signUserCertificate(w.rt, ed().publicKey, await w.mint(), 'user', trace())).type, 'user')
  })

  it('token verifications are counted by provisioner and outcome: valid, or the denial reason', async () => {
    await signUserCertificate(w.rt, ed().publicKey, await w.mint(), 'user', trace())
    const expired = await w.mint()
    w.now += 3600
    await rejectsCode(signUserCertificate(w.rt, ed().publicKey, expired, 'user', trace()), 'ERR_TOKEN_INVALID', {
      reason: 'token_expired',
    })
    await rejectsCode(signUserCertificate(w.rt, ed().publicKey, 'not.a.token', 'user', trace()), 'ERR_TOKEN_INVALID')
    assert.deepEqual(w.verifications, [
      {provisioner: 'people', outcome: 'valid'},
      {provisioner: 'people', outcome: 'token_expired'},
      {provisioner: undefined, outcome: 'token_invalid'},
    ])
  })

  it('metered(): a provisioner named by the caller wins over one in the error; an error that is not a denial counts as "error"', async () => {
    const named = new SshcaError('ERR_TOKEN_INVALID', 'bad', {details: {reason: 'token_invalid', provisioner: 'q'}})
    await assert.rejects(metered(w.rt, 'p', Promise.reject(named)))
    await assert.rejects(metered(w.rt, undefined, Promise.reject(named)))
    await assert.rejects(metered(w.rt, 'p', Promise.reject(new TypeError('a bug'))))
    assert.deepEqual(w.verifications, [
      {provisioner: 'p', outcome: 'token_invalid'},
      {provisioner: 'q', outcome: 'token_invalid'},
      {provisioner: 'p', outcome: 'error'},
    ])
  })

  it('a user certificate is recorded with the claims its provisioner reads and the audited ones (for ca explain --since), no others', async () => {
    const cert = await signUserCertificate(w.rt, ed().publicKey, await w.mint({department: 'x'}), 'user', trace())
    const row = await w.store.findCertificate(cert.serial)
    assert.deepEqual(row?.claims, {email: 'alice@example.com', email_verified: true, sub: 'u-alice'})
  })

  it('RSA keys: 3072 bits and up; ed25519 and ECDSA always', () => {
    assert.equal(MIN_RSA_BITS, 3072)
    throwsCode(
      () => checkSubjectKey(PublicKey.fromKeyObject(generateKeyPairSync('rsa', {modulusLength: 3064}).publicKey)),
      'ERR_SSH_UNSUPPORTED',
      {reason: 'bad_request'},
    )
    assert.doesNotThrow(() =>
      checkSubjectKey(PublicKey.fromKeyObject(generateKeyPairSync('rsa', {modulusLength: 3072}).publicKey)),
    )
    assert.doesNotThrow(() => checkSubjectKey(generatePrivateKey('ecdsa').publicKey))
    assert.doesNotThrow(() => checkSubjectKey(ed().publicKey))
  })

  it('RSA keys: a small odd exponent (3 to 2^32) and at most 16384 bits, else every proof verified with the key costs the CA dearly', () => {
    // moduli without a small factor: the checks of row 65 pass, so only these can refuse
    const n3072 = roughModulus(3072)
    const rsa = (e: bigint, n = n3072) => PublicKey.fromBlob(rsaBlob(e, n))
    for (const e of [3n, 65537n, (1n << 32n) - 1n]) assert.doesNotThrow(() => checkSubjectKey(rsa(e)), String(e))
    for (const e of [1n, 65536n, 1n << 32n, (1n << 32n) + 1n, (1n << 2999n) | 1n])
      throwsCode(() => checkSubjectKey(rsa(e)), 'ERR_SSH_UNSUPPORTED', {reason: 'bad_request'}, /exponent/)
    assert.doesNotThrow(() => checkSubjectKey(rsa(65537n, roughModulus(16384))))
    throwsCode(
      () => checkSubjectKey(rsa(65537n, roughModulus(16385))),
      'ERR_SSH_UNSUPPORTED',
      {reason: 'bad_request'},
      /at most 16384 bits/,
    )
  })

  it('keys anyone can sign with are never certified: small-order or non-canonical ed25519, RSA moduli that are even, have a small factor or are squares (400 key_unsafe)', () => {
    const ed25519 = (encoded: Buffer) =>
      PublicKey.fromBlob(Buffer.from(new SshWriter().string('ssh-ed25519').string(encoded).toBuffer()))
    const rsa = (n: bigint) => PublicKey.fromBlob(rsaBlob(65537n, n))
    const q = roughModulus(1537)
    const unsafe = [
      ...smallOrderEncodings().map(ed25519),
      ed25519(encode(P + 5n, 0)),
      rsa(roughModulus(3072) + 1n),
      rsa(997n * roughModulus(3063)),
      rsa(q * q),
    ]
    for (const key of unsafe) throwsCode(() => checkSubjectKey(key), 'ERR_SSH_UNSUPPORTED', {reason: 'key_unsafe'})
    // the size is judged first: a 20000-bit square costs nothing to refuse
    throwsCode(() => checkSubjectKey(rsa(roughModulus(10001) ** 2n)), 'ERR_SSH_UNSUPPORTED', {reason: 'bad_request'})
    assert.doesNotThrow(() => checkSubjectKey(rsa(roughModulus(3072))))
  })

  it('the subject key: a base64 wire blob or an authorized_keys line; anything else is a 400 naming the format', () => {
    const key = ed().publicKey
    assert.ok(parseSubjectKey({blobBase64: key.blob.toString('base64')}).equals(key))
    assert.ok(parseSubjectKey({line: key.toLine('c')}).equals(key))
    // the line wins when both are given (/sign's form)
    assert.ok(parseSubjectKey({line: key.toLine(), blobBase64: 'AAAA'}).equals(key))
    for (const blobBase64 of [
      '',
      'not base64!',
      `${key.blob.toString('base64')} `,
      `!${key.blob.toString('base64')}`,
      'AAAA',
      undefined,
    ]) {
      throwsCode(() => parseSubjectKey({blobBase64}), 'ERR_SSH_FORMAT', {reason: 'bad_request'})
    }
    throwsCode(() => parseSubjectKey({line: 'ssh-ed25519'}), 'ERR_SSH_FORMAT', {reason: 'bad_request'})
    const dss = Buffer.concat([Buffer.from([0, 0, 0, 7]), Buffer.from('ssh-dss'), Buffer.alloc(16)])
    throwsCode(() => parseSubjectKey({blobBase64: dss.toString('base64')}), 'ERR_SSH_UNSUPPORTED', {
      reason: 'bad_request',
    })
  })

  it('serials are random, 64-bit and never 0', () => {
    const seen = new Set(Array.from({length: 200}, () => randomSerial()))
    assert.equal(seen.size, 200)
    for (const s of seen) assert.ok(s > 0n && s < 2n ** 64n)
  })

  it('a spent token: 401 saying when and on which serial; the second certificate is never recorded', async () => {
    const token = await w.mint({jti: 'once'})
    const first = await signUserCertificate(w.rt, ed().publicKey, token, 'user', trace())
    w.now += 5
    const t = trace()
    const err = await signUserCertificate(w.rt, ed().publicKey, token, 'user', t).catch(
      (e: {code: string; details: Record<string, unknown>}) => e,
    )
    assert.deepEqual((err as {code: string}).code, 'ERR_TOKEN_REPLAYED')
    assert.deepEqual((err as {details: Record<string, unknown>}).details, {
      reason: 'token_replayed',
      spent_at: new Date(T0 * 1000).toISOString(),
      spent_on_serial: first.serial.toString(),
    })
    assert.equal(w.audit.events.filter((e) => e.request_id === t.request_id).length, 0)
    assert.deepEqual(
      w.decisions.map((d) => d.outcome),
      ['issued'],
    )
  })

  it('a revoked key ID or key: 403 revoked, naming the revocation', async () => {
    const r = await w.store.revoke({
      serial: null,
      keyId: 'alice@example.com',
      keyFingerprint: null,
      reason: 'left',
      revokedAt: T0 - 100,
    })
    await rejectsCode(signUserCertificate(w.rt, ed().publicKey, await w.mint(), 'user', trace()), 'ERR_POLICY_DENIED', {
      reason: 'revoked',
      revocation_id: r.id,
      revoked_at: new Date((T0 - 100) * 1000).toISOString(),
    })
    const key = ed()
    const byKey = await w.store.revoke({
      serial: null,
      keyId: null,
      keyFingerprint: key.publicKey.fingerprint(),
      reason: 'lost',
      revokedAt: T0,
    })
    await rejectsCode(
      signUserCertificate(w.rt, key.publicKey, await w.mint({email: 'bob@example.com'}), 'user', trace()),
      'ERR_POLICY_DENIED',
      {reason: 'revoked', revocation_id: byKey.id},
    )
    assert.equal(
      (await signUserCertificate(w.rt, ed().publicKey, await w.mint({email: 'bob@example.com'}), 'user', trace()))
        .keyId,
      'bob@example.com',
    )
  })

  it('issue() without a meter still issues', async () => {
    const {meter: _meter, ...bare} = w.rt
    const key = ed()
    const cert = await signCertificate(
      {
        type: 'user',
        publicKey: key.publicKey,
        serial: 5n,
        keyId: 'k',
        principals: ['p'],
        validAfter: BigInt(T0),
        validBefore: BigInt(T0 + 60),
      },
      w.rt.material.userCa.active,
    )
    assert.equal((await issue(bare, cert, {id: 'x#1', expiresAt: T0 + 60, issuedAt: 0}, trace())).serial, 5n)
    // the record has no rule, subject or provisioner when the trace has none
    assert.deepEqual(await w.store.findCertificate(5n).then((r) => [r?.provisioner, r?.rule, r?.subject]), [
      '',
      null,
      null,
    ])
  })
})

describe('host certificates: enrollment, renewal, rekey, self-revocation (host.ts)', () => {
  let w: World
  beforeEach(async () => {
    w = await world()
  })
  afterEach(async () => w.store.close())

  const enrolToken = (o: {hostname?: string; principals?: string[]; keyFingerprint?: string; ttl?: number} = {}) =>
    mintEnrollmentToken(w.rt.material.enrollmentKey, {
      rootFingerprint: ROOT,
      hostname: o.hostname ?? 'web1.example.com',
      principals: o.principals,
      keyFingerprint: o.keyFingerprint,
      ttlSeconds: o.ttl ?? 600,
      now: w.now,
    })
  async function enrol(o: {principals?: string[]} = {}): Promise<{key: PrivateKey; cert: Certificate}> {
    const key = ed()
    const {token} = await enrolToken({principals: ['web1', 'web1.internal']})
    return {key, cert: await signHostCertificate(w.rt, key.publicKey, token, trace(), body(o.principals))}
  }
  const pop = (key: PrivateKey, cert: Certificate, action: SshpopAction) =>
    mintSshpopToken(key.keyObject, cert, {
      caUrl: 'https://ca.example.com',
      action,
      provisioner: SSHPOP_PROVISIONER,
      rootFingerprint: ROOT,
      now: w.now,
    })

  it('enrollment: the names the token binds (all, or those asked for), host:<name> as key ID, validity min(hostTtl, maxHostTtl)', async () => {
    const t = trace()
    const key = ed()
    const {token, jti} = await enrolToken({principals: ['web1']})
    const cert = await signHostCertificate(w.rt, key.publicKey, token, t, body())
    assert.deepEqual(
      [cert.type, cert.keyId, cert.principals, cert.validAfter, cert.validBefore],
      ['host', 'host:web1.example.com', ['web1.example.com', 'web1'], BigInt(T0 - 60), BigInt(T0 + 7 * 86400)],
    )
    assert.ok(cert.signatureKey.equals(w.rt.material.hostCa.active.publicKey))
    assert.deepEqual(
      [t.provisioner, t.subject, t.cert_type, t.key_type, t.key_fingerprint, t.token?.id],
      ['host-enrollment', 'web1.example.com', 'host', 'ssh-ed25519', key.publicKey.fingerprint(), `enroll#${jti}`],
    )
    const some = await signHostCertificate(
      w.rt,
      ed().publicKey,
      (await enrolToken({principals: ['web1']})).token,
      trace(),
      body(['web1']),
    )
    assert.deepEqual(some.principals, ['web1'])
    const capped = await world(
      YAML.replace('ssh: {hostTtl: 7d, maxHostTtl: 30d}', 'ssh: {hostTtl: 7d, maxHostTtl: 7d}'),
    )
    try {
      const c = await signHostCertificate(
        capped.rt,
        ed().publicKey,
        (
          await mintEnrollmentToken(capped.rt.material.enrollmentKey, {
            rootFingerprint: ROOT,
            hostname: 'h',
            ttlSeconds: 600,
            now: T0,
          })
        ).token,
        trace(),
        body(),
      )
      assert.equal(c.validBefore, BigInt(T0 + 7 * 86400))
    } finally {
      await capped.store.close()
    }
  })

  it('an enrollment token that names no host is refused (401 token_invalid): the certificate would be valid for every host name', async () => {
    const token = await new SignJWT({})
      .setProtectedHeader({alg: 'EdDSA', typ: ENROLLMENT_TYP})
      .setIssuer(caIssuer(ROOT))
      .setAudience(ENROLLMENT_AUDIENCE)
      .setSubject('web1.example.com')
      .setJti(randomUUID())
      .setIssuedAt(w.now)
      .setExpirationTime(w.now + 600)
      .sign(w.rt.material.enrollmentKey)
    await rejectsCode(signHostCertificate(w.rt, ed().publicKey, token, trace(), body()), 'ERR_TOKEN_INVALID', {
      reason: 'token_invalid',
    })
    assert.equal((await w.store.certificates({limit: 10})).length, 0)
  })

  it('no path certifies a key anyone can sign with: user signing, enrollment, rekey (400 key_unsafe, before the token: nothing spent)', async () => {
    const neutral = PublicKey.fromBlob(neutralKeyBlob())
    const userToken = await w.mint()
    await rejectsCode(signUserCertificate(w.rt, neutral, userToken, 'user', trace()), 'ERR_SSH_UNSUPPORTED', {
      reason: 'key_unsafe',
    })
    const {token} = await enrolToken()
    await rejectsCode(signHostCertificate(w.rt, neutral, token, trace(), body()), 'ERR_SSH_UNSUPPORTED', {
      reason: 'key_unsafe',
    })
    const h = await enrol()
    await rejectsCode(
      rekeyHostCertificate(w.rt, await pop(h.key, h.cert, 'rekey'), neutral, trace()),
      'ERR_SSH_UNSUPPORTED',
      {
        reason: 'key_unsafe',
      },
    )
    assert.equal((await w.store.certificates({limit: 10})).length, 1, 'only the enrolment of a real key')
    // each token still signs for a real key
    assert.equal((await signUserCertificate(w.rt, ed().publicKey, userToken, 'user', trace())).type, 'user')
    assert.equal((await signHostCertificate(w.rt, ed().publicKey, token, trace(), body())).type, 'host')
  })

  it('a certificate for a key anyone can sign with, issued before the CA refused them, proves nothing: forged renew, rekey and revoke refused (403 key_unsafe)', async () => {
    const neutral = PublicKey.fromBlob(neutralKeyBlob())
    const old = await signCertificate(
      {
        type: 'host',
        publicKey: neutral,
        serial: randomSerial(),
        keyId: 'host:web1.example.com',
        principals: ['web1.example.com'],
        validAfter: BigInt(w.now - 60),
        validBefore: BigInt(w.now + 86400),
      },
      w.rt.material.hostCa.active,
    )
    await issue(w.rt, old, {id: 'enroll#before-the-fix', expiresAt: w.now + 600, issuedAt: w.now}, trace(), {
      kind: 'enrol',
      keyBound: false,
    })
    // anyone who saw the certificate (every SSH handshake with the host shows it) signs for its key
    const forged = (action: SshpopAction, newKey?: string) =>
      mintSshpopTokenWith(async () => neutralSshSignature(), old, {
        caUrl: 'https://ca.example.com',
        action,
        provisioner: SSHPOP_PROVISIONER,
        rootFingerprint: ROOT,
        now: w.now,
        ...(newKey ? {newKey} : {}),
      })
    const thief = ed().publicKey
    const unsafe = {reason: 'key_unsafe'}
    await rejectsCode(renewHostCertificate(w.rt, await forged('renew'), trace()), 'ERR_POLICY_DENIED', unsafe)
    await rejectsCode(
      rekeyHostCertificate(w.rt, await forged('rekey', thief.fingerprint()), thief, trace()),
      'ERR_POLICY_DENIED',
      unsafe,
    )
    await rejectsCode(
      revokeOwnCertificate(w.rt, {token: await forged('revoke'), serial: old.serial.toString(), reason: 'x'}, trace()),
      'ERR_POLICY_DENIED',
      unsafe,
    )
    assert.deepEqual(
      (await w.store.certificates({limit: 10})).map((c) => c.serial),
      [old.serial],
    )
    assert.equal(
      await w.store.revocationFor({serial: old.serial, keyId: old.keyId, keyFingerprint: neutral.fingerprint()}),
      undefined,
    )
  })

  it('enrollment refuses names the token does not bind, a key it is not bound to, a spent token', async () => {
    const {token} = await enrolToken({principals: ['web1']})
    await rejectsCode(
      signHostCertificate(w.rt, ed().publicKey, token, trace(), body(['web1', 'db1'])),
      'ERR_POLICY_DENIED',
      {reason: 'host_not_bound', requested: ['web1', 'db1'], bound: ['web1.example.com', 'web1']},
    )
    const key = ed()
    const bound = (await enrolToken({keyFingerprint: key.publicKey.fingerprint()})).token
    await rejectsCode(signHostCertificate(w.rt, ed().publicKey, bound, trace(), body()), 'ERR_POLICY_DENIED', {
      reason: 'key_not_bound',
    })
    assert.equal((await signHostCertificate(w.rt, key.publicKey, bound, trace(), body())).type, 'host')
    await rejectsCode(signHostCertificate(w.rt, ed().publicKey, bound, trace(), body()), 'ERR_POLICY_DENIED', {
      reason: 'key_not_bound',
    })
    // the unbound token is still good after the refusal above (nothing was spent), once
    const k2 = ed()
    assert.equal((await signHostCertificate(w.rt, k2.publicKey, token, trace(), body())).type, 'host')
    await rejectsCode(signHostCertificate(w.rt, ed().publicKey, token, trace(), body()), 'ERR_TOKEN_REPLAYED', {
      reason: 'token_replayed',
    })
    // a weak key, or issuance off, before the token
    await rejectsCode(
      signHostCertificate(
        w.rt,
        PublicKey.fromKeyObject(generateKeyPairSync('rsa', {modulusLength: 2048}).publicKey),
        (await enrolToken()).token,
        trace(),
        body(),
      ),
      'ERR_SSH_UNSUPPORTED',
    )
  })

  it('renewal: a new serial for the same key, names and key ID, no options, validity from now; lineage moves on', async () => {
    const h = await enrol()
    w.now += 3600
    const t = trace()
    const fresh = await renewHostCertificate(w.rt, await pop(h.key, h.cert, 'renew'), t)
    assert.notEqual(fresh.serial, h.cert.serial)
    assert.ok(fresh.publicKey.equals(h.key.publicKey))
    assert.ok(fresh.signatureKey.equals(w.rt.material.hostCa.active.publicKey))
    assert.deepEqual(
      [
        fresh.type,
        fresh.keyId,
        fresh.principals,
        fresh.validAfter,
        fresh.validBefore,
        fresh.criticalOptions,
        fresh.extensions,
      ],
      ['host', h.cert.keyId, h.cert.principals, BigInt(w.now - 60), BigInt(w.now + 7 * 86400), {}, {}],
    )
    assert.deepEqual(
      [t.provisioner, t.cert_type, t.subject, t.key_fingerprint],
      [SSHPOP_PROVISIONER, 'host', h.cert.keyId, h.key.publicKey.fingerprint()],
    )
    assert.match(t.token!.id, /^sshpop#/)
    // the old one renewed again (its answer lost): the same certificate, byte for byte, audited as
    // handed out again, not as an issuance; nothing new recorded
    w.now += 60
    const recorded = (await w.store.certificates({limit: 100})).length
    const t2 = trace()
    const again = await renewHostCertificate(w.rt, await pop(h.key, h.cert, 'renew'), t2)
    assert.ok(again.blob.equals(fresh.blob))
    assert.equal((await w.store.certificates({limit: 100})).length, recorded)
    const lines = w.audit.events.filter((e) => e.request_id === t2.request_id)
    assert.deepEqual(
      lines.map((e) => [e.event, e.serial, e.parent_serial, e.lineage, e.issued_request_id, e.issued_at]),
      [
        [
          'certificate_redelivered',
          fresh.serial.toString(),
          h.cert.serial.toString(),
          'renew',
          t.request_id,
          new Date((w.now - 60) * 1000).toISOString(),
        ],
      ],
    )
    // the new one renews; then the first, two steps back, is superseded
    const third = await renewHostCertificate(w.rt, await pop(h.key, fresh, 'renew'), trace())
    assert.equal(third.type, 'host')
    await rejectsCode(renewHostCertificate(w.rt, await pop(h.key, h.cert, 'renew'), trace()), 'ERR_POLICY_DENIED', {
      reason: 'superseded',
      newest_serial: third.serial.toString(),
    })
  })

  it('a renewal is handed out again only as this request would be issued: for this key, key ID and names, signed by a published host CA key', async () => {
    const h = await enrol()
    const fresh = await renewHostCertificate(w.rt, await pop(h.key, h.cert, 'renew'), trace())
    // the record says what was issued; a record whose bytes no longer fit (another key, say) is not handed out
    const store = w.rt.store as unknown as Record<string, unknown>
    const issue = w.rt.store.issue.bind(w.rt.store)
    const other = await signHostCertificate(w.rt, ed().publicKey, (await enrolToken()).token, trace(), body())
    store.issue = async (req: Parameters<typeof issue>[0]) => {
      const out = await issue(req)
      return !out.ok && out.reason === 'redelivered'
        ? {...out, certificate: {...out.certificate, certificate: other.blob.toString('base64')}}
        : out
    }
    try {
      const t = trace()
      await rejectsCode(renewHostCertificate(w.rt, await pop(h.key, h.cert, 'renew'), t), 'ERR_POLICY_DENIED', {
        reason: 'superseded',
        newest_serial: fresh.serial.toString(),
      })
      assert.equal(w.audit.events.filter((e) => e.request_id === t.request_id).length, 0)
    } finally {
      delete store.issue
    }
    assert.ok((await renewHostCertificate(w.rt, await pop(h.key, h.cert, 'renew'), trace())).blob.equals(fresh.blob))
  })

  it('a reload that changes what decides a host certificate, landing while it is signed (a slow HSM): refused (503 policy_reloaded), nothing spent; sent again, the policy in force decides it', async () => {
    const signer = w.rt.material.hostCa.active
    const reloadWhileSigning = (yaml: string) => reloadWhileHostSigns(w, yaml)
    const restore = () => (w.rt.material = {...w.rt.material, hostCa: {...w.rt.material.hostCa, active: signer}})
    const key = ed()
    const {token} = await enrolToken()
    // the host TTL cut from 7 days to 1 while the certificate was signed under the old one
    reloadWhileSigning(YAML.replace('hostTtl: 7d', 'hostTtl: 1d'))
    await rejectsCode(signHostCertificate(w.rt, key.publicKey, token, trace(), body()), 'ERR_CA_OVERLOADED', {
      reason: 'policy_reloaded',
    })
    restore()
    assert.equal((await w.store.certificates({limit: 10})).length, 0, 'nothing recorded')
    const again = await signHostCertificate(w.rt, key.publicKey, token, trace(), body())
    assert.equal(again.validBefore, BigInt(w.now + 86400), 'the token was not spent; the new hostTtl decides')
    // a renewal whose SSHPOP token was checked against dnsNames a reload then changes
    reloadWhileSigning(
      YAML.replace('hostTtl: 7d', 'hostTtl: 1d').replace('dnsNames: [ca.example.com]', 'dnsNames: [ca2.example.com]'),
    )
    await rejectsCode(renewHostCertificate(w.rt, await pop(key, again, 'renew'), trace()), 'ERR_CA_OVERLOADED', {
      reason: 'policy_reloaded',
    })
    restore()
    // a reload that changes only a user provisioner refuses no host request in flight
    const inForce = YAML.replace('hostTtl: 7d', 'hostTtl: 1d').replace(
      'dnsNames: [ca.example.com]',
      'dnsNames: [ca2.example.com]',
    )
    reloadWhileSigning(inForce.replace('ttl: 1h', 'ttl: 2h'))
    assert.equal(
      (await signHostCertificate(w.rt, ed().publicKey, (await enrolToken()).token, trace(), body())).type,
      'host',
    )
    restore()
  })

  it('a reload and its undoing while a host certificate is renewed: it is made under the policy captured at the start, not the one in force for a moment between', async () => {
    const key = ed()
    const first = await signHostCertificate(w.rt, key.publicKey, (await enrolToken()).token, trace(), body())
    const token = await pop(key, first, 'renew')
    const signer = w.rt.material.hostCa.active
    const start = w.rt.policy
    const store = w.rt.store as unknown as Record<string, unknown>
    const revocationFor = w.rt.store.revocationFor.bind(w.rt.store)
    // a SIGHUP cutting hostTtl to 1 day lands while the proof is checked (a store call)...
    store.revocationFor = async (q: Parameters<typeof revocationFor>[0]) => {
      w.rt.policy = {
        config: parseConfig(YAML.replace('hostTtl: 7d', 'hostTtl: 1d'), '/nonexistent/ca.yaml').config,
        verifier: start.verifier,
      }
      return revocationFor(q)
    }
    // ...and another, ca.yaml back as it was, while the certificate is signed (a slow HSM)
    reloadWhileHostSigns(w, YAML)
    try {
      const renewed = await renewHostCertificate(w.rt, token, trace())
      // the policy at the start and the one in force at the commit both say 7 days
      assert.equal(renewed.validBefore, BigInt(w.now + 7 * 86400), 'made under the hostTtl in force for a moment only')
    } finally {
      delete store.revocationFor
      w.rt.material = {...w.rt.material, hostCa: {...w.rt.material.hostCa, active: signer}}
      w.rt.policy = start
    }
  })

  it('enrolling a key again restarts its lineage: the earlier certificate renews no more', async () => {
    const key = ed()
    const first = await signHostCertificate(w.rt, key.publicKey, (await enrolToken()).token, trace(), body())
    const second = await signHostCertificate(w.rt, key.publicKey, (await enrolToken()).token, trace(), body())
    await rejectsCode(renewHostCertificate(w.rt, await pop(key, first, 'renew'), trace()), 'ERR_POLICY_DENIED', {
      reason: 'superseded',
      newest_serial: second.serial.toString(),
    })
    assert.equal((await renewHostCertificate(w.rt, await pop(key, second, 'renew'), trace())).type, 'host')
  })

  it('a revocation that lands between the checks and the write still refuses: the parent, or the key ID', async () => {
    const h = await enrol()
    const next = () =>
      signCertificate(
        {
          type: 'host',
          publicKey: h.key.publicKey,
          serial: randomSerial(),
          keyId: h.cert.keyId,
          principals: h.cert.principals,
          validAfter: BigInt(w.now),
          validBefore: BigInt(w.now + 60),
        },
        w.rt.material.hostCa.active,
      )
    const byKeyId = await w.store.revoke({
      serial: null,
      keyId: h.cert.keyId,
      keyFingerprint: null,
      reason: 'r',
      revokedAt: T0,
    })
    await rejectsCode(
      issue(w.rt, await next(), {id: 'race#1', expiresAt: T0 + 60, issuedAt: 0}, trace(), {
        kind: 'renew',
        parent: h.cert.serial,
      }),
      'ERR_POLICY_DENIED',
      {reason: 'revoked', revocation_id: byKeyId.id},
    )
    await w.store.unrevoke(byKeyId.id!)
    const parent = await w.store.revoke({
      serial: h.cert.serial,
      keyId: null,
      keyFingerprint: null,
      reason: 'r',
      revokedAt: T0 + 1,
    })
    await rejectsCode(
      issue(w.rt, await next(), {id: 'race#2', expiresAt: T0 + 60, issuedAt: 0}, trace(), {
        kind: 'renew',
        parent: h.cert.serial,
      }),
      'ERR_POLICY_DENIED',
      {reason: 'certificate_revoked', revocation_id: parent.id, revoked_at: new Date((T0 + 1) * 1000).toISOString()},
    )
  })

  it('renewal refuses a user certificate, a certificate of another CA key, one it never issued, an expired or revoked one', async () => {
    const h = await enrol()
    // a user certificate of this CA
    const u = ed()
    const user = await signUserCertificate(w.rt, u.publicKey, await w.mint(), 'user', trace())
    await rejectsCode(renewHostCertificate(w.rt, await pop(u, user, 'renew'), trace()), 'ERR_POLICY_DENIED', {
      reason: 'cert_type_not_allowed',
    })
    // a host certificate signed by the user CA key, and a user certificate signed by the host CA key (revoke takes both types)
    const wrongKey = await signCertificate({...h.cert, serial: h.cert.serial}, w.rt.material.userCa.active)
    await rejectsCode(renewHostCertificate(w.rt, await pop(h.key, wrongKey, 'renew'), trace()), 'ERR_TOKEN_INVALID', {
      reason: 'ca_key_unknown',
    })
    const userByHostKey = await signCertificate({...user, serial: user.serial}, w.rt.material.hostCa.active)
    await rejectsCode(
      revokeOwnCertificate(
        w.rt,
        {token: await pop(u, userByHostKey, 'revoke'), serial: user.serial.toString(), reason: 'x'},
        trace(),
      ),
      'ERR_TOKEN_INVALID',
      {reason: 'ca_key_unknown'},
    )
    // the right key, a broken signature
    const broken = Buffer.from(h.cert.blob)
    broken[broken.length - 5]! ^= 0xff
    await rejectsCode(
      renewHostCertificate(w.rt, await pop(h.key, parseCertificate(broken), 'renew'), trace()),
      'ERR_TOKEN_INVALID',
      {reason: 'proof_invalid'},
    )
    // signed by this CA, never issued (no record), or issued with other bytes under that serial
    const unknown = await signCertificate({...h.cert, serial: 12345n}, w.rt.material.hostCa.active)
    await rejectsCode(renewHostCertificate(w.rt, await pop(h.key, unknown, 'renew'), trace()), 'ERR_POLICY_DENIED', {
      reason: 'certificate_unknown',
    })
    const twin = await signCertificate({...h.cert, principals: ['web1', 'db1']}, w.rt.material.hostCa.active)
    await rejectsCode(renewHostCertificate(w.rt, await pop(h.key, twin, 'renew'), trace()), 'ERR_POLICY_DENIED', {
      reason: 'certificate_unknown',
    })
    // expired: at validBefore exactly, not a second later
    const renewAt = async (now: number) => {
      w.now = now
      return renewHostCertificate(w.rt, await pop(h.key, h.cert, 'renew'), trace())
    }
    await rejectsCode(renewAt(Number(h.cert.validBefore)), 'ERR_POLICY_DENIED', {reason: 'certificate_expired'})
    assert.equal((await renewAt(Number(h.cert.validBefore) - 1)).type, 'host')
  })

  it('a revoked certificate, key ID or key renews no more; the denial names the revocation', async () => {
    const a = await enrol()
    const bySerial = await w.store.revoke({
      serial: a.cert.serial,
      keyId: null,
      keyFingerprint: null,
      reason: 'r',
      revokedAt: T0,
    })
    await rejectsCode(renewHostCertificate(w.rt, await pop(a.key, a.cert, 'renew'), trace()), 'ERR_POLICY_DENIED', {
      reason: 'certificate_revoked',
      revocation_id: bySerial.id,
    })
    const b = await enrol()
    const byKey = await w.store.revoke({
      serial: null,
      keyId: null,
      keyFingerprint: b.key.publicKey.fingerprint(),
      reason: 'r',
      revokedAt: T0,
    })
    await rejectsCode(renewHostCertificate(w.rt, await pop(b.key, b.cert, 'renew'), trace()), 'ERR_POLICY_DENIED', {
      reason: 'revoked',
      revocation_id: byKey.id,
    })
    // issuance off: no renewal, but a certificate may still revoke itself
    const c = await enrol()
    const off = {...w.rt, policy: {...w.rt.policy, config: {...w.rt.policy.config, disabled: true}}}
    const t1 = trace()
    await rejectsCode(renewHostCertificate(off, await pop(c.key, c.cert, 'renew'), t1), 'ERR_ISSUANCE_DISABLED')
    const t2 = trace()
    await rejectsCode(
      rekeyHostCertificate(off, await pop(c.key, c.cert, 'rekey'), ed().publicKey, t2),
      'ERR_ISSUANCE_DISABLED',
    )
    const t3 = trace()
    await rejectsCode(
      signHostCertificate(off, ed().publicKey, (await enrolToken()).token, t3, body()),
      'ERR_ISSUANCE_DISABLED',
    )
    // what the refusal is audited as
    assert.deepEqual(
      [t1, t2, t3].map((t) => [t.cert_type, t.provisioner]),
      [
        ['host', SSHPOP_PROVISIONER],
        ['host', SSHPOP_PROVISIONER],
        ['host', 'host-enrollment'],
      ],
    )
    assert.equal(
      (
        await revokeOwnCertificate(
          off,
          {token: await pop(c.key, c.cert, 'revoke'), serial: c.cert.serial.toString(), reason: 'done'},
          trace(),
        )
      ).certificate.serial,
      c.cert.serial.toString(),
    )
  })

  it('rekey: the same certificate for a new key, not for the same key or a weak one', async () => {
    const h = await enrol()
    await rejectsCode(
      rekeyHostCertificate(w.rt, await pop(h.key, h.cert, 'rekey'), h.key.publicKey, trace()),
      'ERR_INPUT',
      {reason: 'bad_request'},
    )
    await rejectsCode(
      rekeyHostCertificate(
        w.rt,
        await pop(h.key, h.cert, 'rekey'),
        PublicKey.fromKeyObject(generateKeyPairSync('rsa', {modulusLength: 2048}).publicKey),
        trace(),
      ),
      'ERR_SSH_UNSUPPORTED',
    )
    const fresh = ed()
    const t = trace()
    const c = await rekeyHostCertificate(w.rt, await pop(h.key, h.cert, 'rekey'), fresh.publicKey, t)
    assert.ok(c.publicKey.equals(fresh.publicKey))
    assert.deepEqual(
      [c.keyId, c.principals, c.criticalOptions, c.extensions, c.validBefore],
      [h.cert.keyId, h.cert.principals, {}, {}, BigInt(w.now + 7 * 86400)],
    )
    assert.deepEqual([t.key_fingerprint, t.key_type], [fresh.publicKey.fingerprint(), 'ssh-ed25519'])
    // the old key's lineage ended: its certificate neither renews nor rekeys again
    await rejectsCode(renewHostCertificate(w.rt, await pop(h.key, h.cert, 'renew'), trace()), 'ERR_POLICY_DENIED', {
      reason: 'superseded',
    })
    await rejectsCode(
      rekeyHostCertificate(w.rt, await pop(h.key, h.cert, 'rekey'), ed().publicKey, trace()),
      'ERR_POLICY_DENIED',
      {reason: 'superseded'},
    )
    assert.equal((await renewHostCertificate(w.rt, await pop(fresh, c, 'renew'), trace())).type, 'host')
    // each rekey spends its own proof: a second host rekeys too
    const h3 = await enrol()
    assert.ok(
      (await rekeyHostCertificate(w.rt, await pop(h3.key, h3.cert, 'rekey'), ed().publicKey, trace())).keyId ===
        h3.cert.keyId,
    )
    // a renew proof does not rekey
    const h2 = await enrol()
    await rejectsCode(
      rekeyHostCertificate(w.rt, await pop(h2.key, h2.cert, 'renew'), ed().publicKey, trace()),
      'ERR_TOKEN_INVALID',
      {reason: 'proof_invalid'},
    )
  })

  it('self-revocation: only its own serial, in decimal; recorded with the reason and time; twice is refused', async () => {
    const h = await enrol()
    for (const serial of ['0x10', '', '-1', '1'.repeat(21), `${h.cert.serial} `]) {
      await rejectsCode(
        revokeOwnCertificate(w.rt, {token: await pop(h.key, h.cert, 'revoke'), serial, reason: 'x'}, trace()),
        'ERR_INPUT',
        {reason: 'bad_request'},
      ).catch((e: Error) => assert.fail(`${JSON.stringify(serial)}: ${e.message}`))
    }
    const other = await enrol()
    await rejectsCode(
      revokeOwnCertificate(
        w.rt,
        {token: await pop(h.key, h.cert, 'revoke'), serial: other.cert.serial.toString(), reason: 'x'},
        trace(),
      ),
      'ERR_POLICY_DENIED',
      {reason: 'serial_mismatch'},
    )
    assert.deepEqual(await w.store.revocations(), [])
    w.now += 10
    const r = await revokeOwnCertificate(
      w.rt,
      {token: await pop(h.key, h.cert, 'revoke'), serial: h.cert.serial.toString(), reason: 'decommissioned'},
      trace(),
    )
    assert.deepEqual(
      {...r.revocation, id: undefined},
      {
        id: undefined,
        serial: h.cert.serial,
        keyId: null,
        keyFingerprint: null,
        reason: 'decommissioned',
        revokedAt: T0 + 10,
      },
    )
    assert.deepEqual(r.certificate, {
      serial: h.cert.serial.toString(),
      keyId: h.cert.keyId,
      principals: h.cert.principals,
      certType: 'host',
      validBefore: new Date(Number(h.cert.validBefore) * 1000).toISOString(),
    })
    await rejectsCode(
      revokeOwnCertificate(
        w.rt,
        {token: await pop(h.key, h.cert, 'revoke'), serial: h.cert.serial.toString(), reason: 'again'},
        trace(),
      ),
      'ERR_POLICY_DENIED',
      {reason: 'certificate_revoked'},
    )
    // an expired certificate needs no revocation
    w.now = Number(other.cert.validBefore)
    await rejectsCode(
      revokeOwnCertificate(
        w.rt,
        {token: await pop(other.key, other.cert, 'revoke'), serial: other.cert.serial.toString(), reason: 'x'},
        trace(),
      ),
      'ERR_POLICY_DENIED',
      {reason: 'certificate_expired'},
    )
  })

  it('the KRL lists revoked serials and key IDs under both CA keys and revoked keys by SHA-256; its version and time follow the revocations', async () => {
    const empty = parseKrl(await currentKrl(w.rt))
    assert.deepEqual([empty.generatedAt, empty.comment, empty.revokedKeySha256], [0n, 'sshca', []])
    const key = ed()
    await w.store.revoke({serial: 77n, keyId: null, keyFingerprint: null, reason: 'a', revokedAt: T0 + 5})
    await w.store.revoke({serial: null, keyId: 'host:old', keyFingerprint: null, reason: 'b', revokedAt: T0 + 9})
    await w.store.revoke({
      serial: null,
      keyId: null,
      keyFingerprint: key.publicKey.fingerprint(),
      reason: 'c',
      revokedAt: T0 + 7,
    })
    const krl = parseKrl(await currentKrl(w.rt))
    assert.equal(krl.generatedAt, BigInt(T0 + 9))
    assert.ok(krl.version > empty.version)
    assert.equal(krl.version, BigInt(await w.store.revocationSnapshot().then((s) => s.generation)))
    assert.deepEqual(
      krl.sections.map((s) => [s.caKeyBlob.toString('base64'), s.serials, s.keyIds]),
      [w.rt.material.userCa.active.publicKey, w.rt.material.hostCa.active.publicKey].map((k) => [
        k.blob.toString('base64'),
        [77n],
        ['host:old'],
      ]),
    )
    assert.deepEqual(krl.revokedKeySha256, [Buffer.from(key.publicKey.fingerprint().slice('SHA256:'.length), 'base64')])
  })

  it('the host inventory: current, unrevoked host certificates, one per key', async () => {
    const a = await enrol()
    const b = await enrol()
    await w.store.revoke({serial: b.cert.serial, keyId: null, keyFingerprint: null, reason: 'gone', revokedAt: T0})
    await signUserCertificate(w.rt, ed().publicKey, await w.mint(), 'user', trace())
    assert.deepEqual(await currentHosts(w.rt), [
      {
        principals: a.cert.principals,
        serial: a.cert.serial.toString(),
        keyId: a.cert.keyId,
        validBefore: new Date(Number(a.cert.validBefore) * 1000).toISOString(),
        keyFingerprint: a.key.publicKey.fingerprint(),
      },
    ])
    w.now = Number(a.cert.validBefore) + 1
    assert.deepEqual(await currentHosts(w.rt), [])
  })
})
