/**
 * Host certificates. Enrollment: `ca token --host` mints a one-time JWT (EdDSA, the CA's enrollment
 * key) bound to host names; `POST /ssh/sign` with certType host and that token gets a host
 * certificate for names the token binds. Renewal: `POST /ssh/renew` with a proof of possession (as
 * step's SSHPOP): a short JWT signed by the certified host key, carrying the current certificate.
 * Revocation: serials and key IDs in the store, served as an OpenSSH KRL on `GET /ssh/krl`.
 */
import {randomUUID, createPublicKey, type KeyObject} from 'node:crypto'
import type {FastifyInstance} from 'fastify'
import {decodeProtectedHeader, errors as joseErrors, jwtVerify, SignJWT} from 'jose'
import {type HostsResponse, SshRenewRequest, type SshSignRequest} from '../../protocol/api.ts'
import {caIssuer, ENROLLMENT_AUDIENCE, ENROLLMENT_TYP, MAX_ENROLLMENT_TTL, MAX_POP_TTL, POP_ALGORITHMS, POP_TYP, popAudience, TOKEN_LEEWAY as LEEWAY} from '../../protocol/tokens.ts'
import {parseCertificate, signCertificate, verifyCertificate, type Certificate} from '../../ssh/cert.ts'
import {buildKrl} from '../../ssh/krl.ts'
import type {PublicKey} from '../../ssh/keys.ts'
import type {RouteHelpers} from '../http/app.ts'
import {denial, MAX_PRINCIPAL_LENGTH, SAFE_VALUE, selectRule} from '../policy/policy.ts'
import type {AuditTrace, CaRuntime} from './runtime.ts'
import {checkSubjectKey, issue, randomSerial, requireIssuanceEnabled} from './sign.ts'

export interface EnrollmentToken {
  token: string
  jti: string
  principals: string[]
  expiresAt: number
  /** `SHA256:…` of the one host key the token may enrol, or null when any key may use it. */
  boundKey: string | null
}

/** An OpenSSH SHA-256 fingerprint as ssh-keygen -l prints it. */
export const SSH_FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/

/**
 * A one-time host enrollment token. With `keyFingerprint`, the token is bound to that host key
 * (RFC 7800 `cnf.kid`): the CA refuses any other key, so a token read in transit enrols nothing else.
 */
export async function mintEnrollmentToken(key: KeyObject, o: {rootFingerprint: string; hostname: string; principals?: string[]; keyFingerprint?: string; ttlSeconds: number; now: number}): Promise<EnrollmentToken> {
  const principals = [...new Set([o.hostname, ...(o.principals ?? [])])]
  for (const p of principals) {
    if (!SAFE_VALUE.test(p) || p.length > MAX_PRINCIPAL_LENGTH) throw new TypeError(`"${p}" is not a valid host principal`)
  }
  if (o.keyFingerprint !== undefined && !SSH_FINGERPRINT.test(o.keyFingerprint)) throw new TypeError(`"${o.keyFingerprint}" is not an SSH key fingerprint (SHA256:…)`)
  const ttl = Math.min(o.ttlSeconds, MAX_ENROLLMENT_TTL)
  const jti = randomUUID()
  const token = await new SignJWT({principals, ...(o.keyFingerprint ? {cnf: {kid: o.keyFingerprint}} : {})})
    .setProtectedHeader({alg: 'EdDSA', typ: ENROLLMENT_TYP})
    .setIssuer(caIssuer(o.rootFingerprint))
    .setAudience(ENROLLMENT_AUDIENCE)
    .setSubject(o.hostname)
    .setJti(jti)
    .setIssuedAt(o.now)
    .setNotBefore(o.now - LEEWAY)
    .setExpirationTime(o.now + ttl)
    .sign(key)
  return {token, jti, principals, expiresAt: o.now + ttl, boundKey: o.keyFingerprint ?? null}
}

function tokenError(err: unknown, what: string): Error {
  if (err instanceof joseErrors.JWTExpired) return denial('ERR_TOKEN_INVALID', 'token_expired', `the ${what} has expired`)
  if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'nbf') return denial('ERR_TOKEN_INVALID', 'token_not_yet_valid', `the ${what} is not valid yet`)
  return denial('ERR_TOKEN_INVALID', 'token_invalid', `the ${what} does not verify: ${(err as Error).message}`)
}

