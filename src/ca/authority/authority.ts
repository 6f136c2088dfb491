/**
 * The one face of the signing core the HTTP layer sees (smallstep's `Authority`): the read routes'
 * answers, the ways to get a certificate (step's /ssh/sign, renew and rekey by SSHPOP, oidc-ssh-ca's
 * /sign), self-revocation, the KRL, the host inventory, step's /ssh/config, /ssh/check-host and
 * /ssh/bastion, and how a refused request is audited. Routes parse and render; every decision is
 * made here and below.
 */
import {timingSafeEqual, type X509Certificate} from 'node:crypto'
import {
  SSHPOP_TYPE,
  type CaKeyInfo,
  type HostsResponse,
  type ProvisionersResponse,
  type SshBastionRequest,
  type SshBastionResponse,
  type SshCheckHostRequest,
  type SshCheckHostResponse,
  type SshConfigRequest,
  type SshConfigResponse,
  type SshRekeyRequest,
  type SshRevokeRequest,
  type SshRootsResponse,
  type SshSignRequest,
  type VersionResponse,
} from '../../protocol/api.ts'
import {SSHPOP_PROVISIONER} from '../../protocol/tokens.ts'
import type {Certificate} from '../../ssh/cert.ts'
import {SshcaError} from '../../errors.ts'
import {asciiLower} from '../../util/text.ts'
import {packageVersion} from '../../util/version.ts'
import type {ServerSettings} from '../config/config.ts'
import {everyKey, publishedKeys, type CaKeySet} from '../keys/material.ts'
import type {AuditEvent} from '../observe/audit.ts'
import {noopMeter, type Meter} from '../observe/meter.ts'
import {denial, reasonOf} from '../policy/types.ts'
import {
  currentHosts,
  currentKrl,
  rekeyHostCertificate,
  renewHostCertificate,
  revokeOwnCertificate,
  signHostCertificate,
} from './host.ts'
import {identityRecord, identityRequest, issueIdentity} from './identity.ts'
import type {AuditTrace, CaRuntime} from './runtime.ts'
import {parseSubjectKey, requireIssuanceEnabled, revokedDenial, signUserCertificate, userGrant} from './sign.ts'
import {renderSshConfig} from './ssh-config.ts'

/** How a caller of the host inventory routes authenticates: sshca's Bearer token, or step's mTLS identity. */
export interface ClientAuth {
  authorization?: string | undefined
  /** The TLS client certificate, when one was presented. */
  peerCertificate?: X509Certificate | undefined
}

/** step-ca's page size for GET /provisioners. */
const PROVISIONERS_PAGE = 20

/** How long one answer about the store stands: balancers poll every replica often; the database sees one ping a second. */
const STORE_CHECK_MS = 1000
/** A ping slower than this counts as unreachable (a balancer's check must not hang on it). */
const STORE_PING_TIMEOUT_MS = 2000
/** How long a built KRL is served while the revocation generation and the CA keys stay the same. */
const KRL_CACHE_MS = 1000

export class Authority {
  readonly rt: CaRuntime
  private storeCheck: {at: number; ok: Promise<boolean>} | undefined
  private krlCache: {at: number; generation: number; keys: string; krl: Promise<Buffer>} | undefined

  /**
   * ca.yaml's tls.clientCertificates as it was when this CA started: the TLS server's requestCert is
   * set then and no reload changes it, so /version and the identityCSR follow this, never a reloaded
   * value (which would tell step to send an identity no handshake asks for, or keep asking after it is off).
   */
  readonly clientCertificates: 'off' | 'request'

  constructor(rt: CaRuntime) {
    this.rt = rt
    this.clientCertificates = rt.policy.config.tls.clientCertificates
  }

