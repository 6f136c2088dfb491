/**
 * The audit log: one JSON line per decision, on stdout or appended to a file. Never a raw token:
 * its id and SHA-256. Selected claims only, never the whole token payload.
 */
import {closeSync, constants, fstatSync, ftruncateSync, mkdirSync, openSync, statSync, writeSync} from 'node:fs'
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
  /**
   * A renewal or rekey whose answer was lost, asked again: the certificate it made then, handed out
   * again as recorded (no new serial): its serial, when it was issued and the request that made it.
   */
  | 'certificate_redelivered'
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
  /** A worker's event loop stood still for WORKER_STALL_MS (workers.ts): it is ended, then replaced (worker_exited). */
  | 'worker_stalled'
  /** Refusals a thread counted rather than kept while its audit log failed (DROPPABLE), written once it takes lines again. */
  | 'audit_lines_dropped'

export interface AuditLog {
  write(event: AuditEvent, fields: Record<string, unknown>): void
  close(): Promise<void>
  /** True while the destination fails (a write gave up and none has been written since), for every thread writing to it. */
  failing?(): boolean
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

/**
 * The claims of a request's audit line: AUDITED_CLAIMS, cut to 20 elements and 300 characters, and
 * `policyRead` — every claim the provisioner's rules read — whole: a policy what-if (`ca explain
 * --replay/--since`) replays them, and a cut list hid the group past its 20th element that a rule
 * matched or mapped (the CA reads up to 256). A verified token's own size (8 KiB at most) bounds them.
 */
export function selectedClaims(
  claims: Readonly<Record<string, unknown>>,
  policyRead: readonly string[] = [],
): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const whole = new Set(policyRead)
  for (const k of new Set([...AUDITED_CLAIMS, ...policyRead])) {
    const v = claims[k]
    if (v === undefined) continue
    out[k] = whole.has(k) ? v : Array.isArray(v) ? v.slice(0, 20) : typeof v === 'string' ? v.slice(0, 300) : v
  }
  return out
}

/**
 * How long a line waits for a destination that takes nothing (a pipe or socket whose reader has
 * stopped reading: EAGAIN) before the write gives up and its request fails closed (503). A log
 * shipper's pause shorter than this costs nothing; a reader that stops for good no longer freezes the
 * CA: once a write has given up, writes try once without waiting, so requests are refused at once,
 * until the destination takes a line again. The thread waits in place, its event loop with it: well
 * under the TLS handshake's and the headers' default deadlines (5 s), which would otherwise fire on
 * the connections it holds as soon as it wakes.
 */
export const AUDIT_PATIENCE_MS = 2000

/** The holder: 0 when free, else its threadId + 1 (so that the main thread can free a dead one's: releaseAuditLock). */
const HOLDER = 0
/** Flags, shared by every thread writing to one destination. */
const FLAGS = 1
/**
 * The destination ends inside a line: a thread has written part of one. It holds the lock until it has
 * written the rest; if it gives up (at close) or ends first, whoever takes the lock next ends the line
 * with a newline, so that the cut line is one unreadable line, not two glued together.
 */
const CUT = 1
/**
 * A write gave up: the destination took nothing for the patience, or failed (a full disk). Until a
 * line is written again, writes try once, without waiting for the destination or for the lock.
 */
const FAILING = 2

/**
 * The lock the threads of one CA (src/ca/workers.ts) take to append a line, and the destination's
 * state (CUT, FAILING): an Int32Array over a SharedArrayBuffer.
 */
export function auditLock(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(8))
}

/** Frees `lock` if the thread `threadId` holds it (it has ended; a line it was writing stays CUT). */
export function releaseAuditLock(lock: Int32Array, threadId: number): void {
  if (Atomics.compareExchange(lock, HOLDER, threadId + 1, 0) === threadId + 1) Atomics.notify(lock, HOLDER)
}

/**
 * Takes the lock; gives up (false) after `patienceMs`, checking every 10 ms, or as soon as the
 * destination is FAILING (its holder found it so: no line of this thread's would be taken either).
 */
function acquire(lock: Int32Array, patienceMs: number, evenIfFailing = false): boolean {
  const me = threadId + 1
  for (let waited = 0; ; waited += 10) {
    const holder = Atomics.compareExchange(lock, HOLDER, 0, me)
    if (holder === 0) return true
    if (waited >= patienceMs || (!evenIfFailing && flagged(lock, FAILING))) return false
    Atomics.wait(lock, HOLDER, holder, 10)
  }
}

function release(lock: Int32Array): void {
  Atomics.store(lock, HOLDER, 0)
  Atomics.notify(lock, HOLDER, 1)
}

