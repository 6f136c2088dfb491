/**
 * The policy's vocabulary: provisioners, rules, match conditions, and why a request was denied.
 * The lowest floor of the signing core: config/ parses ca.yaml into these shapes (its zod schema is
 * checked against them), and every room above speaks them.
 */
import {SshcaError} from '../../errors.ts'

export type Scalar = string | number | boolean

/** A scalar is equality, a list any-of, then an email domain, a list claim's member, a glob. */
export type MatchCondition = Scalar | Scalar[] | {domain: string} | {contains: Scalar} | {glob: string}

/**
 * Principals from a list claim (groups, roles): one per element that an `allow` glob admits, renamed
 * by `map`, each through the reserved-principal rule (a reserved result is dropped, never granted).
 */
export interface PrincipalsFrom {
  claim: string
  allow: string[]
  map?: Record<string, string> | undefined
}

/**
 * An authorizing webhook: after the rule matched and the certificate is built, the CA POSTs the
 * claims and the request to `url` and issues only if it answers `{"allow": true}` within `timeout`.
 */
export interface WebhookConfig {
  url: string
  /** Seconds. */
  timeout: number
  /** PEM file of the CA(s) that vouch for the webhook's TLS certificate (default: the system's). */
  ca?: string | undefined
  /** File whose first line is a shared secret: the body is signed with HMAC-SHA256 (X-Sshca-Signature). */
  secretFile?: string | undefined
}

export interface RuleConfig {
  name: string
  disabled: boolean
  webhook?: WebhookConfig | undefined
  match: Record<string, MatchCondition>
  certificate: {
    principals: string[]
    principalsFrom?: PrincipalsFrom | undefined
    keyId: string
    /** Seconds. */
    ttl: number
    forceCommand?: string | undefined
    sourceAddress?: string[] | undefined
    extensions: string[]
  }
}

export interface ProvisionerConfig {
  name: string
  type: 'oidc'
  issuer: string
  clientId?: string | undefined
  /** What the token's `aud` must name: `audience`, else `clientId`. */
  audience: string
  clientSecret?: string | undefined
  listenAddress?: string | undefined
  scopes?: string[] | undefined
  /** Seconds. */
  maxTtl?: number | undefined
  /** Longest token lifetime (exp − iat) and age accepted, seconds; default 1 h. */
  maxTokenAge?: number | undefined
  rules: RuleConfig[]
}

/** Why a request was denied; written to the audit log, never sent to the caller. */
export type DenialReason =
  | 'bad_request'
  | 'token_invalid'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'token_replayed'
  /** The token already reached its rule's authorizing webhook (a token asks once). */
  | 'webhook_already_asked'
  | 'token_lifetime_too_long'
  | 'token_before_restore'
  | 'issuer_unknown'
  | 'audience_mismatch'
  | 'jwks_unavailable'
  | 'no_rule_matched'
  | 'multiple_rules_matched'
  | 'claim_missing'
  | 'principal_invalid'
  | 'principal_reserved'
  | 'no_principals'
  | 'webhook_denied'
  | 'webhook_unavailable'
  | 'key_id_invalid'
  | 'cert_type_not_allowed'
  | 'policy_disabled'
  | 'issuance_stopped'
  | 'policy_reloaded'
  | 'host_not_bound'
  | 'key_not_bound'
  | 'certificate_revoked'
  | 'certificate_expired'
  | 'certificate_unknown'
  | 'proof_invalid'
  /** A key anyone can sign with (src/ssh/weak-keys.ts): never certified, and no proof made with it counts. */
  | 'key_unsafe'
  | 'ca_key_unknown'
  | 'revoked'
  | 'superseded'
  | 'key_in_use'
  | 'rate_limited'
  | 'overloaded'
  | 'store_unavailable'
  | 'serial_mismatch'
  | 'identity_invalid'
  | 'not_supported'

/** The codes a denial carries (each has its HTTP status in http/errors.ts). */
export type DenialCode =
  | 'ERR_POLICY_DENIED'
  | 'ERR_TOKEN_INVALID'
  | 'ERR_TOKEN_REPLAYED'
  | 'ERR_INPUT'
  | 'ERR_ISSUANCE_DISABLED'
  | 'ERR_SSH_UNSUPPORTED'
  | 'ERR_SSH_FORMAT'
  | 'ERR_RATE_LIMITED'
  | 'ERR_CA_OVERLOADED'
  | 'ERR_UPSTREAM_UNAVAILABLE'
  | 'ERR_NOT_IMPLEMENTED'

/**
 * A refused request: its code decides the status, its typed reason goes to the audit log. A denial
 * is the CA's answer, not a fault: it carries no stack. Capturing one walks every frame of
 * fastify's hook chain, and was a quarter of the CPU a shed request (503) costs under overload.
 */
export class DenialError extends SshcaError {
  readonly reason: DenialReason
  constructor(code: DenialCode, reason: DenialReason, message: string, details: Record<string, unknown> = {}) {
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    try {
      super(code, message, {details: {...details, reason}})
    } finally {
      Error.stackTraceLimit = limit
    }
    this.name = 'DenialError'
    this.reason = reason
  }
}

export function denial(
  code: DenialCode,
  reason: DenialReason,
  message: string,
  details: Record<string, unknown> = {},
): DenialError {
  return new DenialError(code, reason, message, details)
}

/** The denial reason an error carries: DenialError's own, or one set in an SshcaError's details. */
export function reasonOf(err: SshcaError): DenialReason | undefined {
  return err instanceof DenialError ? err.reason : (err.details?.reason as DenialReason | undefined)
}
