/**
 * The one face of the signing core the HTTP layer sees (smallstep's `Authority`): the read routes'
 * answers, the three ways to get a certificate, the KRL and the host inventory, and how a refused
 * request is audited. Routes parse and render; every decision is made here and below.
 */
import {timingSafeEqual} from 'node:crypto'
import type {HostsResponse, ProvisionersResponse, SshRootsResponse, SshSignRequest} from '../../protocol/api.ts'
import type {Certificate} from '../../ssh/cert.ts'
import {SshcaError} from '../../errors.ts'
import type {ServerSettings} from '../config/config.ts'
import type {AuditEvent} from '../observe/audit.ts'
import {selectRule} from '../policy/policy.ts'
import {denial, reasonOf} from '../policy/types.ts'
import {currentHosts, currentKrl, renewHostCertificate, signHostCertificate} from './host.ts'
import type {AuditTrace, CaRuntime} from './runtime.ts'
import {parseSubjectKey, signUserCertificate} from './sign.ts'

export class Authority {
  readonly rt: CaRuntime

  constructor(rt: CaRuntime) {
    this.rt = rt
  }

  /** The limits and proxy trust in force (a reload changes the reloadable ones: rate, maxInFlight). */
  get settings(): ServerSettings {
    return this.rt.policy.config
  }

  /** The root's PEM when `sha256` (hex; ":" and "-" ignored) is its fingerprint, compared in constant time. */
  root(sha256: string): string | undefined {
    const want = sha256.toLowerCase().replace(/[:-]/g, '')
    const have = this.rt.material.rootFingerprint
    return /^[0-9a-f]{64}$/.test(want) && timingSafeEqual(Buffer.from(want), Buffer.from(have)) ? this.rt.material.rootPem : undefined
  }

  roots(): {crts: string[]} {
    return {crts: [this.rt.material.rootPem]}
  }

  provisioners(): ProvisionersResponse {
    return {
      provisioners: this.rt.policy.config.provisioners.map((p) => ({
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
      })),
      nextCursor: '',
    }
  }

  sshRoots(): SshRootsResponse {
    return {
      userKey: [this.rt.material.userCa.publicKey.blob.toString('base64')],
      hostKey: [this.rt.material.hostCa.publicKey.blob.toString('base64')],
      hostPattern: this.rt.policy.config.ssh.hostPattern,
    }
  }

  /** step-ca's `POST /ssh/sign`: a user certificate for an OIDC token, a host certificate for an enrollment token. */
  signSsh(body: SshSignRequest, trace: AuditTrace): Promise<Certificate> {
    const key = parseSubjectKey({blobBase64: body.publicKey})
    return body.certType === 'host' ? signHostCertificate(this.rt, key, body.ott, trace, body) : signUserCertificate(this.rt, key, body.ott, 'user', trace)
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

  krl(): Promise<Buffer> {
    return currentKrl(this.rt)
  }

  /** The host inventory is not public: a token that would get a certificate may see it. */
  async hosts(authorization: string | undefined): Promise<HostsResponse> {
    const m = /^Bearer\s+(\S+)$/i.exec(authorization ?? '')
    if (!m) throw denial('ERR_TOKEN_INVALID', 'token_invalid', 'send an identity token as "Authorization: Bearer <JWT>"')
    const verified = await this.rt.policy.verifier.verify(m[1]!)
    selectRule(verified.provisioner, verified.claims)
    return {hosts: await currentHosts(this.rt)}
  }

  /** One audit line for a refused request: its reason (typed when the core refused it) and the detail callers never see. */
  recordRefusal(trace: AuditTrace, err: unknown, status: number): void {
    const reason = err instanceof SshcaError ? (reasonOf(err) ?? (status >= 500 ? 'internal_error' : 'bad_request')) : status >= 500 ? 'internal_error' : 'bad_request'
    const event: AuditEvent = reason === 'rate_limited' ? 'rate_limited' : 'certificate_denied'
    try {
      this.rt.audit.write(event, {...trace, reason, status, detail: (err as Error).message.slice(0, 500), ...auditDetails(err)})
    } catch {
      // the audit log cannot be written (that may be the error being answered): still answer
    }
    this.rt.meter?.decision({outcome: 'denied', provisioner: trace.provisioner, rule: trace.rule, certType: trace.cert_type, reason})
  }
}

/** Non-secret details a denial carries into its audit line (when a token was spent, on what). */
function auditDetails(err: unknown): Record<string, unknown> {
  if (!(err instanceof SshcaError) || !err.details) return {}
  const {reason: _reason, ...rest} = err.details
  return rest
}
