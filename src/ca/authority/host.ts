/**
 * Host certificates. Enrollment: `POST /ssh/sign` with certType host and an enrollment token gets a
 * host certificate for names the token binds (and only for the key it binds, if it binds one).
 * Renewal: `POST /ssh/renew` with an SSHPOP token gets a new certificate for the newest one of its
 * host key's lineage; `POST /ssh/rekey` the same for a new key. `POST /ssh/revoke`: a certificate
 * (user or host) revokes itself. Revocations are served as an OpenSSH KRL on `GET /ssh/krl`.
 */
import type {SshSignRequest} from '../../protocol/api.ts'
import {SSHPOP_PROVISIONER, TOKEN_LEEWAY as LEEWAY, type SshpopAction} from '../../protocol/tokens.ts'
import {signCertificate, type Certificate} from '../../ssh/cert.ts'
import {checkCertificate} from '../../ssh/checker.ts'
import {buildKrl} from '../../ssh/krl.ts'
import type {PublicKey} from '../../ssh/keys.ts'
import {everyKey, publishedKeys} from '../keys/material.ts'
import {verifyEnrollmentToken} from '../provisioner/enrollment.ts'
import {tokenHash} from '../provisioner/oidc.ts'
import {popCertificate, verifyPop} from '../provisioner/pop.ts'
import {denial} from '../policy/types.ts'
import type {Revocation} from '../store/store.ts'
import type {AuditTrace, CaRuntime} from './runtime.ts'
import {
  checkSubjectKey,
  issue,
  metered,
  randomSerial,
  requireIssuanceEnabled,
  requireIssuedAfterRestore,
} from './sign.ts'
import {isoFromSeconds} from '../../util/iso-time.ts'

const nowOf = (rt: CaRuntime): number => Math.floor(rt.clock() / 1000)

/** The validity under `policy`, the one the request captured at its start (issue() compares it with the one in force). */
function hostValidity(policy: CaRuntime['policy'], now: number): {validAfter: bigint; validBefore: bigint} {
  const ssh = policy.config.ssh
  return {validAfter: BigInt(now - LEEWAY), validBefore: BigInt(now + Math.min(ssh.hostTtl, ssh.maxHostTtl))}
}

/** `POST /ssh/sign` with certType host: a certificate for names the enrollment token binds. */
export async function signHostCertificate(
  rt: CaRuntime,
  publicKey: PublicKey,
  token: string,
  trace: AuditTrace,
  body: SshSignRequest,
): Promise<Certificate> {
  trace.key_fingerprint = publicKey.fingerprint()
  trace.key_type = publicKey.type
  trace.cert_type = 'host'
  trace.provisioner = 'host-enrollment'
  // what decides the certificate (its validity, reserved names): a reload while it is signed refuses it
  const policy = rt.policy
  checkSubjectKey(publicKey)
  requireIssuanceEnabled(rt)
  const now = nowOf(rt)
  const t = await metered(
    rt,
    'host-enrollment',
    verifyEnrollmentToken(token, {
      enrollmentKey: rt.material.enrollmentKey,
      rootFingerprint: rt.material.roots.map((r) => r.fingerprint),
      now,
      keyFingerprint: publicKey.fingerprint(),
    }),
  )
  trace.subject = t.subject
  trace.token = {id: `enroll#${t.jti}`, sha256: tokenHash(token)}
  await requireIssuedAfterRestore(rt, {id: `enroll#${t.jti}`, issuedAt: t.issuedAt})
  const requested = body.principals?.length ? body.principals : t.principals
  const unbound = requested.filter((p) => !t.principals.includes(p))
  if (unbound.length > 0) {
    throw denial(
      'ERR_POLICY_DENIED',
      'host_not_bound',
      `the enrollment token does not bind ${unbound.map((p) => JSON.stringify(p)).join(', ')}`,
      {requested, bound: t.principals},
    )
  }
  const cert = await signCertificate(
    {
      type: 'host',
      publicKey,
      serial: randomSerial(),
      keyId: `host:${t.subject}`,
      principals: requested,
      ...hostValidity(policy, now),
    },
    rt.material.hostCa.active,
  )
  // Stryker disable next-line ObjectLiteral,StringLiteral: the store starts a lineage for any lineage that is not a renew or a rekey
  return issue(
    rt,
    cert,
    {id: `enroll#${t.jti}`, expiresAt: t.expiresAt, issuedAt: t.issuedAt},
    trace,
    {kind: 'enrol', keyBound: t.boundKey !== undefined},
    policy,
  )
}

/**
 * The certificate an SSHPOP token proves possession of, once everything about it holds: signed by
 * this CA (the signer compared before any signature is verified: verifying with a key the caller
 * chose, an RSA key with a huge exponent, would let anyone spend the CA's CPU), recorded by this CA
 * byte for byte, unexpired, unrevoked, and the token signed by its key for this action.
 */
