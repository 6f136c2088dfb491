/**
 * Host certificates. Enrollment: `POST /ssh/sign` with certType host and an enrollment token gets a
 * host certificate for names the token binds (and only for the key it binds, if it binds one).
 * Renewal: `POST /ssh/renew` with a proof of possession gets a new certificate for the newest one of
 * its host key's lineage. Revocation: served as an OpenSSH KRL on `GET /ssh/krl`.
 */
import type {SshSignRequest} from '../../protocol/api.ts'
import {TOKEN_LEEWAY as LEEWAY} from '../../protocol/tokens.ts'
import {signCertificate, type Certificate} from '../../ssh/cert.ts'
import {checkCertificate} from '../../ssh/checker.ts'
import {buildKrl} from '../../ssh/krl.ts'
import type {PublicKey} from '../../ssh/keys.ts'
import {verifyEnrollmentToken} from '../provisioner/enrollment.ts'
import {tokenHash} from '../provisioner/oidc.ts'
import {popCertificate, verifyPop} from '../provisioner/pop.ts'
import {denial} from '../policy/types.ts'
import type {AuditTrace, CaRuntime} from './runtime.ts'
import {checkSubjectKey, issue, randomSerial, requireIssuanceEnabled, requireIssuedAfterRestore} from './sign.ts'

const nowOf = (rt: CaRuntime): number => Math.floor(rt.clock() / 1000)

function hostValidity(rt: CaRuntime, now: number): {validAfter: bigint; validBefore: bigint} {
  const ssh = rt.policy.config.ssh
  return {validAfter: BigInt(now - LEEWAY), validBefore: BigInt(now + Math.min(ssh.hostTtl, ssh.maxHostTtl))}
}

/** `POST /ssh/sign` with certType host: a certificate for names the enrollment token binds. */
export async function signHostCertificate(rt: CaRuntime, publicKey: PublicKey, token: string, trace: AuditTrace, body: SshSignRequest): Promise<Certificate> {
  trace.key_fingerprint = publicKey.fingerprint()
  trace.key_type = publicKey.type
  trace.cert_type = 'host'
  trace.provisioner = 'host-enrollment'
  checkSubjectKey(publicKey)
  requireIssuanceEnabled(rt)
  const now = nowOf(rt)
  const t = await verifyEnrollmentToken(token, {enrollmentKey: rt.material.enrollmentKey, rootFingerprint: rt.material.rootFingerprint, now, keyFingerprint: publicKey.fingerprint()})
  trace.subject = t.subject
  trace.token = {id: `enroll#${t.jti}`, sha256: tokenHash(token)}
  await requireIssuedAfterRestore(rt, {id: `enroll#${t.jti}`, issuedAt: t.issuedAt})
  const requested = body.principals?.length ? body.principals : t.principals
  const unbound = requested.filter((p) => !t.principals.includes(p))
  if (unbound.length > 0) {
    throw denial('ERR_POLICY_DENIED', 'host_not_bound', `the enrollment token does not bind ${unbound.map((p) => JSON.stringify(p)).join(', ')}`, {requested, bound: t.principals})
  }
  const cert = signCertificate({type: 'host', publicKey, serial: randomSerial(), keyId: `host:${t.subject}`, principals: requested, ...hostValidity(rt, now)}, rt.material.hostCa)
  return issue(rt, cert, {id: `enroll#${t.jti}`, expiresAt: t.expiresAt}, trace, {kind: 'enrol'})
}

