/**
 * The audit log: one JSON line per decision, on stdout or appended to a file. Never a raw token:
 * its id and SHA-256. Selected claims only, never the whole token payload.
 */
import {closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, writeSync} from 'node:fs'
import {dirname} from 'node:path'
import {isMainThread, threadId} from 'node:worker_threads'
import {SshcaError} from '../../errors.ts'
import {jsonLine} from '../../util/text.ts'

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
  /** A read of the host inventory that was answered: who read it (its count, or the name it asked about). */
  | 'access_granted'
  | 'certificate_unrevoked'
  | 'enrollment_token_issued'
  | 'rate_limited'
  | 'tls_certificate_renewed'
  /** The 12-hourly renewal of the API's TLS certificate failed: the old one serves on, and the next look tries again. */
  | 'tls_certificate_renewal_failed'
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
  | 'worker_exited'

export interface AuditLog {
  write(event: AuditEvent, fields: Record<string, unknown>): void
  close(): Promise<void>
}

/** Claims worth a line in the audit log: identity and CI provenance; nothing secret. */
export const AUDITED_CLAIMS = [
  'sub',
  'email',
  'email_verified',
  'name',
  'preferred_username',
  'groups',
  'repository',
  'repository_owner',
  'run_id',
  'run_attempt',
  'ref',
  'sha',
  'event_name',
  'environment',
  'workflow',
  'job_workflow_ref',
  'actor',
  'runner_environment',
  'host',
] as const

export function selectedClaims(
  claims: Readonly<Record<string, unknown>>,
  extra: readonly string[] = [],
): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of new Set([...AUDITED_CLAIMS, ...extra])) {
    const v = claims[k]
    if (v === undefined) continue
    out[k] = Array.isArray(v) ? v.slice(0, 20) : typeof v === 'string' ? v.slice(0, 300) : v
  }
  return out
}

/**
 * The lock the threads of one CA (src/ca/workers.ts) take to append a line: an Int32Array over a
 * SharedArrayBuffer, 0 when free, else the holder's threadId + 1 (so that the main thread can free
 * the lock of a worker that died holding it: releaseAuditLock).
 */
export function auditLock(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4))
}

/** Frees `lock` if the thread `threadId` holds it (it has ended). */
export function releaseAuditLock(lock: Int32Array, threadId: number): void {
  if (Atomics.compareExchange(lock, 0, threadId + 1, 0) === threadId + 1) Atomics.notify(lock, 0)
}

/** Takes the lock; gives up (false) after `patienceMs`, checking every 10 ms. */
function acquire(lock: Int32Array, patienceMs: number): boolean {
  const me = threadId + 1
  for (let waited = 0; ; waited += 10) {
    const holder = Atomics.compareExchange(lock, 0, 0, me)
    if (holder === 0) return true
    if (waited >= patienceMs) return false
    Atomics.wait(lock, 0, holder, 10)
  }
}

function release(lock: Int32Array): void {
  Atomics.store(lock, 0, 0)
  Atomics.notify(lock, 0, 1)
}

/** Sleeps this thread (a full pipe: EAGAIN). */
const pause = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

/**
 * Writes all of `line`; on a failure part-way, cuts what it wrote off a regular file again, so the
 * file never holds part of a line, and throws.
 */
function writeLine(fd: number, line: Buffer): void {
  let done = 0
  try {
    while (done < line.length) {
      try {
        done += writeSync(fd, line, done)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err
        pause(10)
      }
    }
  } catch (err) {
    if (done > 0 && fstatSync(fd).isFile()) ftruncateSync(fd, fstatSync(fd).size - done)
    throw err
  }
}

const unavailable = (err: unknown): SshcaError =>
  new SshcaError('ERR_STORE_UNAVAILABLE', `the audit log cannot be written: ${(err as Error).message}`, {
    cause: err,
    details: {reason: 'store_unavailable'},
  })

/**
 * `dest` is "-" for stdout or a file path (appended, created 0600); `base` starts every line (a
 * worker's number). Each line is written whole, by one write(2) as a rule, while holding `lock` when
 * several threads share the destination: lines never interleave, whatever stdout is (a pipe splits
 * writes over 4 KiB, and an audit line can be longer). A line that cannot be written (a full disk, an
 * I/O error) makes write() throw ERR_STORE_UNAVAILABLE, so the caller fails closed (503), and is
 * kept: it is written, whole, before this log's next line.
 * The main thread never waits long for the lock (a worker that died holding it is freed by the main
 * thread's event loop): after a second it keeps its line for its next write. After close(), write()
 * throws ERR_STORE_UNAVAILABLE and writes nothing.
 */
export function createAuditLog(dest: string, o: {lock?: Int32Array; base?: Record<string, unknown>} = {}): AuditLog {
  if (dest !== '-') mkdirSync(dirname(dest), {recursive: true})
  const fd = dest === '-' ? 1 : openSync(dest, 'a', 0o600)
  const kept: Buffer[] = []
  let closed = false
  const flush = (): void => {
    // the descriptor's number may belong to another file by now (the next one opened takes it): a line
    // written there would land in a database or another CA's log
    if (closed) throw unavailable(new Error('it is closed'))
    if (o.lock && !acquire(o.lock, isMainThread ? 1000 : Infinity))
      throw unavailable(new Error('it is locked by a thread that does not let go'))
    try {
      while (kept.length > 0) {
        writeLine(fd, kept[0]!)
        kept.shift()
      }
    } catch (err) {
      // a full disk or an I/O error: the caller fails closed (503)
      throw unavailable(err)
    } finally {
      if (o.lock) release(o.lock)
    }
  }
  return {
    write(event, fields) {
      kept.push(
        Buffer.from(
          // jsonLine: a request's text (an issuer, a claim, a key ID) shows no control character to the
          // operator reading this log on a terminal (`ca serve`'s default is stdout)
          `${jsonLine({level: 'info', time: new Date().toISOString(), ...o.base, event, ...fields})}\n`,
        ),
      )
      flush()
    },
    async close() {
      if (closed) return
      try {
        flush()
      } finally {
        closed = true
        if (fd !== 1) closeSync(fd)
      }
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