async function provenCertificate(
  rt: CaRuntime,
  token: string,
  action: SshpopAction,
  trace: AuditTrace,
  types: readonly ('user' | 'host')[],
  /** The policy the request captured at its start: the audiences are its dnsNames. */
  policy: CaRuntime['policy'] = rt.policy,
): Promise<{
  cert: Certificate
  proof: {jti: string; expiresAt: number; issuedAt: number; boundKey?: string}
  now: number
}> {
  const cert = popCertificate(token)
  trace.key_fingerprint = cert.publicKey.fingerprint()
  trace.subject = cert.keyId
  trace.cert_type = cert.type
  if (!types.includes(cert.type))
    throw denial(
      'ERR_POLICY_DENIED',
      'cert_type_not_allowed',
      `only host certificates are ${action === 'renew' ? 'renewed' : 'rekeyed'}; users sign in again`,
    )
  // a user certificate must be signed by a user CA key, a host certificate by a host CA key; every
  // published one: during a rotation, certificates of the previous key renew onto the new one
  const [problem] = checkCertificate(cert, {
    type: cert.type,
    caKeys: publishedKeys(cert.type === 'host' ? rt.material.hostCa : rt.material.userCa),
  })
  if (problem?.code === 'unknown_ca')
    throw denial('ERR_TOKEN_INVALID', 'ca_key_unknown', `the certificate was not signed by this CA's ${cert.type} key`)
  if (problem) throw denial('ERR_TOKEN_INVALID', 'proof_invalid', `the certificate does not verify: ${problem.message}`)
  const known = await rt.store.findCertificate(cert.serial)
  if (!known || known.certificate !== cert.blob.toString('base64'))
    throw denial('ERR_POLICY_DENIED', 'certificate_unknown', 'this CA has no record of issuing that certificate')
  const now = nowOf(rt)
  if (BigInt(now) >= cert.validBefore) {
    throw denial(
      'ERR_POLICY_DENIED',
      'certificate_expired',
      action === 'revoke'
        ? 'the certificate has expired: it needs no revocation'
        : 'the certificate has expired: enroll the host again with a new token',
    )
  }
  const revoked = await rt.store.revocationFor({
    serial: cert.serial,
    keyId: cert.keyId,
    keyFingerprint: cert.publicKey.fingerprint(),
  })
  if (revoked)
    throw denial(
      'ERR_POLICY_DENIED',
      revoked.serial === cert.serial ? 'certificate_revoked' : 'revoked',
      revoked.serial === cert.serial && action === 'revoke'
        ? 'the certificate is already revoked'
        : 'the certificate is revoked',
      {revocation_id: revoked.id},
    )
  const {dnsNames} = policy.config
  const proof = await metered(
    rt,
    SSHPOP_PROVISIONER,
    verifyPop(token, cert, {
      action,
      provisioner: SSHPOP_PROVISIONER,
      dnsNames,
      rootFingerprint: rt.material.roots.map((r) => r.fingerprint),
      now,
    }),
  )
  trace.token = {id: `sshpop#${proof.jti}`, sha256: tokenHash(token)}
  // a revocation spends nothing and repeats harmlessly; a renewal or rekey issues, so it is held
  // to the restore window like every other token
  if (action !== 'revoke') await requireIssuedAfterRestore(rt, {id: `sshpop#${proof.jti}`, issuedAt: proof.issuedAt})
  return {cert, proof, now}
}

/** `POST /ssh/renew`: a new host certificate (new serial, same principals) for a proven key. */
export async function renewHostCertificate(rt: CaRuntime, token: string, trace: AuditTrace): Promise<Certificate> {
  trace.cert_type = 'host'
  trace.provisioner = SSHPOP_PROVISIONER
  // what decides the certificate (its validity, the token's audiences): a reload while it is signed refuses it
  const policy = rt.policy
  requireIssuanceEnabled(rt)
  const {cert, proof, now} = await provenCertificate(rt, token, 'renew', trace, ['host'], policy)
  const fresh = await signCertificate(
    {
      type: 'host',
      publicKey: cert.publicKey,
      serial: randomSerial(),
      keyId: cert.keyId,
      principals: cert.principals,
      ...hostValidity(policy, now),
      criticalOptions: {},
      extensions: {},
    },
    rt.material.hostCa.active,
  )
  return issue(
    rt,
    fresh,
    {id: `sshpop#${proof.jti}`, expiresAt: proof.expiresAt, issuedAt: proof.issuedAt},
    trace,
    {kind: 'renew', parent: cert.serial},
    policy,
  )
}

/**
 * `POST /ssh/rekey` (step's): the same host certificate for a new host key, proven with the old
 * one. The lineage moves to the new key: the old certificate can no longer be renewed or rekeyed.
 */
