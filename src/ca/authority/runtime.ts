/** Everything a running CA holds. `policy` is swapped whole on a successful reload (SIGHUP). */
import type {AuditLog} from '../observe/audit.ts'
import type {Meter} from '../observe/meter.ts'
import type {CaConfig} from '../config/config.ts'
import type {CaMaterial} from '../keys/material.ts'
import type {TokenVerifier} from '../provisioner/oidc.ts'
import type {IssuanceStop, Store} from '../store/store.ts'

export interface PolicyState {
  config: CaConfig
  verifier: TokenVerifier
}

export interface CaRuntime {
  policy: PolicyState
  material: CaMaterial
  store: Store
  audit: AuditLog
  /** Counts and timings (the no-op meter when absent). */
  meter?: Meter
  /** Milliseconds since the epoch. */
  clock: () => number
  /**
   * What the store says beyond ca.yaml, kept current by the server (every replica polls it): the
   * emergency stop (`ca stop-issuance`) and the restore mark (tokens issued before it are refused).
   */
  safety?: SafetyState
  /** How many threads serve the API (1 when absent): they share limits.maxInFlight. */
  threads?: number
}

/**
 * limits.maxInFlight when ca.yaml leaves it unset: this many for each thread serving the API (the
 * measurements behind it are in src/ca/http/app.ts, which sheds past it).
 */
export const IN_FLIGHT_PER_THREAD = 48

export interface SafetyState {
  stop: IssuanceStop | null
  /** Seconds since the epoch; null when this store was never restored from a backup. */
  restoredAt: number | null
}

/** What a request's audit line says about it, filled in as the pipeline learns it. */
export interface AuditTrace {
  request_id: string
  client_address?: string
  route?: string
  provisioner?: string
  rule?: string
  subject?: string
  claims?: Record<string, unknown>
  token?: {id: string; sha256: string}
  key_fingerprint?: string
  key_type?: string
  cert_type?: string
  /** The rule's authorizing webhook: what it answered, and how long it took. */
  webhook?: {
    url: string
    urlSha256: string
    outcome: 'allow' | 'deny' | 'error'
    status: number | null
    ms: number
    why?: string
  }
  /** What the request asked for, when not a certificate: its refusal is audited under that name. */
  action?: 'read' | 'revoke'
  /** Why a token was refused, when something else (the issuance stop) was the answer. */
  token_refusal?: string
}