function flagged(lock: Int32Array, flag: number): boolean {
  return (Atomics.load(lock, FLAGS) & flag) !== 0
}

/** How long a flush waits for the lock and the destination (createAuditLog's flush). */
type Wait = 'unless-failing' | 'always' | 'never'

/** Sleeps this thread (a full pipe: EAGAIN). */
const pause = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)

/** A write that failed after `written` bytes of its line. */
class WriteFailure extends Error {
  readonly written: number
  constructor(cause: unknown, written: number) {
    super((cause as Error).message, {cause})
    this.written = written
  }
}

/**
 * Writes `line` from byte `from` on; returns where it got to: line.length, or less when the destination
 * took nothing until `deadline` (performance.now()). Any other failure throws a WriteFailure. The
 * destination is CUT from before the line's first byte until the caller has seen it all out: a thread
 * ended part-way (terminate() stops it in its wait, with no finally run) leaves the line for the next
 * writer to end (at worst, ended between its last byte and the caller, an empty line).
 */
function writeFrom(fd: number, lock: Int32Array, line: Buffer, from: number, deadline: number): number {
  if (line.length > 1) Atomics.or(lock, FLAGS, CUT)
  let done = from
  while (done < line.length) {
    try {
      done += writeSync(fd, line, done)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw new WriteFailure(err, done)
      const left = deadline - performance.now()
      if (left <= 0) return done
      pause(Math.min(10, left))
    }
  }
  return done
}

const unavailable = (err: unknown): SshcaError =>
  new SshcaError('ERR_STORE_UNAVAILABLE', `the audit log cannot be written: ${(err as Error).message}`, {
    cause: err,
    details: {reason: 'store_unavailable'},
  })

/** Opens `path` to append, created 0600, without waiting: a named pipe nothing reads is an error (ENXIO). */
function openLog(path: string): number {
  try {
    return openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NONBLOCK, 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err
    throw unavailable(new Error(`${path} is a named pipe that nothing reads: start its reader first`, {cause: err}))
  }
}

/**
 * Stdout, as a descriptor whose writes never block: a pipe's or a terminal's is opened again, through
 * /proc, non-blocking (descriptor 1 is shared with the rest of the process, and Node leaves a terminal's
 * blocking: a terminal nobody reads, Ctrl-S, would hold the thread for good). A file never blocks; a
 * socket (a journal's stream) cannot be opened again, and Node makes it non-blocking (`ca serve` makes
 * process.stdout first); without /proc, descriptor 1 as it is.
 */
function openStdout(): number {
  try {
    const st = fstatSync(1)
    if (st.isFIFO() || st.isCharacterDevice())
      return openSync('/proc/self/fd/1', constants.O_WRONLY | constants.O_NONBLOCK)
  } catch {
    // no /proc: descriptor 1
  }
  return 1
}

/**
 * Refusals: nothing was done but a refusal. Past KEPT_MAX bytes of kept lines a thread counts them
 * rather than keep them (a stall with a flood of refused requests would otherwise grow without bound),
 * and writes the counts (`audit_lines_dropped`) once the destination takes lines again. Every other line
 * is kept: an issuance's was recorded in the store, and each costs a token the policy accepts.
 */
const DROPPABLE: ReadonlySet<AuditEvent> = new Set([
  'certificate_denied',
  'revocation_denied',
  'access_denied',
  'rate_limited',
])
const KEPT_MAX = 16 * 1024 * 1024

/**
 * `dest` is "-" for stdout or a file path (appended, created 0600); `base` starts every line (a
 * worker's number). Each line is written whole, by one write(2) as a rule, while holding `lock` when
 * several threads share the destination: lines never interleave, whatever stdout is (a pipe splits
 * writes over 4 KiB, and an audit line can be longer). A line that cannot be written (a full disk, an
 * I/O error, a reader that took nothing for the patience) makes write() throw ERR_STORE_UNAVAILABLE,
 * so the caller fails closed (503), and is kept: it is written, whole, before this log's next line, or
 * by a retry every 100 ms, whichever comes first (a thread's kept lines end with it: a worker that
 * dies, a close while the destination fails). On a file, what part of a line was written is cut off
 * again; on a pipe, whose bytes cannot be taken back, the thread keeps the lock until it has written
 * the rest (the other threads' writes fail at once meanwhile).
 * A write waits for the lock and the destination together at most the patience, and the writes of one
 * turn of the event loop at most the patience in all (the main thread at most a second for the lock: a
 * worker that died holding it is freed by the main thread's event loop), and not at all while the
 * destination is FAILING, which a lock waited for in vain makes it too. After close(), write() throws
 * ERR_STORE_UNAVAILABLE and writes nothing.
 */
