/**
 * The CA's own tokens, attacked one claim at a time: host enrollment tokens (src/ca/provisioner/
 * enrollment.ts) and SSHPOP proofs of possession (pop.ts). Each forged token is signed correctly, so
 * only the check under test can refuse it; the untouched token is accepted, so no check passes by
 * refusing everything. Written from the survivors of mutation testing (issue 18).
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync, type KeyObject} from 'node:crypto'
import {SignJWT} from 'jose'
import {mintEnrollmentToken, verifyEnrollmentToken} from '../../../src/ca/provisioner/enrollment.ts'
import {popCertificate, sshpopAudiences, verifyPop, type PopCheck} from '../../../src/ca/provisioner/pop.ts'
import {
  caIssuer,
  ENROLLMENT_AUDIENCE,
  ENROLLMENT_TYP,
  MAX_ENROLLMENT_TTL,
  MAX_POP_TTL,
  TOKEN_LEEWAY,
} from '../../../src/protocol/tokens.ts'
import {signCertificate, type Certificate} from '../../../src/ssh/cert.ts'
import {generatePrivateKey, type PrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {rejectsCode} from '../../helpers/assert.ts'

const NOW = 1_800_000_000
const ROOT = 'ab'.repeat(32)
const FP_A = `SHA256:${'A'.repeat(43)}`
const FP_B = `SHA256:${'B'.repeat(43)}`

describe('host enrollment tokens', () => {
  let key: KeyObject
  before(() => {
    key = generateKeyPairSync('ed25519').privateKey
  })
  const verify = (
    token: string,
    o: {now?: number; keyFingerprint?: string; enrollmentKey?: KeyObject; rootFingerprint?: string} = {},
  ) =>
    verifyEnrollmentToken(token, {
      enrollmentKey: o.enrollmentKey ?? key,
      rootFingerprint: o.rootFingerprint ?? ROOT,
      now: o.now ?? NOW,
      keyFingerprint: o.keyFingerprint ?? FP_A,
    })

  /** A token as ca token mints it, with `claims` and `header` changed; signed by `signWith`. */
  function forge(
    claims: Record<string, unknown> = {},
    o: {header?: Record<string, unknown>; signWith?: KeyObject; iat?: number; exp?: number; nbf?: number} = {},
  ) {
    const body: Record<string, unknown> = {
      principals: ['web1.example.com'],
      iss: caIssuer(ROOT),
      aud: ENROLLMENT_AUDIENCE,
      sub: 'web1.example.com',
      jti: 'j1',
      iat: o.iat ?? NOW,
      nbf: o.nbf ?? NOW - TOKEN_LEEWAY,
      exp: o.exp ?? NOW + 600,
      ...claims,
    }
    for (const [k, v] of Object.entries(body)) if (v === undefined) delete body[k]
    return new SignJWT(body)
      .setProtectedHeader({alg: 'EdDSA', typ: ENROLLMENT_TYP, ...o.header})
      .sign(o.signWith ?? key)
  }

  it('mints what it verifies: names deduplicated, the host first; unbound unless a key is given', async () => {
    const t = await mintEnrollmentToken(key, {
      rootFingerprint: ROOT,
      hostname: 'web1',
      principals: ['web1', 'web1.example.com', 'web1'],
      ttlSeconds: 600,
      now: NOW,
    })
    assert.deepEqual([t.principals, t.expiresAt, t.boundKey], [['web1', 'web1.example.com'], NOW + 600, null])
    const v = await verify(t.token)
    assert.deepEqual(v, {
      subject: 'web1',
      jti: t.jti,
      principals: ['web1', 'web1.example.com'],
      boundKey: undefined,
      expiresAt: NOW + 600 + TOKEN_LEEWAY,
      issuedAt: NOW,
    })
    const bound = await mintEnrollmentToken(key, {
      rootFingerprint: ROOT,
      hostname: 'web1',
      keyFingerprint: FP_A,
      ttlSeconds: 600,
      now: NOW,
    })
    assert.equal(bound.boundKey, FP_A)
    assert.equal((await verify(bound.token)).boundKey, FP_A)
  })

  it('minting refuses unsafe names and a malformed key fingerprint; the lifetime is capped at a day', async () => {
    for (const hostname of ['a b', 'a,b', '', 'x'.repeat(257)]) {
      await assert.rejects(
        mintEnrollmentToken(key, {rootFingerprint: ROOT, hostname, ttlSeconds: 600, now: NOW}),
        TypeError,
        JSON.stringify(hostname),
      )
    }
    await assert.rejects(
      mintEnrollmentToken(key, {
        rootFingerprint: ROOT,
        hostname: 'h',
        principals: ['ok', 'no\n'],
        ttlSeconds: 600,
        now: NOW,
      }),
      TypeError,
    )
    assert.equal(
      (await mintEnrollmentToken(key, {rootFingerprint: ROOT, hostname: 'x'.repeat(256), ttlSeconds: 600, now: NOW}))
        .principals[0]!.length,
      256,
    )
    for (const fp of ['SHA256:short', `MD5:${'A'.repeat(43)}`, `${FP_A}=`, ` ${FP_A}`]) {
      await assert.rejects(
        mintEnrollmentToken(key, {rootFingerprint: ROOT, hostname: 'h', keyFingerprint: fp, ttlSeconds: 600, now: NOW}),
        TypeError,
        fp,
      )
    }
    const long = await mintEnrollmentToken(key, {
      rootFingerprint: ROOT,
      hostname: 'h',
      ttlSeconds: 10 * MAX_ENROLLMENT_TTL,
      now: NOW,
    })
    assert.equal(long.expiresAt, NOW + MAX_ENROLLMENT_TTL)
    // and the capped token still verifies near its end (iat is not older than the CA accepts)
    assert.equal((await verify(long.token, {now: NOW + MAX_ENROLLMENT_TTL - 1})).subject, 'h')
  })

  it('a bound token enrols its key only; a binding that is there but unusable refuses, it never unbinds', async () => {
    assert.equal((await verify(await forge({cnf: {kid: FP_A}}))).boundKey, FP_A)
    await rejectsCode(verify(await forge({cnf: {kid: FP_B}})), 'ERR_POLICY_DENIED', {
      reason: 'key_not_bound',
      bound_key: FP_B,
      subject: 'web1.example.com',
      jti: 'j1',
    })
    for (const cnf of [{}, {kid: 5}, {kid: null}, 'SHA256:x', null, [FP_A], {jwk: {}}]) {
      await rejectsCode(verify(await forge({cnf})), 'ERR_POLICY_DENIED', {
        reason: 'key_not_bound',
        bound_key: null,
      }).catch((e: Error) => assert.fail(`${JSON.stringify(cnf)}: ${e.message}`))
    }
  })

  it('accepts the Ed25519 algorithm name as well as EdDSA, and nothing else', async () => {
    assert.equal((await verify(await forge({}, {header: {alg: 'Ed25519'}}))).jti, 'j1')
  })

  it('only names given as a list of strings count, and a token naming none is refused (its certificate would be valid for every host)', async () => {
    assert.deepEqual((await verify(await forge({principals: ['a', 5, null, 'b', {x: 1}]}))).principals, ['a', 'b'])
    for (const principals of ['web1.example.com', undefined, [], [5, null]])
      await rejectsCode(verify(await forge({principals})), 'ERR_TOKEN_INVALID', {reason: 'token_invalid'})
  })

  it('refuses a token of another CA, another purpose, another key, without jti/sub, or outside its time', async () => {
    const bad = async (token: Promise<string>, reason: string, o: Parameters<typeof verify>[1] = {}) =>
      rejectsCode(verify(await token, o), 'ERR_TOKEN_INVALID', {reason})
    await bad(forge(), 'token_invalid', {rootFingerprint: 'cd'.repeat(32)})
    await bad(forge({iss: caIssuer('cd'.repeat(32))}), 'token_invalid')
    await bad(forge({aud: 'sshca-something-else'}), 'token_invalid')
    await bad(forge({}, {header: {typ: 'JWT'}}), 'token_invalid')
    await bad(forge({}, {signWith: generateKeyPairSync('ed25519').privateKey}), 'token_invalid')
    await bad(forge({jti: undefined}), 'token_invalid')
    await bad(forge({sub: undefined}), 'token_invalid')
    // exp is checked with a minute of leeway, nbf likewise
    assert.equal((await verify(await forge(), {now: NOW + 600 + TOKEN_LEEWAY - 1})).jti, 'j1')
    await bad(forge(), 'token_expired', {now: NOW + 600 + TOKEN_LEEWAY + 1})
    await bad(forge({}, {nbf: NOW + 3600, iat: NOW + 3600, exp: NOW + 7200}), 'token_not_yet_valid')
    // issued too long ago for any enrollment token, although it has not expired
    await bad(forge({}, {iat: NOW - MAX_ENROLLMENT_TTL - TOKEN_LEEWAY - 120, exp: NOW + 600}), 'token_expired')
    assert.equal((await verify(await forge({}, {iat: NOW - MAX_ENROLLMENT_TTL, exp: NOW + 600}))).jti, 'j1')
    // the CA's clock may lag the one that minted it by up to the leeway, both ways
    assert.equal((await verify(await forge({}, {iat: NOW - MAX_ENROLLMENT_TTL - 30, exp: NOW + 600}))).jti, 'j1')
    const minted = await mintEnrollmentToken(key, {rootFingerprint: ROOT, hostname: 'h', ttlSeconds: 600, now: NOW})
    assert.equal((await verify(minted.token, {now: NOW - 30})).subject, 'h')
    await bad(Promise.resolve(minted.token), 'token_not_yet_valid', {now: NOW - TOKEN_LEEWAY * 2 - 1})
  })
})