/** `POST /ssh/sign` with certType host: a certificate for names the enrollment token binds. */
export async function signHostCertificate(rt: CaRuntime, publicKey: PublicKey, token: string, trace: AuditTrace, body: SshSignRequest): Promise<Certificate> {
  trace.key_fingerprint = publicKey.fingerprint()
  trace.key_type = publicKey.type
  trace.cert_type = 'host'
  trace.provisioner = 'host-enrollment'
  checkSubjectKey(publicKey)
  requireIssuanceEnabled(rt)
  let claims
  try {
    ;({payload: claims} = await jwtVerify(token, createPublicKey(rt.material.enrollmentKey), {
      algorithms: ['EdDSA', 'Ed25519'],
      typ: ENROLLMENT_TYP,
      issuer: caIssuer(rt.material.rootFingerprint),
      audience: ENROLLMENT_AUDIENCE,
      clockTolerance: LEEWAY,
      currentDate: new Date(rt.clock()),
      requiredClaims: ['exp', 'iat', 'jti', 'sub'],
      maxTokenAge: MAX_ENROLLMENT_TTL + LEEWAY,
    }))
  } catch (err) {
    throw tokenError(err, 'enrollment token')
  }
  trace.subject = claims.sub
  trace.token = {id: `enroll#${claims.jti}`, sha256: (await import('../provisioner/oidc.ts')).tokenHash(token)}
  const cnf = claims.cnf as {kid?: unknown} | undefined
  if (cnf !== undefined) {
    // a bound token: only the host key it names (a token without a usable binding is refused, not treated as unbound)
    if (typeof cnf !== 'object' || cnf === null || typeof cnf.kid !== 'string' || cnf.kid !== publicKey.fingerprint()) {
      throw denial('ERR_POLICY_DENIED', 'key_not_bound', 'the enrollment token is bound to another host key', {bound_key: typeof cnf?.kid === 'string' ? cnf.kid : null})
    }
  }
  const bound = Array.isArray(claims.principals) ? claims.principals.filter((p): p is string => typeof p === 'string') : []
  const requested = body.principals?.length ? body.principals : bound
  const unbound = requested.filter((p) => !bound.includes(p))
  if (unbound.length > 0) {
    throw denial('ERR_POLICY_DENIED', 'host_not_bound', `the enrollment token does not bind ${unbound.map((p) => JSON.stringify(p)).join(', ')}`, {requested, bound})
  }
  const now = Math.floor(rt.clock() / 1000)
  const ssh = rt.policy.config.ssh
  const cert = signCertificate(
    {type: 'host', publicKey, serial: randomSerial(), keyId: `host:${claims.sub}`, principals: requested, validAfter: BigInt(now - LEEWAY), validBefore: BigInt(now + Math.min(ssh.hostTtl, ssh.maxHostTtl))},
    rt.material.hostCa,
  )
  return issue(rt, cert, {id: `enroll#${claims.jti}`, expiresAt: (claims.exp as number) + LEEWAY}, trace, {kind: 'enrol'})
}

