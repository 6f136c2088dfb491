/**
 * `ca serve --workers N`: the HTTPS API on N worker threads; what must stay single in this one.
 *
 * Each worker thread runs the whole API (TLS, HTTP, token verification, policy, signing, its audit
 * lines) and listens on the CA's address with SO_REUSEPORT: the kernel spreads connections over
 * the workers. The main thread keeps what must be one, and the workers reach it by message:
 * - the store, on SQLite: it has one writer, here. Its group commit batches the issuances of every
 *   worker (one fsync per batch), and that fsync blocks this thread only while the workers go on
 *   working. On PostgreSQL each worker opens a pool of its own (db.pool connections, named
 *   "sshca worker N" in pg_stat_activity) and writes directly, as replicas do: the database orders
 *   the writers. A worker that cannot open its pool (the database is down as it starts) goes
 *   through this thread's instead, so that an outage never keeps a worker from serving;
 * - nothing of the rate-limit counters: they are in shared memory (SharedRateTable), one allowance
 *   per client address, not one per worker, which each worker counts without a message;
 * - the SSH CA keys of a PKCS#11 token: the token is called from one process (keys/pkcs11.ts), this
 *   thread's child, so a worker sends the bytes to sign here and gets the signature back
 *   (WorkerSigning). Keys in files sign in each worker, which gets them with the material;
 * - the policy: ca.yaml is read and checked once per reload (SIGHUP, src/ca/server.ts) and the
 *   result sent to every worker, which answers once it is in force there;
 * - admin-event forwarding, the spent-token purge and the TLS renewal (src/ca/server.ts).
 * Open connections and signing requests in flight are counted for all workers together, in shared
 * memory, so limits.maxConnections and limits.maxInFlight hold for the CA. A worker that dies (an
 * uncaught error, out of memory) is audited (`worker_exited`) and replaced; so is one whose event loop
 * stops turning (an endless loop, a call that never returns): each worker counts a beat in shared
 * memory every second, and one whose count stands still for WORKER_STALL_MS is ended
 * (`worker_stalled`). The kernel would otherwise go on handing it its share of the new connections,
 * which would wait for good.
 * What dies with such a worker is its requests: the issuances committed for it but not yet answered
 * and the audit lines it kept have no line in the audit log, but each is a certificate never handed
 * out (a request's line is written before its answer), and each is recorded in the store.
 *
 * - the key manifest and the roots: a rotation step is read here (src/ca/server.ts) and the new
 *   material sent to every worker; so is the safety state (the emergency stop, the restore mark),
 *   which this thread reads from the store each second;
 * - the metrics: a worker's meter events are sent here, where the one Prometheus registry counts them.
 *
 * Messages, main → worker: {t: 'policy', seq, config} (answered {t: 'ack', seq}), {t: 'tls', tls},
 * {t: 'material', material}, {t: 'safety', safety}, {t: 'replies', replies: ({id, value} | {id, error})[]},
 * {t: 'close', deadlineMs} (answered {t: 'closed'}, and the thread is ended). Worker → main: {t: 'ready', port},
 * {t: 'calls', calls: {id, method, args}[]} (Store methods, and caSign), {t: 'meter', calls: [method, args][]},
 * {t: 'audit', why} (the audit log started failing, or, why undefined, took a line again), {t: 'ack', seq},
 * {t: 'closed'}. Calls, replies and meter events travel in batches: what a worker asks
 * in one turn of its event loop goes in one message, and the answers that one group commit settles
 * come back in one. A message each way per call woke the other thread each time: at 4× the sustainable
 * rate on one core, batching them let the CA issue 1.6× as many certificates a minute, at a lower p50
 * (CONTRIBUTING.md, "Overload"). The answers of a batch settle together, so each request's signing and
 * audit line come before any of the batch's answers is sent: a few milliseconds at most.
 *
 * Why threads and not node:cluster's processes: the CPU per request is the same, a message between
 * threads costs about half of one between processes (14 µs against 24 µs a round trip, both sides,
 * on the benchmark machine), the CA's keys never leave the process, and the CA stays one process
 * (one pid to signal, one title, `kill -9` stops all of it).
 *
 * SO_REUSEPORT lets any process of the CA's own user bind the same port and take a share of the
 * connections; it cannot complete a TLS handshake without the CA's TLS key, so that is a denial of
 * service, which that user can cause anyway. So that an sshca already serving the address is an
 * error rather than a silent neighbour, this thread first binds it once without the option.
 */