export function createAuditLog(
  dest: string,
  o: {
    lock?: Int32Array
    base?: Record<string, unknown>
    patienceMs?: number
    /** Kept lines past which a refusal is counted rather than kept (DROPPABLE); KEPT_MAX unless a test sets it. */
    keptMaxBytes?: number
    /**
     * Told why, when a write gives up and the destination becomes FAILING (by whichever thread found it
     * so), and undefined when a line is written again: so that `ca serve` can say so on stderr, the one
     * place an operator reads while the audit log takes nothing.
     */
    onFailing?: (why: string | undefined) => void
  } = {},
): AuditLog {
  if (dest !== '-') mkdirSync(dirname(dest), {recursive: true})
  // O_NONBLOCK, which a file ignores, makes a named pipe's writes wait here, bounded, and its open fail
  // when nothing reads it, rather than wait for a reader
  const fd = dest === '-' ? openStdout() : openLog(dest)
  const lock = o.lock ?? auditLock()
  const patience = o.patienceMs ?? AUDIT_PATIENCE_MS
  const lockPatience = isMainThread ? Math.min(1000, patience) : patience
  const keptMax = o.keptMaxBytes ?? KEPT_MAX
  const kept: Buffer[] = []
  let keptBytes = 0
  /** Refusals counted rather than kept (DROPPABLE), by event. */
  const dropped = new Map<AuditEvent, number>()
  let droppedSince = ''
  /** How much of kept[0] is written: more than 0 only on a destination that cannot take it back, the lock held meanwhile. */
  let offset = 0
  let retry: NodeJS.Timeout | undefined
  let closed = false
  const line = (event: AuditEvent, fields: Record<string, unknown>): Buffer =>
    Buffer.from(
      // jsonLine: a request's text (an issuer, a claim, a key ID) shows no control character to the
      // operator reading this log on a terminal (`ca serve`'s default is stdout)
      `${jsonLine({level: 'info', time: new Date().toISOString(), ...o.base, event, ...fields})}\n`,
    )
  const keep = (b: Buffer): void => {
    kept.push(b)
    keptBytes += b.length
  }
  /** `wait`: 'unless-failing' (a request's line), 'always' (close: the last lines out, if they can be), 'never' (the retry). */
  const flush = (wait: Wait): void => {
    // the descriptor's number may belong to another file by now (the next one opened takes it): a line
    // written there would land in a database or another CA's log
    if (closed) throw unavailable(new Error('it is closed'))
    try {
      writeKept(wait)
      if (dropped.size > 0) {
        // what was counted rather than kept, now that the destination takes lines again
        keep(line('audit_lines_dropped', {since: droppedSince, dropped: Object.fromEntries(dropped)}))
        dropped.clear()
        writeKept('never')
      }
    } finally {
      // what could not be written is tried again every 100 ms, without waiting: no request waits on it
      if (kept.length > 0) retry ??= setInterval(retryKept, 100).unref()
      else if (retry) retry = void clearInterval(retry)
    }
  }
  /**
   * When this turn of the event loop began to wait on the log: the lines of one turn (a group commit
   * settles a whole batch in one) wait the patience in all, not each, so the thread's event loop stands
   * still at most that long (src/ca/workers.ts ends a worker that stands still much longer).
   */
  let turnBegan: number | undefined
  const turnStart = (): number => {
    if (turnBegan === undefined) {
      turnBegan = performance.now()
      setImmediate(() => (turnBegan = undefined)).unref()
    }
    return turnBegan
  }
  /** Writes the kept lines, waiting for the lock and the destination as `wait` says (flush). */
  const writeKept = (wait: Wait): void => {
    // while the destination fails, a request's line gets one try, without waiting for it or for the lock
    const waits = (): boolean => wait === 'always' || (wait === 'unless-failing' && !flagged(lock, FAILING))
    // a request's line: what this turn has left of the patience (all of it for the turn's first line)
    const first = turnBegan === undefined
    const start = wait === 'unless-failing' ? turnStart() : performance.now()
    const left = wait !== 'unless-failing' || first ? patience : Math.max(0, start + patience - performance.now())
    const lockWait = waits() ? Math.min(lockPatience, left) : 0
    if (offset === 0 && !acquire(lock, lockWait, wait === 'always')) {
      if (flagged(lock, FAILING))
        throw unavailable(new Error('it took no line lately, and another thread is writing to it'))
      const why = 'it is locked by a thread that does not let go'
      // waited for in vain, the whole lock patience: its holder is stuck (a write to a disk that
      // stopped answering, a thread ended), so the next lines try once rather than each wait again
      if (lockWait === lockPatience) fail(why)
      throw unavailable(new Error(why))
    }
    // one patience for the lock and the destination; none if the holder found it failing meanwhile
    const deadline = waits() ? start + patience : 0
    try {
      // another thread's cut line ends here, so that this log's line starts a line of its own
      if (offset === 0 && flagged(lock, CUT)) {
        let ended: number
        try {
          ended = writeFrom(fd, lock, Buffer.from('\n'), 0, deadline)
        } catch (err) {
          // the cut line stays CUT for whoever writes next
          fail((err as Error).message)
          throw unavailable(err)
        }
        if (ended === 0) throw stalled(deadline > 0)
        Atomics.and(lock, FLAGS, ~CUT)
      }
      while (kept.length > 0) {
        offset = writeFrom(fd, lock, kept[0]!, offset, deadline)
        if (offset < kept[0]!.length) {
          // nothing of it out: nothing cut
          if (offset === 0) Atomics.and(lock, FLAGS, ~CUT)
          throw stalled(deadline > 0)
        }
        keptBytes -= kept.shift()!.length
        offset = 0
        Atomics.and(lock, FLAGS, ~CUT)
      }
      if (Atomics.and(lock, FLAGS, ~FAILING) & FAILING) o.onFailing?.(undefined)
    } catch (err) {
      if (err instanceof WriteFailure) {
        fail(err.message)
        offset = err.written
        // a full disk or an I/O error part-way: a file loses what it got of the line, which stays kept whole
        try {
          if (offset > 0 && fstatSync(fd).isFile()) {
            ftruncateSync(fd, fstatSync(fd).size - offset)
            offset = 0
          }
        } catch {
          // the part stays; the rest follows it when the file takes it
        }
        if (offset === 0) Atomics.and(lock, FLAGS, ~CUT)
      }
      throw err instanceof SshcaError ? err : unavailable(err)
    } finally {
      // part of a line out: the lock stays this thread's until the rest is, and the other threads,
      // which cannot write meanwhile, do not wait for it
      if (offset === 0) release(lock)
      else fail('a line is part-way out, and it takes no more')
    }
  }
  /** Lines kept from earlier writes: their failure was their requests' answer. */
  const retryKept = (): void => {
    try {
      flush('never')
    } catch {
      // tried again in 100 ms
    }
  }
  /** FAILING, told (onFailing) by the thread that found it so. */
  const fail = (why: string): void => {
    if (!(Atomics.or(lock, FLAGS, FAILING) & FAILING)) o.onFailing?.(why)
  }
  /** The error of a destination that took nothing; FAILING once it took nothing for the patience. */
  const stalled = (waited: boolean): Error => {
    const why = waited
      ? `it took nothing for ${patience / 1000} s (a full pipe, or its reader stopped)`
      : 'it takes nothing (a full pipe)'
    if (waited) fail(why)
    return new Error(why)
  }
  return {
    write(event, fields) {
      const b = line(event, fields)
      if (keptBytes + b.length > keptMax && DROPPABLE.has(event)) {
        // past the cap a refusal is counted, not kept, unless the destination takes the kept lines now
        try {
          flush('unless-failing')
        } catch (err) {
          if (dropped.size === 0) droppedSince = new Date().toISOString()
          dropped.set(event, (dropped.get(event) ?? 0) + 1)
          throw err
        }
      }
      keep(b)
      flush('unless-failing')
    },
    failing: () => flagged(lock, FAILING),
    async close() {
      if (closed) return
      try {
        // the last lines out, whole, if the destination takes them within the patience: a line cut now
        // would stay cut
        flush('always')
      } finally {
        closed = true
        if (retry) retry = void clearInterval(retry)
        // a line cut part-way stays CUT: the next writer (another thread) ends it first
        if (offset > 0) release(lock)
        if (fd !== 1) closeSync(fd)
      }
    },
  }
}

/** What `ca serve` says on stderr when its audit log starts failing (`why`) or takes lines again (undefined). */
export function auditFailingWarning(why: string | undefined): string {
  return why === undefined
    ? 'the audit log takes lines again: signing requests are answered again'
    : `the audit log cannot be written (${why}): signing requests are refused (503) until it takes a line again`
}

/**
 * Whether stderr is the destination `dest` writes to (`2>&1`, or a journal's one stream for both): a
 * warning written there while a line is cut part-way could land inside that line.
 */
export function stderrIsAuditDestination(dest: string): boolean {
  try {
    const err = fstatSync(2)
    const out = dest === '-' ? fstatSync(1) : statSync(dest)
    return err.dev === out.dev && err.ino === out.ino
  } catch {
    return false
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
