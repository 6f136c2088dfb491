/**
 * What the holder of a certificate's key may ask for by proving it (step's SSHPOP routes): a new
 * host certificate for a new key (`POST /ssh/rekey`), and the revocation of its own certificate
 * (`POST /ssh/revoke`, user or host). Plus step's `POST /ssh/check-host`: does a host hold a current
 * certificate. Each proof is a JWT signed by the certified key with the certificate in its `sshpop`
 * header and the purpose in its audience, so a renewal proof cannot revoke and a revoke proof cannot rekey.
 */
import type {SshRevokeRequest} from '../../protocol/api.ts'
import type {PopPurpose} from '../../protocol/tokens.ts'
import {signCertificate, type Certificate} from '../../ssh/cert.ts'
import {checkCertificate} from '../../ssh/checker.ts'
import type {PublicKey} from '../../ssh/keys.ts'
import {tokenHash} from '../provisioner/oidc.ts'
import {popCertificate, verifyPop} from '../provisioner/pop.ts'
import {denial} from '../policy/types.ts'
import {currentHosts} from './host.ts'
import type {AuditTrace, CaRuntime} from './runtime.ts'
import {checkSubjectKey, issue, randomSerial, requireIssuanceEnabled} from './sign.ts'
import {TOKEN_LEEWAY as LEEWAY} from '../../protocol/tokens.ts'

const nowOf = (rt: CaRuntime): number => Math.floor(rt.clock() / 1000)

/**
 * The certificate a proof carries, checked before its signature: signed by this CA's key for its
 * type (compared before any verification, as renewal does), recorded by this CA byte for byte,
 * unexpired and unrevoked; then the proof itself, for this purpose.
 */
async function provenCertificate(rt: CaRuntime, token: string, purpose: Exclude<PopPurpose, 'renew'>, trace: AuditTrace, only?: 'host'): Promise<{cert: Certificate; jti: string; expiresAt: number}> {
  const cert = popCertificate(token)
  trace.key_fingerprint = cert.publicKey.fingerprint()
  trace.cert_type = cert.type
  trace.subject = cert.keyId
  if (only && cert.type !== only) throw denial('ERR_POLICY_DENIED', 'cert_type_not_allowed', `only ${only} certificates can be ${purpose}ed`)
  const caKey = cert.type === 'host' ? rt.material.hostCa.publicKey : rt.material.userCa.publicKey
  const [problem] = checkCertificate(cert, {type: cert.type, caKeys: [caKey]})
  if (problem?.code === 'unknown_ca') throw denial('ERR_TOKEN_INVALID', 'ca_key_unknown', 'the certificate was not signed by this CA')
  if (problem) throw denial('ERR_TOKEN_INVALID', 'proof_invalid', `the certificate does not verify: ${problem.message}`)
  const known = await rt.store.findCertificate(cert.serial)
  if (!known || known.certificate !== cert.blob.toString('base64')) throw denial('ERR_POLICY_DENIED', 'certificate_unknown', 'this CA has no record of issuing that certificate')
  const now = nowOf(rt)
  if (BigInt(now) >= cert.validBefore) throw denial('ERR_POLICY_DENIED', 'certificate_expired', 'the certificate has expired')
  const proof = await verifyPop(token, cert, {rootFingerprint: rt.material.rootFingerprint, now, purpose})
  trace.token = {id: `pop#${proof.jti}`, sha256: tokenHash(token)}
  return {cert, ...proof}
}

/** `POST /ssh/rekey`: a host certificate like the proven one (principals, key ID) for a new key. */
export async function rekeyHostCertificate(rt: CaRuntime, token: string, newKey: PublicKey, trace: AuditTrace): Promise<Certificate> {
  trace.provisioner = 'host-rekey'
  requireIssuanceEnabled(rt)
  checkSubjectKey(newKey)
  const {cert, jti, expiresAt} = await provenCertificate(rt, token, 'rekey', trace, 'host')
  const revoked = await rt.store.revocationFor({serial: cert.serial, keyId: cert.keyId, keyFingerprint: cert.publicKey.fingerprint()})
  if (revoked) throw denial('ERR_POLICY_DENIED', revoked.serial === cert.serial ? 'certificate_revoked' : 'revoked', 'the certificate is revoked', {revocation_id: revoked.id})
  if (newKey.equals(cert.publicKey)) throw denial('ERR_INPUT', 'bad_request', 'the new key is the old one: use renew')
  trace.key_fingerprint = newKey.fingerprint()
  trace.key_type = newKey.type
  const now = nowOf(rt)
  const ssh = rt.policy.config.ssh
  const fresh = signCertificate(
    {type: 'host', publicKey: newKey, serial: randomSerial(), keyId: cert.keyId, principals: cert.principals, validAfter: BigInt(now - LEEWAY), validBefore: BigInt(now + Math.min(ssh.hostTtl, ssh.maxHostTtl)), criticalOptions: {}, extensions: {}},
    rt.material.hostCa,
  )
  // the new key starts its own lineage; the old certificate stays valid until it expires (as step's)
  return issue(rt, fresh, {id: `pop#${jti}`, expiresAt}, trace, {kind: 'enrol'})
}

/** `POST /ssh/revoke`: the holder of a certificate's key revokes that certificate (its serial goes into the KRL). */
export async function revokeOwnCertificate(rt: CaRuntime, body: SshRevokeRequest, trace: AuditTrace): Promise<{serial: string; revokedAt: string}> {
  trace.provisioner = 'self-revoke'
  if (!/^\d{1,20}$/.test(body.serial)) throw denial('ERR_INPUT', 'bad_request', 'serial must be the certificate\'s decimal serial number')
  const {cert} = await provenCertificate(rt, body.ott, 'revoke', trace)
  if (cert.serial.toString() !== body.serial) throw denial('ERR_INPUT', 'bad_request', 'the serial is not the proven certificate\'s')
  const now = nowOf(rt)
  const reason = `revoked by its holder${body.reason ? `: ${String(body.reason).slice(0, 200)}` : ''}`
  const already = await rt.store.revocationFor({serial: cert.serial})
  const r = already ?? (await rt.store.revoke({serial: cert.serial, keyId: null, keyFingerprint: null, reason, revokedAt: now}))
  if (!already) rt.audit.write('certificate_revoked', {...trace, kind: 'self', serial: cert.serial.toString(), key_id: cert.keyId, reason, reason_code: body.reasonCode ?? 0, revocation_id: r.id})
  return {serial: cert.serial.toString(), revokedAt: new Date(r.revokedAt * 1000).toISOString()}
}

/** `POST /ssh/check-host`: whether `principal` is a name of a host with a current, unrevoked certificate. */
export async function hostExists(rt: CaRuntime, principal: string): Promise<boolean> {
  const name = principal.toLowerCase()
  return (await currentHosts(rt)).some((h) => h.principals.some((p) => p.toLowerCase() === name))
}