import type {KeyObject} from 'node:crypto'
import {once} from 'node:events'
import {createServer} from 'node:net'
import type {Server as TlsServer} from 'node:tls'
import {isMainThread, parentPort, Worker, workerData} from 'node:worker_threads'
import {SshcaError, type ErrorCode} from '../errors.ts'
import {keySigner, type Signer} from '../ssh/signature.ts'
import {Authority} from './authority/authority.ts'
import type {CaRuntime, SafetyState} from './authority/runtime.ts'
import {closeDeadlineSeconds, type CaConfig, type ServerSettings} from './config/config.ts'
import {appCounters, buildApp, closeWithin, tlsContext} from './http/app.ts'
import {SharedRateTable} from './http/rate-store.ts'
import type {CaKeyKind} from './keys/keyring.ts'
import type {CaKeySet, CaMaterial, PublishedKey} from './keys/material.ts'
import type {Meter} from './observe/meter.ts'
import {PublicKey} from '../ssh/keys.ts'
import {createAuditLog, releaseAuditLock, type AuditLog} from './observe/audit.ts'
import {coalesceRefusals} from './observe/refusals.ts'
import {TokenVerifier} from './provisioner/oidc.ts'
import {openStore} from './store/open.ts'
import type {Store} from './store/store.ts'

/**
 * Every Store method a worker may call. `close` is the main thread's alone, and so is `exclusive`
 * (its argument is a function, which cannot cross threads; the TLS renewal it orders runs here).
 */
const STORE_CALLS = [
  'issue',
  'findCertificate',
  'currentHostCertificates',
  'certificates',
  'revoke',
  'unrevoke',
  'revocations',
  'revocationGeneration',
  'revocationSnapshot',
  'revocationFor',
  'purgeExpiredTokens',
  'recordAdminEvent',
  'auditCursor',
  'adminEventsAfter',
  'advanceAuditCursor',
  'spentToken',
  'askWebhook',
  'forgetWebhookAsk',
  'ping',
] as const
/**
 * The safety net's store calls are this thread's (it reads the stop and the restore mark and sends
 * them to the workers) and the admin commands': no request on a worker may set or read them. The
 * admin commands' revocations with their events take a function, which no message can carry.
 */
type MainOnly =
  | 'close'
  | 'exclusive'
  | 'inventorySummary'
  | 'restoredAt'
  | 'markRestored'
  | 'issuanceStop'
  | 'setIssuanceStop'
  | 'revokeAll'
  | 'unrevokeWith'
// a method added to Store and not listed above (or as main-only) fails to compile here
type Unlisted = Exclude<keyof Store, (typeof STORE_CALLS)[number] | MainOnly>
const _everyStoreCall: [Unlisted] extends [never] ? true : Unlisted = true

type Tls = CaMaterial['tls']

/** How often a worker counts a beat (its event loop turned), and how often this thread looks at the counts. */
const BEAT_MS = 1000

/**
 * A worker whose event loop has not turned for this long is ended and replaced. Its loop stands still
 * by design at most an audit log's patience a turn (AUDIT_PATIENCE_MS, 2 s: the lines of a turn wait
 * for the lock and the destination that long in all) and a garbage collection; five times that is no
 * busy thread's pause, and still short beside the minutes a client would otherwise wait. A thread
 * blocked inside a system call (a write to a disk that stopped answering) ends only when the call
 * returns: terminate() cannot stop it.
 */
export const WORKER_STALL_MS = 10_000

/**
 * The watchdog's judgement: which workers' beat counts have stood still for WORKER_STALL_MS. Stillness
 * is counted between looks that saw the count not move, so a pause of the main thread's own (a long
 * fsync) finds no worker stalled when the workers beat on meanwhile. A look that comes late (over two
 * beats after the one before) counts one beat of it: the whole process may have stood still (SIGSTOP, a
 * suspended VM), the workers with it, and no count could move; yet a main thread late again and again
 * still finds a stalled worker, a beat's worth at each look.
 */