/** `POST /ssh/renew`: a new host certificate (new serial, same principals) for a proven key. */
export async function renewHostCertificate(rt: CaRuntime, token: string, trace: AuditTrace): Promise<Certificate> {
  trace.cert_type = 'host'
  trace.provisioner = 'host-renewal'
  requireIssuanceEnabled(rt)
  const cert = popCertificate(token)
  trace.key_fingerprint = cert.publicKey.fingerprint()
  trace.subject = cert.keyId
  // the checker compares the signer with our host CA key before any signature is verified: verifying
  // with a key the caller chose (an RSA key with a huge exponent) would let anyone spend the CA's CPU
  const [problem] = checkCertificate(cert, {type: 'host', caKeys: [rt.material.hostCa.publicKey]})
  if (problem?.code === 'wrong_type') throw denial('ERR_POLICY_DENIED', 'cert_type_not_allowed', 'only host certificates are renewed; users sign in again')
  if (problem?.code === 'unknown_ca') throw denial('ERR_TOKEN_INVALID', 'ca_key_unknown', 'the certificate was not signed by this CA\'s host key')
  if (problem) throw denial('ERR_TOKEN_INVALID', 'proof_invalid', `the certificate does not verify: ${problem.message}`)
  const known = await rt.store.findCertificate(cert.serial)
  if (!known || known.certificate !== cert.blob.toString('base64')) throw denial('ERR_POLICY_DENIED', 'certificate_unknown', 'this CA has no record of issuing that certificate')
  const now = nowOf(rt)
  if (BigInt(now) >= cert.validBefore) throw denial('ERR_POLICY_DENIED', 'certificate_expired', 'the certificate has expired: enroll the host again with a new token')
  const revoked = await rt.store.revocationFor({serial: cert.serial, keyId: cert.keyId, keyFingerprint: cert.publicKey.fingerprint()})
  if (revoked) throw denial('ERR_POLICY_DENIED', revoked.serial === cert.serial ? 'certificate_revoked' : 'revoked', 'the certificate is revoked', {revocation_id: revoked.id})
  const proof = await verifyPop(token, cert, {rootFingerprint: rt.material.rootFingerprint, now})
  trace.token = {id: `pop#${proof.jti}`, sha256: tokenHash(token)}
  await requireIssuedAfterRestore(rt, {id: `pop#${proof.jti}`, issuedAt: proof.issuedAt})
  const fresh = signCertificate({type: 'host', publicKey: cert.publicKey, serial: randomSerial(), keyId: cert.keyId, principals: cert.principals, ...hostValidity(rt, now), criticalOptions: {}, extensions: {}}, rt.material.hostCa)
  return issue(rt, fresh, {id: `pop#${proof.jti}`, expiresAt: proof.expiresAt}, trace, {kind: 'renew', parent: cert.serial})
}

/**
 * The KRL of every revocation, for both CA keys (serials are random 64-bit, so they never collide),
 * plus revoked keys by SHA-256. Deterministic for a revocation set; its version only moves forward.
 */
export async function currentKrl(rt: CaRuntime): Promise<Buffer> {
  const {revocations: revoked, generation} = await rt.store.revocationSnapshot()
  const serials = revoked.flatMap((r) => (r.serial === null ? [] : [r.serial]))
  const keyIds = revoked.flatMap((r) => (r.keyId === null ? [] : [r.keyId]))
  const keys = revoked.flatMap((r) => (r.keyFingerprint === null ? [] : [Buffer.from(r.keyFingerprint.slice('SHA256:'.length), 'base64')]))
  return buildKrl({
    version: BigInt(generation),
    // not the clock: every replica renders the same bytes for the same revocations
    generatedAt: BigInt(revoked.reduce((m, r) => Math.max(m, r.revokedAt), 0)),
    comment: 'sshca',
    sections: [rt.material.userCa.publicKey, rt.material.hostCa.publicKey].map((caKey) => ({caKey, serials, keyIds})),
    revokedKeySha256: keys,
  })
}

/** The hosts with a current, unrevoked certificate: one per host key, its lineage's newest. */
export async function currentHosts(rt: CaRuntime): Promise<{principals: string[]; serial: string; keyId: string; validBefore: string; keyFingerprint: string}[]> {
  const out = []
  for (const c of await rt.store.currentHostCertificates(nowOf(rt))) {
    if (await rt.store.revocationFor(c)) continue
    out.push({principals: c.principals, serial: c.serial.toString(), keyId: c.keyId, validBefore: new Date(Number(c.validBefore) * 1000).toISOString(), keyFingerprint: c.keyFingerprint})
  }
  return out
}