describe('SSHPOP proofs of possession', () => {
  let hostKey: PrivateKey
  let cert: Certificate
  const check = (o: Partial<PopCheck> = {}): PopCheck => ({
    action: 'renew',
    provisioner: 'sshpop',
    dnsNames: ['ca.example.com', '127.0.0.1'],
    rootFingerprint: ROOT,
    now: NOW,
    ...o,
  })
  const AUD = 'https://ca.example.com/1.0/ssh/renew#sshpop/sshpop'

  before(async () => {
    hostKey = generatePrivateKey('ed25519')
    const ca = generatePrivateKey('ed25519')
    cert = await signCertificate(
      {
        type: 'host',
        publicKey: hostKey.publicKey,
        serial: 77n,
        keyId: 'host:web1',
        principals: ['web1'],
        validAfter: BigInt(NOW - 60),
        validBefore: BigInt(NOW + 86400),
      },
      keySigner(ca.keyObject),
    )
  })

  function pop(
    claims: Record<string, unknown> = {},
    o: {header?: Record<string, unknown>; signWith?: KeyObject; iat?: number; exp?: number} = {},
  ) {
    const body: Record<string, unknown> = {
      sha: ROOT,
      iss: 'sshpop',
      sub: '77',
      aud: AUD,
      jti: 'p1',
      iat: o.iat ?? NOW,
      nbf: NOW,
      exp: o.exp ?? NOW + MAX_POP_TTL,
      ...claims,
    }
    for (const [k, v] of Object.entries(body)) if (v === undefined) delete body[k]
    return new SignJWT(body)
      .setProtectedHeader({alg: 'EdDSA', typ: 'JWT', sshpop: cert.blob.toString('base64'), ...o.header})
      .sign(o.signWith ?? hostKey.keyObject)
  }
  const refused = async (token: Promise<string>, o: Partial<PopCheck> = {}) =>
    rejectsCode(verifyPop(await token, cert, check(o)), 'ERR_TOKEN_INVALID', {reason: 'proof_invalid'})

  it("accepts step's shape for each of the CA's names, any port, with or without /1.0", async () => {
    assert.deepEqual(await verifyPop(await pop(), cert, check()), {
      jti: 'p1',
      expiresAt: NOW + MAX_POP_TTL + TOKEN_LEEWAY,
      issuedAt: NOW,
    })
    for (const aud of [
      'https://ca.example.com:9443/1.0/ssh/renew#sshpop/sshpop',
      'https://127.0.0.1/ssh/renew#sshpop/sshpop',
      ['https://other.example/x', AUD],
    ]) {
      assert.equal((await verifyPop(await pop({aud}), cert, check())).jti, 'p1', JSON.stringify(aud))
    }
    // step adds sha in lower case; upper case is the same root. Without sha it is not checked.
    assert.equal((await verifyPop(await pop({sha: ROOT.toUpperCase()}), cert, check())).jti, 'p1')
    assert.equal((await verifyPop(await pop({sha: undefined}), cert, check())).jti, 'p1')
  })

  it('refuses an audience of another CA, action or provisioner, or one that is not plain https', async () => {
    for (const aud of [
      'https://ca.elsewhere.example/1.0/ssh/renew#sshpop/sshpop',
      'https://ca.example.com/1.0/ssh/rekey#sshpop/sshpop',
      'https://ca.example.com/1.0/ssh/renew#sshpop/other',
      'http://ca.example.com/1.0/ssh/renew#sshpop/sshpop',
      'https://user@ca.example.com/1.0/ssh/renew#sshpop/sshpop',
      'https://u:p@ca.example.com/1.0/ssh/renew#sshpop/sshpop',
      'https://ca.example.com/1.0/ssh/renew?x=1#sshpop/sshpop',
      'not a url',
      ['https://other.example/x', 'https://ca.elsewhere.example/ssh/renew#sshpop/sshpop'],
    ]) {
      await refused(pop({aud})).catch((e: Error) => assert.fail(`${JSON.stringify(aud)}: ${e.message}`))
    }
    await refused(pop(), {action: 'revoke'})
    await refused(pop(), {dnsNames: ['ca.elsewhere.example']})
    await refused(pop({iss: 'other'}))
  })

  it('refuses another serial, another root, a long life, an unusable jti, another signer', async () => {
    await refused(pop({sub: '78'}))
    await refused(pop({sub: '077'}))
    await refused(pop({sha: 'cd'.repeat(32)}))
    await refused(pop({sha: 5}))
    await refused(pop({}, {exp: NOW + MAX_POP_TTL + 1}))
    assert.equal((await verifyPop(await pop({}, {exp: NOW + MAX_POP_TTL}), cert, check())).jti, 'p1')
    await refused(pop({jti: 'x'.repeat(257)}))
    assert.equal((await verifyPop(await pop({jti: 'x'.repeat(256)}), cert, check())).jti, 'x'.repeat(256))
    await refused(pop({jti: 5}))
    await refused(pop({jti: undefined}))
    // printable ASCII only: it becomes the spent token's id, and a NUL in it failed a PostgreSQL group commit
    for (const jti of ['', 'a\u0000b', 'a b', 'tab\t', 'caf\u00e9', '\ud800', 'del\u007f'])
      await refused(pop({jti})).catch((e: Error) => assert.fail(`${JSON.stringify(jti)}: ${e.message}`))
    assert.equal((await verifyPop(await pop({jti: '!~azAZ09-_.'}), cert, check())).jti, '!~azAZ09-_.')
    // without exp it would never expire (and the replay memory would hold it for NaN seconds); without iat its age is unknown
    await refused(pop({exp: undefined}))
    await refused(pop({iat: undefined}))
    await refused(pop({aud: undefined}))
    await refused(pop({aud: 5}))
    await refused(pop({}, {signWith: generatePrivateKey('ed25519').keyObject}))
    // expired (beyond the leeway), and issued too long ago
    await refused(pop(), {now: NOW + MAX_POP_TTL + TOKEN_LEEWAY + 1})
    assert.equal((await verifyPop(await pop(), cert, check({now: NOW + MAX_POP_TTL + TOKEN_LEEWAY - 1}))).jti, 'p1')
  })

  it('refuses an algorithm the certified key type does not sign with', async () => {
    const ec = generateKeyPairSync('ec', {namedCurve: 'P-256'}).privateKey
    await refused(pop({}, {header: {alg: 'ES256'}, signWith: ec}))
  })

  it('reads the certificate from the sshpop header before anything is verified, and refuses what is not one', async () => {
    const token = await pop()
    assert.equal(popCertificate(token).serial, 77n)
    const bad = (t: string) =>
      assert.throws(
        () => popCertificate(t),
        (e: {code: string; details: {reason: string}}) =>
          e.code === 'ERR_TOKEN_INVALID' && e.details.reason === 'proof_invalid',
      )
    bad('not a jwt')
    bad(await pop({}, {header: {sshpop: undefined}}))
    bad(await pop({}, {header: {sshpop: 5}}))
    bad(await pop({}, {header: {sshpop: 'not base64!'}}))
    bad(await pop({}, {header: {sshpop: `${cert.blob.toString('base64')}\n`}}))
    // Buffer.from would skip the junk: the whole header must be base64
    bad(await pop({}, {header: {sshpop: `!${cert.blob.toString('base64')}`}}))
    bad(await pop({}, {header: {sshpop: Buffer.from('garbage').toString('base64')}}))
  })

  it('the audiences of a CA name: with and without /1.0, IPv6 in brackets', () => {
    assert.deepEqual(sshpopAudiences(['a.example', 'fd00::1'], 'revoke', 'p'), [
      'https://a.example/1.0/ssh/revoke#sshpop/p',
      'https://a.example/ssh/revoke#sshpop/p',
      'https://[fd00::1]/1.0/ssh/revoke#sshpop/p',
      'https://[fd00::1]/ssh/revoke#sshpop/p',
    ])
    assert.deepEqual(sshpopAudiences(['[::1]'], 'renew', 'p'), [
      'https://[::1]/1.0/ssh/renew#sshpop/p',
      'https://[::1]/ssh/renew#sshpop/p',
    ])
  })
})