export class StallWatch<W> {
  private readonly last = new Map<W, {beat: number; still: number}>()
  private looked: number | undefined

  /** `serving`: each worker and its beat count now (`now`: performance.now()); the stalled ones, with how long (ms). */
  look(now: number, serving: Iterable<[W, number]>): [W, number][] {
    const since = this.looked === undefined ? 0 : now - this.looked
    const counted = since > 2 * BEAT_MS ? BEAT_MS : since
    this.looked = now
    const stalled: [W, number][] = []
    for (const [w, beat] of serving) {
      const last = this.last.get(w)
      if (!last || last.beat !== beat) this.last.set(w, {beat, still: 0})
      else if ((last.still += counted) >= WORKER_STALL_MS) stalled.push([w, Math.round(last.still)])
    }
    return stalled
  }

  /** A worker that ended. */
  forget(w: W): void {
    this.last.delete(w)
  }
}

/** The one call a worker makes that is not the store's: a signature by a key of the main thread (WorkerSigning). */
const SIGN_CALL = 'caSign'

/**
 * A key set as it crosses threads: the active key itself when it is in memory (a KeyObject clones),
 * else only its public key (a token's: this thread signs for the worker, WorkerSigning); public keys
 * as lines.
 */
interface WireKeySet {
  activeId: string
  key?: KeyObject
  activeKey: string
  published: (Omit<PublishedKey, 'publicKey'> & {publicKey: string})[]
  retired: string[]
}
type WorkerMaterial = Omit<CaMaterial, 'userCa' | 'hostCa'> & {userCa: WireKeySet; hostCa: WireKeySet}
/** A worker's way to a signature by a key of this thread's: WorkerSigning, by message. */
type SignOnMain = (kind: CaKeyKind, activeId: string, data: Buffer) => Promise<Buffer>

const toWireSet = (set: CaKeySet): WireKeySet => ({
  activeId: set.activeId,
  ...(set.active.keyObject ? {key: set.active.keyObject} : {}),
  activeKey: set.active.publicKey.toLine(),
  published: set.published.map((p) => ({...p, publicKey: p.publicKey.toLine()})),
  retired: (set.retired ?? []).map((k) => k.toLine()),
})
const fromWireSet = (w: WireKeySet, kind: CaKeyKind, signOnMain: SignOnMain): CaKeySet => ({
  activeId: w.activeId,
  active: w.key
    ? keySigner(w.key)
    : {publicKey: PublicKey.parseLine(w.activeKey).key, sign: (data) => signOnMain(kind, w.activeId, data)},
  published: w.published.map((p) => ({...p, publicKey: PublicKey.parseLine(p.publicKey).key})),
  retired: w.retired.map((l) => PublicKey.parseLine(l).key),
})
/** What a worker needs of the material: everything cloneable, and no more (not the signer registry). */
const toWire = (m: CaMaterial): WorkerMaterial => ({
  rootPem: m.rootPem,
  rootFingerprint: m.rootFingerprint,
  intermediatePem: m.intermediatePem,
  roots: m.roots,
  crossPems: m.crossPems,
  intermediateKey: m.intermediateKey,
  tls: m.tls,
  enrollmentKey: m.enrollmentKey,
  userCa: toWireSet(m.userCa),
  hostCa: toWireSet(m.hostCa),
})
const fromWire = (w: WorkerMaterial, signOnMain: SignOnMain): CaMaterial => ({
  ...w,
  userCa: fromWireSet(w.userCa, 'user', signOnMain),
  hostCa: fromWireSet(w.hostCa, 'host', signOnMain),
})

/**
 * The signatures workers ask this thread for, by keys that cannot leave it (a PKCS#11 token's: its
 * one process is this thread's child, keys/pkcs11.ts). The key the worker names signs, the one its
 * certificate carries: the active key, or one that was active here and is still published. A worker
 * that a rotation step has not reached yet so finishes its request under the key it began with, as a
 * worker holding a key file does, and every published key is trusted. Any other key (retired, never
 * active here, unknown) is refused: 503 ERR_KEY_STORE, nothing issued.
 */
export class WorkerSigning {
  /** "kind:id" → the signer of each key that was active here and is still published. */
  private readonly actives = new Map<string, Signer>()
  private material: CaMaterial

