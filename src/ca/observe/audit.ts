/**
 * The audit log: one JSON line per decision (pino), on stdout or appended to a file. Never a raw
 * token: its id and SHA-256. Selected claims only, never the whole token payload.
 */
import {pino, type Logger} from 'pino'
import {SshcaError} from '../../errors.ts'

export type AuditEvent =
  | 'server_started'
  | 'server_stopped'
  | 'policy_loaded'
  | 'policy_reload_failed'
  | 'certificate_issued'
  | 'certificate_denied'
  | 'certificate_revoked'
  /** A refused SSHPOP self-revocation (POST /ssh/revoke). */
  | 'revocation_denied'
  /** A refused read of the host inventory (GET /ssh/hosts, POST /ssh/check-host). */
  | 'access_denied'
  | 'certificate_unrevoked'
  | 'enrollment_token_issued'
  | 'rate_limited'
  | 'tls_certificate_renewed'
  | 'ca_keys_loaded'
  | 'ca_keys_reload_failed'
  | 'ca_roots_loaded'
  | 'ca_root_prepared'
  | 'ca_root_activated'
  | 'ca_root_retired'
  | 'ca_key_prepared'
  | 'ca_key_activated'
  | 'ca_key_retired'
  | 'issuance_state_applied'
  /** Admin events of the safety net, written to the store by `ca stop-issuance` / `resume-issuance` / `backup`. */
  | 'issuance_stopped'
  | 'issuance_resumed'
  | 'ca_backup_created'
  | 'ca_restored'
  | 'intermediate_issued'

export interface AuditLog {
  write(event: AuditEvent, fields: Record<string, unknown>): void
  close(): Promise<void>
}

/** Claims worth a line in the audit log: identity and CI provenance; nothing secret. */
export const AUDITED_CLAIMS = [
  'sub', 'email', 'email_verified', 'name', 'preferred_username', 'groups',
  'repository', 'repository_owner', 'run_id', 'run_attempt', 'ref', 'sha', 'event_name', 'environment',
  'workflow', 'job_workflow_ref', 'actor', 'runner_environment', 'host',
] as const

export function selectedClaims(claims: Readonly<Record<string, unknown>>, extra: readonly string[] = []): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of new Set([...AUDITED_CLAIMS, ...extra])) {
    const v = claims[k]
    if (v === undefined) continue
    out[k] = Array.isArray(v) ? v.slice(0, 20) : typeof v === 'string' ? v.slice(0, 300) : v
  }
  return out
}

/** `dest` is "-" for stdout or a file path (appended, created 0600). */
export function createAuditLog(dest: string): AuditLog {
  const stream = pino.destination({dest: dest === '-' ? 1 : dest, sync: true, mkdir: true, mode: 0o600})
  const logger: Logger = pino(
    {
      base: null,
      messageKey: 'message',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {level: (label) => ({level: label})},
    },
    stream,
  )
  return {
    write(event, fields) {
      try {
        logger.info({event, ...fields})
      } catch (err) {
        // a full disk or an I/O error: the caller fails closed (503). pino keeps what it could not
        // write and appends it, whole, on the next write that succeeds
        throw new SshcaError('ERR_STORE_UNAVAILABLE', `the audit log cannot be written: ${(err as Error).message}`, {cause: err, details: {reason: 'store_unavailable'}})
      }
    },
    async close() {
      logger.flush()
      if (dest !== '-') stream.end()
    },
  }
}

/** An audit log kept in memory (benchmarks and unit tests). */
export function memoryAuditLog(): AuditLog & {events: {event: AuditEvent; [k: string]: unknown}[]} {
  const events: {event: AuditEvent; [k: string]: unknown}[] = []
  return {
    events,
    write(event, fields) {
      events.push({event, ...fields})
    },
    async close() {},
  }
}