/** `POST /ssh/renew`: a new host certificate (new serial, same principals) for a proven key. */
export async function renewHostCertificate(rt: CaRuntime, token: string, trace: AuditTrace): Promise<Certificate> {
  trace.cert_type = 'host'
  trace.provisioner = 'host-renewal'
  requireIssuanceEnabled(rt)
  let header: ReturnType<typeof decodeProtectedHeader>
  try {
    header = decodeProtectedHeader(token)
  } catch {
    throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the renewal token is not a JWT')
  }
  if (header.typ !== POP_TYP || typeof header.sshpop !== 'string') throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the renewal token carries no certificate')
  let cert: Certificate
  try {
    cert = parseCertificate(Buffer.from(header.sshpop, 'base64'))
  } catch {
    throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the certificate in the renewal token is malformed')
  }
  trace.key_fingerprint = cert.publicKey.fingerprint()
  trace.subject = cert.keyId
  if (cert.type !== 'host') throw denial('ERR_POLICY_DENIED', 'cert_type_not_allowed', 'only host certificates are renewed; users sign in again')
  // the signer must be our host CA key before any signature is checked: verifying with a key the
  // caller chose (an RSA key with a huge exponent) would let anyone spend the CA's CPU
  if (!cert.signatureKey.equals(rt.material.hostCa.publicKey)) throw denial('ERR_TOKEN_INVALID', 'ca_key_unknown', 'the certificate was not signed by this CA\'s host key')
  if (!verifyCertificate(cert).valid) throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the certificate\'s signature does not verify')
  const known = await rt.store.findCertificate(cert.serial)
  if (!known || known.certificate !== cert.blob.toString('base64')) throw denial('ERR_POLICY_DENIED', 'certificate_unknown', 'this CA has no record of issuing that certificate')
  const now = Math.floor(rt.clock() / 1000)
  if (BigInt(now) >= cert.validBefore) throw denial('ERR_POLICY_DENIED', 'certificate_expired', 'the certificate has expired: enroll the host again with a new token')
  const revoked = await rt.store.revocationFor({serial: cert.serial, keyId: cert.keyId, keyFingerprint: cert.publicKey.fingerprint()})
  if (revoked) throw denial('ERR_POLICY_DENIED', revoked.serial === cert.serial ? 'certificate_revoked' : 'revoked', 'the certificate is revoked', {revocation_id: revoked.id})
  const algorithms = POP_ALGORITHMS[cert.publicKey.type] ?? []
  let claims
  try {
    ;({payload: claims} = await jwtVerify(token, cert.publicKey.keyObject, {
      algorithms,
      typ: POP_TYP,
      audience: popAudience(rt.material.rootFingerprint),
      clockTolerance: LEEWAY,
      currentDate: new Date(rt.clock()),
      requiredClaims: ['exp', 'iat', 'jti'],
      maxTokenAge: MAX_POP_TTL + LEEWAY,
    }))
  } catch (err) {
    const e = tokenError(err, 'renewal token')
    throw denial('ERR_TOKEN_INVALID', 'proof_invalid', `${e.message} (it must be signed by the certified host key)`)
  }
  if ((claims.exp as number) - (claims.iat as number) > MAX_POP_TTL) throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the renewal token lives longer than 5 minutes')
  trace.token = {id: `pop#${claims.jti}`, sha256: (await import('../provisioner/oidc.ts')).tokenHash(token)}
  const ssh = rt.policy.config.ssh
  const fresh = signCertificate(
    {type: 'host', publicKey: cert.publicKey, serial: randomSerial(), keyId: cert.keyId, principals: cert.principals, validAfter: BigInt(now - LEEWAY), validBefore: BigInt(now + Math.min(ssh.hostTtl, ssh.maxHostTtl)), criticalOptions: {}, extensions: {}},
    rt.material.hostCa,
  )
  return issue(rt, fresh, {id: `pop#${claims.jti}`, expiresAt: (claims.exp as number) + LEEWAY}, trace, {kind: 'renew', parent: cert.serial})
}

/**
 * The KRL of every revocation, for both CA keys (serials are random 64-bit, so they never collide),
 * plus revoked keys by SHA-256. Deterministic for a revocation set; its version only moves forward.
 */
export async function currentKrl(rt: CaRuntime): Promise<Buffer> {
  const [revoked, generation] = await Promise.all([rt.store.revocations(), rt.store.revocationGeneration()])
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

/** The routes of this module, mounted by buildApp through its hooks. */
export function hostRoutes(app: FastifyInstance, rt: CaRuntime, h: RouteHelpers, signing: {signing: true; rateLimit: {groupId: string}}): void {
  app.post('/ssh/renew', {config: signing}, async (req, reply) => {
    const t = h.trace(req)
    const body = h.parseBody(SshRenewRequest, req.body)
    const cert = await renewHostCertificate(rt, body.ott, t)
    return reply.code(201).send({crt: cert.blob.toString('base64')})
  })

  app.get('/ssh/krl', async (_req, reply) => reply.type('application/octet-stream').send(await currentKrl(rt)))

  // the host inventory is not public: a token that would get a certificate may see it
  app.get('/ssh/hosts', async (req): Promise<HostsResponse> => {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')
    if (!m) throw denial('ERR_TOKEN_INVALID', 'token_invalid', 'send an identity token as "Authorization: Bearer <JWT>"')
    const verified = await rt.policy.verifier.verify(m[1]!)
    selectRule(verified.provisioner, verified.claims)
    const now = Math.floor(rt.clock() / 1000)
    const hosts = []
    for (const c of await rt.store.currentHostCertificates(now)) if (!(await rt.store.revocationFor(c))) hosts.push(c)
    return {hosts: hosts.map((c) => ({principals: c.principals, serial: c.serial.toString(), keyId: c.keyId, validBefore: new Date(Number(c.validBefore) * 1000).toISOString(), keyFingerprint: c.keyFingerprint}))}
  })
}