  constructor(material: CaMaterial) {
    this.material = material
    this.update(material)
  }

  /** The material after a change (a rotation step): its active keys join, keys no longer published leave. */
  update(material: CaMaterial): void {
    this.material = material
    for (const [kind, set] of [
      ['user', material.userCa],
      ['host', material.hostCa],
    ] as const) {
      this.actives.set(`${kind}:${set.activeId}`, set.active)
      const published = new Set(set.published.map((p) => `${kind}:${p.id}`))
      for (const key of this.actives.keys())
        if (key.startsWith(`${kind}:`) && !published.has(key)) this.actives.delete(key)
    }
  }

  /** `args`: the call's [kind, key id, bytes to sign] as they crossed the threads. */
  async sign(args: unknown[]): Promise<Buffer> {
    const [kind, keyId, data] = args
    const set = kind === 'user' ? this.material.userCa : kind === 'host' ? this.material.hostCa : undefined
    if (!set || typeof keyId !== 'string' || !(data instanceof Uint8Array))
      throw new TypeError('a worker asked for a signature with arguments of the wrong kind')
    const signer = this.actives.get(`${kind}:${keyId}`)
    if (!signer)
      throw new SshcaError(
        'ERR_KEY_STORE',
        `a worker asked for a signature by the ${kind} CA key ${keyId}, which is not one this CA signs with (${set.activeId} is active): the request was not signed`,
      )
    const sig = await signer.sign(Buffer.from(data.buffer, data.byteOffset, data.byteLength))
    // a copy of the signature's bytes alone, as the worker sends the body: a signer's Buffer is a view
    // of Node's pool (SshWriter, Buffer.allocUnsafe), and the reply would clone the whole slab
    // (Buffer.poolSize, 64 KiB on Node 24) for every certificate, for the worker to keep with it
    const own = Buffer.alloc(sig.length)
    sig.copy(own)
    return own
  }
}

const METER_CALLS = [
  'decision',
  'request',
  'commit',
  'tokenVerification',
  'jwksFetch',
  'rateLimited',
  'webhook',
] as const satisfies readonly (keyof Meter)[]

interface WorkerInit {
  sshcaWorker: true
  /** 1-based, in the audit lines of this worker (`worker`). */
  index: number
  counters: Int32Array
  /** One beat counter per worker slot (index − 1): this worker adds one every BEAT_MS while its event loop turns. */
  beats: Int32Array
  host: string
  port: number
  config: CaConfig
  material: WorkerMaterial
  auditDest: string
  auditLock: Int32Array
  /** The rate-limit counters (SharedRateTable.memory). */
  rates: SharedArrayBuffer
  /** The settings the CA's server was built from at its start (startOnlyChanges). */
  start: ServerSettings
  safety: SafetyState
  /** The main thread counts metrics: the worker sends it its meter's events. */
  metered: boolean
}

/** A Store method called by a worker. */
interface Call {
  id: number
  method: string
  args: unknown[]
}

/** A call's answer: its value, or the error it failed with. */
type Reply = {id: number; value: unknown} | {id: number; error: WireError}

/** An error as it crosses threads: an SshcaError keeps its code and details; anything else is a bug (500). */
interface WireError {
  code?: ErrorCode
  message: string
  details?: Record<string, unknown>
}

const errorToWire = (err: unknown): WireError =>
  err instanceof SshcaError
    ? {code: err.code, message: err.message, ...(err.details ? {details: err.details} : {})}
    : {message: (err as Error)?.message ?? String(err)}

const errorFromWire = (e: WireError): Error =>
  e.code ? new SshcaError(e.code, e.message, e.details ? {details: e.details} : {}) : new Error(e.message)

export interface WorkerPool {
  readonly port: number
  /** The threads serving now, by index (a test terminates one to see it replaced). */
  readonly threads: readonly Worker[]
  /** Puts a new policy in force in every worker; resolves once each has it (or has died: its replacement starts with it). */
  setPolicy(config: CaConfig): Promise<void>
  setTls(tls: Tls): void
  /** New key sets or roots (a rotation step), in force in every worker from its next request. */
  setMaterial(material: CaMaterial): void
  /** The emergency stop and the restore mark, as this thread read them from the store. */
  setSafety(safety: SafetyState): void
  /** Stops accepting, lets requests in flight finish, and waits for every worker to end. */
  close(): Promise<void>
}