export async function rekeyHostCertificate(
  rt: CaRuntime,
  token: string,
  newKey: PublicKey,
  trace: AuditTrace,
): Promise<Certificate> {
  trace.cert_type = 'host'
  trace.provisioner = SSHPOP_PROVISIONER
  const policy = rt.policy
  checkSubjectKey(newKey)
  requireIssuanceEnabled(rt)
  const {cert, proof, now} = await provenCertificate(rt, token, 'rekey', trace, ['host'], policy)
  if (newKey.equals(cert.publicKey))
    throw denial('ERR_INPUT', 'bad_request', 'the new key is the certified key: renew instead of rekeying')
  if (proof.boundKey !== undefined && proof.boundKey !== newKey.fingerprint())
    throw denial('ERR_POLICY_DENIED', 'key_not_bound', 'the rekey token names another new key', {
      bound_key: proof.boundKey,
    })
  trace.key_fingerprint = newKey.fingerprint()
  trace.key_type = newKey.type
  const fresh = await signCertificate(
    {
      type: 'host',
      publicKey: newKey,
      serial: randomSerial(),
      keyId: cert.keyId,
      principals: cert.principals,
      ...hostValidity(policy, now),
      criticalOptions: {},
      extensions: {},
    },
    rt.material.hostCa.active,
  )
  return issue(
    rt,
    fresh,
    {id: `sshpop#${proof.jti}`, expiresAt: proof.expiresAt, issuedAt: proof.issuedAt},
    trace,
    {kind: 'rekey', parent: cert.serial, parentKey: cert.publicKey.fingerprint()},
    policy,
  )
}

/** What `POST /ssh/revoke` did, as `ca revoke` reports it. */
export interface SelfRevocation {
  revocation: Revocation
  certificate: {serial: string; keyId: string; principals: string[]; certType: 'user' | 'host'; validBefore: string}
}

/**
 * `POST /ssh/revoke` (step's): a certificate revokes itself, proven by its key. Recorded as a
 * revocation by serial, as `ca revoke --serial` does: the KRL lists it from then on, and renewals
 * of it (or its rekeys) are refused. Issuance being disabled does not stop a revocation.
 */
export async function revokeOwnCertificate(
  rt: CaRuntime,
  o: {token: string; serial: string; reason: string},
  trace: AuditTrace,
): Promise<SelfRevocation> {
  trace.provisioner = SSHPOP_PROVISIONER
  if (!/^[0-9]{1,20}$/.test(o.serial))
    throw denial('ERR_INPUT', 'bad_request', "serial must be the certificate's serial number in decimal")
  const {cert, now} = await provenCertificate(rt, o.token, 'revoke', trace, ['user', 'host'])
  if (BigInt(o.serial) !== cert.serial)
    throw denial(
      'ERR_POLICY_DENIED',
      'serial_mismatch',
      'a certificate can revoke only itself: serial must be the serial of the certificate in the token',
    )
  const revocation = await rt.store.revoke({
    serial: cert.serial,
    keyId: null,
    keyFingerprint: null,
    reason: o.reason,
    revokedAt: now,
  })
  return {
    revocation,
    certificate: {
      serial: cert.serial.toString(),
      keyId: cert.keyId,
      principals: [...cert.principals],
      certType: cert.type,
      validBefore: isoFromSeconds(cert.validBefore),
    },
  }
}

/**
 * The KRL of every revocation, one section per CA key that has signed, user and host: the published
 * ones and the retired (serials are random 64-bit, so they never collide; a revoked certificate of an
 * old key stays listed after its key retires), plus revoked keys by SHA-256. Deterministic for a revocation set; its version only moves forward.
 */
export async function currentKrl(rt: CaRuntime): Promise<Buffer> {
  const {revocations: revoked, generation} = await rt.store.revocationSnapshot()
  const serials = revoked.flatMap((r) => (r.serial === null ? [] : [r.serial]))
  const keyIds = revoked.flatMap((r) => (r.keyId === null ? [] : [r.keyId]))
  const keys = revoked.flatMap((r) =>
    r.keyFingerprint === null ? [] : [Buffer.from(r.keyFingerprint.slice('SHA256:'.length), 'base64')],
  )
  return buildKrl({
    version: BigInt(generation),
    // not the clock: every replica renders the same bytes for the same revocations
    generatedAt: BigInt(revoked.reduce((m, r) => Math.max(m, r.revokedAt), 0)),
    comment: 'sshca',
    sections: [...everyKey(rt.material.userCa), ...everyKey(rt.material.hostCa)].map((caKey) => ({
      caKey,
      serials,
      keyIds,
    })),
    revokedKeySha256: keys,
  })
}

/** The hosts with a current, unrevoked certificate: one per host key, its lineage's newest. */
export async function currentHosts(
  rt: CaRuntime,
): Promise<{principals: string[]; serial: string; keyId: string; validBefore: string; keyFingerprint: string}[]> {
  const out = []
  for (const c of await rt.store.currentHostCertificates(nowOf(rt))) {
    if (await rt.store.revocationFor(c)) continue
    out.push({
      principals: c.principals,
      serial: c.serial.toString(),
      keyId: c.keyId,
      validBefore: isoFromSeconds(c.validBefore),
      keyFingerprint: c.keyFingerprint,
    })
  }
  return out
}