  /** Whether the store answers now (GET /health, GET /ready): asked at most once a second, never waited on longer than 2 s. */
  storeReachable(): Promise<boolean> {
    const now = Date.now()
    if (this.storeCheck && now - this.storeCheck.at < STORE_CHECK_MS) return this.storeCheck.ok
    let timer: NodeJS.Timeout | undefined
    const ok = Promise.race([
      this.rt.store.ping().then(
        () => true,
        () => false,
      ),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), STORE_PING_TIMEOUT_MS)
        timer.unref()
      }),
    ]).finally(() => clearTimeout(timer))
    this.storeCheck = {at: now, ok}
    return ok
  }

  /** Whether the audit log fails to take lines (a full disk, a reader that stopped): no signing request can be answered but 503. */
  auditFailing(): boolean {
    return this.rt.audit.failing?.() ?? false
  }

  /** Counts and timings (the no-op meter unless metrics are on). */
  get meter(): Meter {
    return this.rt.meter ?? noopMeter
  }

  /** The limits and proxy trust in force (a reload changes the reloadable ones: rate, maxInFlight). */
  get settings(): ServerSettings {
    return this.rt.policy.config
  }

  /**
   * A published root's PEM when `sha256` (hex; ":" and "-" ignored) is its fingerprint, compared in
   * constant time: during a root rotation, bootstrap works with the old fingerprint and the new one.
   */
  root(sha256: string): string | undefined {
    const want = sha256.toLowerCase().replace(/[:-]/g, '')
    if (!/^[0-9a-f]{64}$/.test(want)) return undefined
    let found: string | undefined
    for (const r of this.rt.material.roots)
      if (timingSafeEqual(Buffer.from(want), Buffer.from(r.fingerprint))) found = r.pem
    return found
  }

  /** Every published root; during a root rotation, the old root's certificate of the new one beside them. */
  roots(): {crts: string[]; crossSigned?: string[]} {
    const m = this.rt.material
    return {crts: m.roots.map((r) => r.pem), ...(m.crossPems.length ? {crossSigned: m.crossPems} : {})}
  }

  /**
   * step's GET /version. requireClientAuthentication makes step send an identityCSR when it signs in
   * (see identity.ts): only when the API asks for client certificates (ca.yaml tls.clientCertificates),
   * the one way that identity is ever presented.
   */
  version(): VersionResponse {
    return {
      version: `sshca/${packageVersion()}`,
      requireClientAuthentication: this.clientCertificates === 'request',
    }
  }

  /** step-ca's GET /provisioners, paged as step-ca pages it (`cursor` is an offset, `limit` up to 100). */
  provisioners(page: {cursor?: string | undefined; limit?: string | undefined} = {}): ProvisionersResponse {
    const all = this.allProvisioners()
    const start = /^[0-9]{1,6}$/.test(page.cursor ?? '') ? Number(page.cursor) : 0
    const limit = /^[0-9]{1,3}$/.test(page.limit ?? '')
      ? Math.min(Math.max(Number(page.limit), 1), 100)
      : PROVISIONERS_PAGE
    const end = start + limit
    return {provisioners: all.slice(start, end), nextCursor: end < all.length ? String(end) : ''}
  }

  private allProvisioners(): ProvisionersResponse['provisioners'] {
    const oidc = this.rt.policy.config.provisioners.map((p) => ({
      type: 'OIDC',
      name: p.name,
      clientID: p.clientId ?? p.audience,
      audience: p.audience,
      // people sign in with provisioners that have a client id; CI provisioners only name an audience
      interactive: p.clientId !== undefined,
      configurationEndpoint: `${p.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`,
      ...(p.clientSecret !== undefined ? {clientSecret: p.clientSecret} : {}),
      ...(p.listenAddress !== undefined ? {listenAddress: p.listenAddress} : {}),
      ...(p.scopes !== undefined ? {scopes: p.scopes} : {}),
    }))
    // renewal, rekey and self-revocation by proof of possession, as step-ca's SSHPOP provisioner
    return [...oidc, {type: SSHPOP_TYPE, name: SSHPOP_PROVISIONER, claims: {enableSSHCA: true}}]
  }

  /** Every published SSH CA key (the active one first), with its rotation state and dates. */
  sshRoots(): SshRootsResponse {
    const info = (set: CaKeySet): CaKeyInfo[] =>
      set.published.map((p) => ({
        key: p.publicKey.blob.toString('base64'),
        id: p.id,
        state: p.state,
        createdAt: p.createdAt,
        ...(p.activatedAt ? {activatedAt: p.activatedAt} : {}),
        ...(p.deactivatedAt ? {deactivatedAt: p.deactivatedAt} : {}),
      }))
    const {userCa, hostCa} = this.rt.material
    return {
      userKey: userCa.published.map((p) => p.publicKey.blob.toString('base64')),
      hostKey: hostCa.published.map((p) => p.publicKey.blob.toString('base64')),
      hostPattern: this.rt.policy.config.ssh.hostPattern,
      keys: {user: info(userCa), host: info(hostCa)},
    }
  }

  /**
   * step-ca's `POST /ssh/sign`: a user certificate for an OIDC token, a host certificate for an
   * enrollment token; with an identityCSR, step's X.509 identity bound to it, when the API asks for
   * client certificates (ca.yaml tls.clientCertificates: request). Otherwise the identityCSR is not
   * read at all: an identity no one could present is not issued, and its parser is not anyone's to reach.
   */
  async signSsh(body: SshSignRequest, trace: AuditTrace): Promise<{cert: Certificate; identityCrt?: string[]}> {
    const key = parseSubjectKey({blobBase64: body.publicKey})
    const csr = this.clientCertificates === 'request' ? await identityRequest(body.identityCSR) : undefined
    const cert =
      body.certType === 'host'
        ? await signHostCertificate(this.rt, key, body.ott, trace, body)
        : await signUserCertificate(this.rt, key, body.ott, 'user', trace)
    return csr ? {cert, identityCrt: await issueIdentity(this.rt, csr, cert)} : {cert}
  }

  /** step-ca's X.509 `POST /sign` (a CSR): not offered, said plainly. */
  signX509(): never {
    throw denial(
      'ERR_NOT_IMPLEMENTED',
      'not_supported',
      'this CA issues SSH certificates only: X.509 certificates (step ca certificate) are not supported; POST /sign here takes {"public_key": "ssh-…"} with the token as "Authorization: Bearer <JWT>"',
    )
  }

  /** oidc-ssh-ca's `POST /sign`: the token as a bearer, the key as an authorized_keys line. */
  signBearer(authorization: string | undefined, publicKeyLine: string, trace: AuditTrace): Promise<Certificate> {
    const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '')
    if (!m) throw denial('ERR_INPUT', 'bad_request', 'send the token as "Authorization: Bearer <JWT>"')
    return signUserCertificate(this.rt, parseSubjectKey({line: publicKeyLine}), m[1]!, 'user', trace)
  }

  renewSsh(ott: string, trace: AuditTrace): Promise<Certificate> {
    return renewHostCertificate(this.rt, ott, trace)
  }

  /** step's `POST /ssh/rekey`: the host certificate again, for a new host key. */
  rekeySsh(body: SshRekeyRequest, trace: AuditTrace): Promise<Certificate> {
    return rekeyHostCertificate(this.rt, body.ott, parseSubjectKey({blobBase64: body.publicKey}), trace)
  }

  /** step's `POST /ssh/revoke`: a certificate revokes itself; audited as `ca revoke` is. */
  async revokeSsh(body: SshRevokeRequest, trace: AuditTrace): Promise<{status: 'ok'}> {
    trace.action = 'revoke'
    if (body.passive === false)
      throw denial('ERR_NOT_IMPLEMENTED', 'not_supported', 'non-passive revocation not implemented')
    const reason = body.reason?.trim() || 'unspecified'
    if (!/^[\x20-\x7e]*$/.test(reason)) throw denial('ERR_INPUT', 'bad_request', 'reason must be printable text')
    const done = await revokeOwnCertificate(this.rt, {token: body.ott, serial: body.serial, reason}, trace)
    const r = done.revocation
    this.rt.audit.write('certificate_revoked', {
      ...trace,
      kind: 'serial',
      by: 'sshpop',
      reason,
      ...(typeof body.reasonCode === 'number' ? {reason_code: body.reasonCode} : {}),
      revocations: [
        {
          id: r.id,
          serial: r.serial?.toString() ?? null,
          keyId: r.keyId,
          keyFingerprint: r.keyFingerprint,
          reason: r.reason,
          revokedAt: new Date(r.revokedAt * 1000).toISOString(),
        },
      ],
      certificates: [done.certificate.serial],
      certificate: done.certificate,
    })
    return {status: 'ok'}
  }

  /** step's `POST /ssh/config`: the templates `step ssh config` writes. */
  sshConfig(body: SshConfigRequest): SshConfigResponse {
    const m = this.rt.material
    return renderSshConfig(body.type === 'host' ? 'host' : 'user', body.data, {
      userKeys: publishedKeys(m.userCa),
      hostKeys: publishedKeys(m.hostCa),
      hostPattern: this.rt.policy.config.ssh.hostPattern,
    })
  }

  /** step's `POST /ssh/check-host`: whether a host name has a current certificate; not public, like the inventory. */
  async checkHost(body: SshCheckHostRequest, auth: ClientAuth, trace: AuditTrace): Promise<SshCheckHostResponse> {
    await this.authenticateReader(auth, trace)
    const name = asciiLower(body.principal)
    const exists = (await currentHosts(this.rt)).some((h) => h.principals.some((p) => asciiLower(p) === name))
    this.rt.audit.write('access_granted', {...trace, principal: body.principal, exists})
    return {exists}
  }

  /** step's `POST /ssh/bastion`: this CA configures no bastion, so every host is reached directly. */
  bastion(body: SshBastionRequest): SshBastionResponse {
    return {hostname: body.hostname}
  }

  /**
   * GET /ssh/krl, which anyone may ask for as often as they like: the list is built from every
   * revocation (a read of them all on the store's thread, ~9 ms for 5,000), so it is kept while the
   * store's revocation generation and the CA keys stand, and rebuilt at once when either moves (one
   * cheap read of the generation per request). A second at most otherwise: a store restored under a
   * running CA may come back to a generation it had with other revocations.
   */
  async krl(): Promise<Buffer> {
    const generation = await this.rt.store.revocationGeneration()
    const {userCa, hostCa} = this.rt.material
    const keys = [...everyKey(userCa), ...everyKey(hostCa)].map((k) => k.blob.toString('base64')).join(' ')
    const now = this.rt.clock()
    const c = this.krlCache
    if (c && c.generation === generation && c.keys === keys && now >= c.at && now - c.at < KRL_CACHE_MS) return c.krl
    const krl = currentKrl(this.rt)
    const entry = {at: now, generation, keys, krl}
    this.krlCache = entry
    krl.catch(() => {
      if (this.krlCache === entry) this.krlCache = undefined
    })
    return krl
  }

  /** The host inventory is not public: a token that would get a user certificate, or a person's current identity (step's mTLS), may see it. */
  async hosts(auth: ClientAuth, trace: AuditTrace): Promise<HostsResponse> {
    await this.authenticateReader(auth, trace)
    const current = await currentHosts(this.rt)
    // who enumerated the servers is an answer an investigation needs: audited like a refusal, and as
    // strictly (a line that cannot be written answers 503, not the list)
    this.rt.audit.write('access_granted', {...trace, hosts: current.length})
    return {
      hosts: current.map((h) => ({
        hostname: h.principals[0] ?? h.keyId,
        hid: h.keyFingerprint,
        host_tags: [],
        ...h,
      })),
    }
  }

  /**
   * sshca's form first (Authorization: Bearer <ID token> that matches a rule), else step's (a client
   * certificate: the identity of a current, unrevoked user certificate). Neither: 401, which is
   * what makes step sign in, get an identity and ask again.
   */
  private async authenticateReader(auth: ClientAuth, trace: AuditTrace): Promise<void> {
    trace.action = 'read'
    const m = /^Bearer\s+(\S+)$/i.exec(auth.authorization ?? '')
    if (m) {
      // what signing would ask but the key and the webhook: a token whose certificate the CA would
      // refuse (issuance stopped, no principal, a revoked key ID) reads nothing either. The webhook is
      // not asked: it authorizes certificates, and may count or prompt for each call it gets
      trace.cert_type = 'user'
      // verified first, so that the audit line of a read refused by the stop names who tried
      const {spec} = await userGrant(this.rt, m[1]!, 'user', trace).catch((err: unknown) => {
        // a token refused while issuance is stopped: the stop is the answer (a 401 would send the
        // caller to a sign-in that cannot help now); the audit line keeps why the token was refused
        trace.token_refusal = err instanceof SshcaError ? (reasonOf(err) ?? err.code) : 'internal_error'
        requireIssuanceEnabled(this.rt)
        delete trace.token_refusal
        throw err
      })
      requireIssuanceEnabled(this.rt)
      const revoked = await this.rt.store.revocationFor({keyId: spec.keyId})
      if (revoked) throw revokedDenial(revoked)
      return
    }
    if (auth.peerCertificate) {
      const rec = await identityRecord(this.rt, auth.peerCertificate, 'user', Math.floor(this.rt.clock() / 1000))
      trace.subject = rec.subject ?? rec.keyId
      return
    }
    // while issuance is stopped no sign-in could get a token or an identity that reads: say so now
    // (503), rather than send the caller to sign in (401) only to be refused after it
    requireIssuanceEnabled(this.rt)
    throw denial(
      'ERR_TOKEN_INVALID',
      'token_invalid',
      'send an identity token as "Authorization: Bearer <JWT>", or sign in with step (its identity certificate)',
    )
  }

  /** One audit line for a refused request: its reason (typed when the core refused it) and the detail callers never see. */
  recordRefusal(trace: AuditTrace, err: unknown, status: number): void {
    const reason =
      err instanceof SshcaError
        ? (reasonOf(err) ?? (status >= 500 ? 'internal_error' : 'bad_request'))
        : status >= 500
          ? 'internal_error'
          : 'bad_request'
    const event: AuditEvent =
      reason === 'rate_limited'
        ? 'rate_limited'
        : trace.action === 'read'
          ? 'access_denied'
          : trace.action === 'revoke'
            ? 'revocation_denied'
            : 'certificate_denied'
    try {
      this.rt.audit.write(event, {
        ...trace,
        reason,
        status,
        detail: (err as Error).message.slice(0, 500),
        ...auditDetails(err),
      })
    } catch {
      // the audit log cannot be written (that may be the error being answered): still answer
    }
    if (!trace.action)
      this.rt.meter?.decision({
        outcome: 'denied',
        provisioner: trace.provisioner,
        rule: trace.rule,
        certType: trace.cert_type,
        reason,
      })
    if (reason === 'rate_limited') this.rt.meter?.rateLimited(trace.route ?? 'unknown')
  }
}

/** Non-secret details a denial carries into its audit line (when a token was spent, on what). */
function auditDetails(err: unknown): Record<string, unknown> {
  if (!(err instanceof SshcaError) || !err.details) return {}
  const {reason: _reason, ...rest} = err.details
  return rest
}