export interface PoolOptions {
  count: number
  host: string
  port: number
  config: CaConfig
  material: CaMaterial
  store: Store
  /** The main thread's audit log (worker_exited); the workers open `auditDest` themselves, sharing `auditLock`. */
  audit: AuditLog
  auditDest: string
  auditLock: Int32Array
  /** Told when a worker's audit line finds the destination failing, and when a worker's line is written again (AuditLog's onFailing). */
  onAuditFailing?: (why: string | undefined) => void
  safety: SafetyState
  /** The main thread's meter (metrics.address): the workers' events are counted in it. */
  meter?: Meter
}

/** Starts `count` workers serving `host:port` (port 0: one the OS picks); rejects when any fails to start. */
export async function startWorkers(o: PoolOptions): Promise<WorkerPool> {
  if (!Number.isInteger(o.count) || o.count < 1)
    throw new TypeError(`workers must be a positive integer, not ${o.count}`)
  const port = await claimAddress(o.host, o.port)
  const rates = SharedRateTable.memory()
  const counters = appCounters(o.count)
  const beats = new Int32Array(new SharedArrayBuffer(4 * o.count))
  const watch = new StallWatch<Worker>()
  /** The workers the watchdog ended, and how long each had stood still. */
  const stalled = new Map<Worker, number>()
  let config = o.config
  let material = toWire(o.material)
  /** Signs what workers ask of keys that cannot reach them (a token's). */
  const signing = new WorkerSigning(o.material)
  let safety = o.safety
  const threads: Worker[] = []
  /** Every thread not yet ended, ready or starting. */
  const alive = new Set<Worker>()
  const acks = new Map<Worker, Map<number, () => void>>()
  const timers = new Set<NodeJS.Timeout>()
  let seq = 0
  let closing = false
  const note = (fields: Record<string, unknown>, event: 'worker_exited' | 'worker_stalled' = 'worker_exited'): void => {
    try {
      o.audit.write(event, fields)
    } catch {
      // the audit log's own failure is answered where it matters: on the requests
    }
  }

  const dispatch = async (m: Call): Promise<unknown> => {
    if (m.method === SIGN_CALL) return signing.sign(m.args)
    if ((STORE_CALLS as readonly string[]).includes(m.method)) {
      return (o.store[m.method as (typeof STORE_CALLS)[number]] as (...a: unknown[]) => Promise<unknown>).apply(
        o.store,
        m.args,
      )
    }
    throw new TypeError(`a worker asked for store.${m.method}`)
  }

  /** Starts worker `index` in its slot; resolves once it listens, rejects if it ends first. */
  const spawn = (index: number): Promise<Worker> => {
    const init: WorkerInit = {
      sshcaWorker: true,
      index: index + 1,
      counters,
      beats,
      host: o.host,
      port,
      // tls.clientCertificates and the server's other settings are read at start (startOnlyChanges): a
      // replacement started after a reload that changed them takes the start's, as the threads it
      // serves beside do. So does db: the store a worker opens (its own PostgreSQL pool) is the one the
      // main thread and the other workers write to; a reloaded db.url would put the tokens it spends
      // and the certificates it records where no other thread looks (a token spent there signs again
      // on every other thread, and one spent elsewhere signs again there)
      config: {...config, tls: o.config.tls, db: o.config.db},
      start: {limits: o.config.limits, trustProxy: o.config.trustProxy},
      material,
      auditDest: o.auditDest,
      auditLock: o.auditLock,
      rates,
      safety,
      metered: o.meter !== undefined,
    }
    const w = new Worker(new URL(import.meta.url), {name: `sshca-worker-${index + 1}`, workerData: init})
    // w.threadId reads -1 once the thread has ended
    const tid = w.threadId
    const startedAt = Date.now()
    alive.add(w)
    acks.set(w, new Map())
    let ready = false
    let failure: Error | undefined
    // the answers settled in one run of the microtask queue (a group commit settles its whole batch
    // there) go back in one message, sent once that queue is empty
    const replies: Reply[] = []
    const sendReplies = (): void => w.postMessage({t: 'replies', replies: replies.splice(0)})
    const answer = (r: Reply): void => {
      if (replies.push(r) === 1) process.nextTick(sendReplies)
    }
    return new Promise((resolve, reject) => {
      w.on('message', (m: {t: string; seq?: number; calls?: unknown[]}) => {
        if (m.t === 'calls') {
          for (const c of m.calls as Call[])
            dispatch(c).then(
              (value) => answer({id: c.id, value}),
              (err: unknown) => answer({id: c.id, error: errorToWire(err)}),
            )
        } else if (m.t === 'meter') {
          for (const [method, args] of (m.calls ?? []) as [string, unknown[]][])
            if ((METER_CALLS as readonly string[]).includes(method))
              (o.meter?.[method as (typeof METER_CALLS)[number]] as ((...a: unknown[]) => void) | undefined)?.apply(
                o.meter,
                args,
              )
        } else if (m.t === 'audit') {
          o.onAuditFailing?.((m as {why?: string}).why)
        } else if (m.t === 'ack') {
          acks.get(w)?.get(m.seq!)?.()
        } else if (m.t === 'closed') {
          void w.terminate()
        } else if (m.t === 'ready') {
          ready = true
          threads[index] = w
          resolve(w)
        }
      })
      w.on('error', (err) => (failure = err))
      w.once('exit', (code) => {
        alive.delete(w)
        watch.forget(w)
        const still = stalled.get(w)
        stalled.delete(w)
        for (const done of acks.get(w)?.values() ?? []) done()
        acks.delete(w)
        // what the thread held ended with it: its connections and requests, the audit lock
        Atomics.store(counters, 2 * index, 0)
        Atomics.store(counters, 2 * index + 1, 0)
        releaseAuditLock(o.auditLock, tid)
        SharedRateTable.releaseLock(rates, tid)
        if (!ready) return reject(failure ?? new Error(`worker ${index + 1} exited with code ${code} while starting`))
        if (closing) return
        note({
          worker: index + 1,
          thread_id: tid,
          code,
          ...(failure ? {error: failure.message.slice(0, 500)} : {}),
          ...(still === undefined ? {} : {stalled_ms: still}),
          replaced: true,
        })
        // one that dies young waits a second for its replacement, so a crash at start cannot spin
        replace(index, Date.now() - startedAt < 10_000 ? 1000 : 0)
      })
    })
  }

  const replace = (index: number, delayMs: number): void => {
    const timer = setTimeout(() => {
      timers.delete(timer)
      if (closing) return
      spawn(index).catch((err: Error) => {
        note({worker: index + 1, error: err.message.slice(0, 500), replaced: false, retry_in_seconds: 1})
        replace(index, 1000)
      })
    }, delayMs)
    timers.add(timer)
  }

  try {
    await Promise.all(Array.from({length: o.count}, (_, i) => spawn(i)))
  } catch (err) {
    closing = true
    await Promise.all([...alive].map((w) => w.terminate()))
    throw err
  }

  // the watchdog: a serving worker whose beat count stands still is ended; its 'exit' replaces it
  const watchdog = setInterval(() => {
    const serving = threads.flatMap((w, i): [Worker, number][] =>
      alive.has(w) && !stalled.has(w) ? [[w, Atomics.load(beats, i)]] : [],
    )
    for (const [w, still] of watch.look(performance.now(), serving)) {
      stalled.set(w, still)
      note({worker: threads.indexOf(w) + 1, thread_id: w.threadId, stalled_ms: still}, 'worker_stalled')
      void w.terminate()
    }
  }, BEAT_MS)
  watchdog.unref()

  // every change goes to every thread alive, those still starting too: a replacement was given the
  // state of its spawn, and a change made before it is ready (a stop, a restore mark, a reload, a
  // key) would otherwise never reach it. It reads these messages before it serves (its handler is
  // set before it listens), in the order they were sent.
  return {
    port,
    threads,
    async setPolicy(next) {
      config = next
      const s = ++seq
      await Promise.all(
        [...alive].map((w) => {
          const pending = acks.get(w)
          if (!pending) return undefined
          const acked = new Promise<void>((resolve) => pending.set(s, resolve)).finally(() => pending.delete(s))
          w.postMessage({t: 'policy', seq: s, config: next})
          return acked
        }),
      )
    },
    setTls(next) {
      material = {...material, tls: next}
      for (const w of alive) w.postMessage({t: 'tls', tls: next})
    },
    setMaterial(next) {
      material = toWire(next)
      signing.update(next)
      for (const w of alive) w.postMessage({t: 'material', material})
    },
    setSafety(next) {
      safety = next
      for (const w of alive) w.postMessage({t: 'safety', safety: next})
    },
    async close() {
      closing = true
      clearInterval(watchdog)
      for (const t of timers) clearTimeout(t)
      // requests are bounded by limits.requestTimeout as they arrive, the start's (a reload's waits for
      // the restart: startOnlyChanges), then by their rule's webhook, the policy in force's, then by
      // the store (the start's db): past all three, a worker that does not end is ended
      const deadlineMs = closeDeadlineSeconds(o.config, config) * 1000
      await Promise.all(
        [...alive].map(async (w) => {
          const exited = once(w, 'exit')
          if (!threads.includes(w)) return void (await w.terminate())
          // the thread ends its last connections a second before, so that it closes its store and audit log
          w.postMessage({t: 'close', deadlineMs: deadlineMs - 1000})
          const deadline = setTimeout(() => void w.terminate(), deadlineMs)
          await exited
          clearTimeout(deadline)
        }),
      )
    },
  }
}

/** Binds host:port once, without SO_REUSEPORT: fails when another server holds it; returns the port (0: the one the OS picked). */
async function claimAddress(host: string, port: number): Promise<number> {
  const probe = createServer()
  probe.listen({host, port, exclusive: true})
  await Promise.race([once(probe, 'listening'), once(probe, 'error').then(([err]) => Promise.reject(err as Error))])
  const picked = (probe.address() as {port: number}).port
  await new Promise((resolve) => probe.close(resolve))
  return picked
}

/** The worker side: the CA's API on this thread, its store and rate counters in the main thread. */
async function runWorker(init: WorkerInit): Promise<void> {
  const port = parentPort!
  const pending = new Map<number, {resolve: (v: unknown) => void; reject: (e: Error) => void}>()
  let nextId = 0
  // the calls of one turn of the event loop go in one message (the module's comment says why)
  const calls: Call[] = []
  const sendCalls = (): void => {
    const batch = calls.splice(0)
    try {
      port.postMessage({t: 'calls', calls: batch})
    } catch {
      // arguments that cannot cross the threads (a bug: every call's are plain data) fail their own
      // call, as when each call was a message of its own, not the batch's others or the whole thread
      for (const c of batch) {
        try {
          port.postMessage({t: 'calls', calls: [c]})
        } catch (err) {
          pending.get(c.id)?.reject(err as Error)
          pending.delete(c.id)
        }
      }
    }
  }
  const call = (method: string, args: unknown[]): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = ++nextId
      pending.set(id, {resolve, reject})
      if (calls.push({id, method, args}) === 1) setImmediate(sendCalls)
    })

  // a signature by a key of the main thread's (a token's), as a call: the bytes cross as a Uint8Array
  const signOnMain: SignOnMain = async (kind, activeId, data) => {
    // a copy of the bytes alone: a view of Node's shared pool would clone the whole pool slab
    const sig = (await call(SIGN_CALL, [kind, activeId, new Uint8Array(data)])) as Uint8Array
    return Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength)
  }
  const viaMain = Object.fromEntries(
    STORE_CALLS.map((m) => [m, (...args: unknown[]) => call(m, args)]),
  ) as unknown as Store
  viaMain.close = async () => undefined
  viaMain.exclusive = () =>
    Promise.reject(new TypeError("a worker thread cannot take the store's lock: the main thread does"))
  const store =
    init.config.db.type === 'postgresql'
      ? await openStore(init.config, 'server', {worker: init.index}).catch(() => viaMain)
      : viaMain
  type Cb = (err: Error | null, res: {current: number; ttl: number}) => void
  // @fastify/rate-limit's store interface, on the counters every worker shares
  const rates = new SharedRateTable(init.rates)
  class RateStore {
    incr(key: string, cb: Cb, timeWindow: number): void {
      cb(null, rates.incr(key, timeWindow, Date.now()))
    }
    read(key: string, cb: Cb): void {
      cb(null, rates.read(key, Date.now()))
    }
    child(): this {
      return this
    }
  }

  const audit = coalesceRefusals(
    createAuditLog(init.auditDest, {
      lock: init.auditLock,
      base: {worker: init.index},
      onFailing: (why) => port.postMessage({t: 'audit', why}),
    }),
  )
  // the meter's events go to the main thread's registry, one-way: a request never waits on them. One
  // message carries the events of a turn of the event loop: a message each (two or three a request,
  // every refusal too) was a tenth of this thread's time when it shed load
  const metered: [string, unknown[]][] = []
  const sendMetered = (): void => port.postMessage({t: 'meter', calls: metered.splice(0)})
  const meter = init.metered
    ? (Object.fromEntries(
        METER_CALLS.map((method) => [
          method,
          (...args: unknown[]) => {
            if (metered.push([method, args]) === 1) setImmediate(sendMetered)
          },
        ]),
      ) as unknown as Meter)
    : undefined
  const verifierDeps = meter
    ? {onKeysFetch: (issuer: string, outcome: 'ok' | 'error') => meter.jwksFetch(issuer, outcome)}
    : {}
  const rt: CaRuntime = {
    threads: init.counters.length / 2,
    policy: {config: init.config, verifier: new TokenVerifier(init.config.provisioners, verifierDeps)},
    material: fromWire(init.material, signOnMain),
    store,
    audit,
    clock: Date.now,
    safety: init.safety,
    ...(meter ? {meter} : {}),
  }
  const app = buildApp(
    new Authority(rt),
    {key: init.material.tls.keyPem, cert: init.material.tls.certPem},
    {counters: {all: init.counters, slot: init.index - 1}, rateStore: RateStore, startSettings: init.start},
  )

  port.on(
    'message',
    (m: {
      t: string
      replies: Reply[]
      seq: number
      config: CaConfig
      tls: Tls
      material: WorkerMaterial
      safety: SafetyState
      deadlineMs: number
    }) => {
      switch (m.t) {
        case 'replies':
          for (const r of m.replies) {
            const p = pending.get(r.id)
            pending.delete(r.id)
            if ('error' in r) p?.reject(errorFromWire(r.error))
            else p?.resolve(r.value)
          }
          break
        case 'policy':
          rt.policy = {
            config: m.config,
            verifier: new TokenVerifier(m.config.provisioners, verifierDeps, rt.policy.verifier),
          }
          port.postMessage({t: 'ack', seq: m.seq})
          break
        case 'tls':
          rt.material.tls = m.tls
          ;(app.server as unknown as TlsServer).setSecureContext(tlsContext({key: m.tls.keyPem, cert: m.tls.certPem}))
          break
        case 'material': {
          const tlsChanged = m.material.tls.certPem !== rt.material.tls.certPem
          rt.material = fromWire(m.material, signOnMain)
          if (tlsChanged)
            (app.server as unknown as TlsServer).setSecureContext(
              tlsContext({key: m.material.tls.keyPem, cert: m.material.tls.certPem}),
            )
          break
        }
        case 'safety':
          rt.safety = m.safety
          break
        case 'close':
          // the main thread ends this thread once it has said so (a fetch's keep-alive socket would keep it alive)
          // each closed whatever failed before it (the audit log's counted refusals are written on close)
          void closeWithin(app, m.deadlineMs)
            .finally(() => store.close())
            .finally(() => audit.close())
            .catch(() => undefined)
            .finally(() => port.postMessage({t: 'closed'}))
          break
      }
    },
  )
  // fastify hands its options to net.Server#listen, whose reusePort its types do not list yet
  await app.listen({host: init.host, port: init.port, ...({reusePort: true} as object)})
  // the main thread's watchdog: a count that stops moving means this thread's event loop stopped turning
  setInterval(() => Atomics.add(init.beats, init.index - 1, 1), BEAT_MS).unref()
  port.postMessage({t: 'ready', port: (app.server.address() as {port: number}).port})
}

if (!isMainThread && (workerData as Partial<WorkerInit> | undefined)?.sshcaWorker === true) {
  void runWorker(workerData as WorkerInit)
}
