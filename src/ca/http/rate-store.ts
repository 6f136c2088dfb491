/**
 * A fixed-window counter per client address for @fastify/rate-limit, shared by every route that
 * uses it. The plugin's own in-memory store gives each route a fresh child store, so /ssh/sign,
 * /sign, /ssh/renew and their /1.0 twins would each get the full allowance; this one returns itself.
 * Bounded: at most MAX_KEYS addresses; the oldest windows are dropped first.
 */
import {createHash, randomInt} from 'node:crypto'
import {threadId} from 'node:worker_threads'

interface Window {
  current: number
  startMs: number
}

type Callback = (err: Error | null, res: {current: number; ttl: number}) => void

const MAX_KEYS = 50_000

export class SharedRateStore {
  private readonly windows = new Map<string, Window>()
  private readonly now: () => number

  constructor(_params?: unknown, now: () => number = Date.now) {
    this.now = now
  }

  incr(key: string, cb: Callback, timeWindow: number): void {
    const now = this.now()
    let w = this.windows.get(key)
    if (!w || w.startMs + timeWindow <= now) {
      w = {current: 0, startMs: now}
      this.windows.delete(key)
      this.windows.set(key, w)
      this.prune()
    }
    w.current++
    cb(null, {current: w.current, ttl: w.startMs + timeWindow - now})
  }

  read(key: string, cb: Callback, timeWindow: number): void {
    const now = this.now()
    const w = this.windows.get(key)
    if (!w || w.startMs + timeWindow <= now) cb(null, {current: 0, ttl: 0})
    else cb(null, {current: w.current, ttl: w.startMs + timeWindow - now})
  }

  /** The same store for every route: one allowance per address across all of them. */
  child(): this {
    return this
  }

  get size(): number {
    return this.windows.size
  }

  /** Insertion order is window-start order (a reset re-inserts): the oldest windows go first. */
  private prune(): void {
    for (const k of this.windows.keys()) {
      if (this.windows.size <= MAX_KEYS) return
      this.windows.delete(k)
    }
  }
}

/**
 * The same windows in shared memory, for `ca serve`'s worker threads (src/ca/workers.ts): every
 * worker counts an address itself, under one lock, so the allowance stays one per address for the
 * whole CA. Counting in the main thread instead cost every signing request a message there and back
 * before its handler could start: a turn of both event loops, and CPU on both threads.
 *
 * A fixed table of SLOTS windows. An address lives within PROBES slots of its hash; a new window
 * takes an empty or ended slot there, else the slot there whose window ends first (as SharedRateStore
 * drops its oldest windows: an address pushed out starts again, so the table's bound refuses no one).
 * Addresses are compared whole, never by hash alone, so two never share a count; one longer than
 * KEY_BYTES (behind a trusted proxy, X-Forwarded-For may say anything) by its SHA-256. The hash is
 * seeded at random when the table is made: where an address lands cannot be chosen from outside.
 *
 * The lock holds its thread's id + 1, as the audit lock does: a worker that dies holding it has it
 * released by the main thread (releaseLock), so no thread waits on a dead one for good.
 */
const SLOTS = 1 << 16
const PROBES = 16
const KEY_BYTES = 48
/** The largest count a slot holds (an Int32): a window's count stays there, past any max below it. */
const COUNT_MAX = 2 ** 31 - 1
/** A slot's length mark for a key kept as its SHA-256: above any key kept whole (length + 1). */
const DIGEST_MARK = KEY_BYTES + 2
const layout = {
  ends: 8,
  counts: 8 + SLOTS * 8,
  marks: 8 + SLOTS * 12,
  keys: 8 + SLOTS * 16,
  size: 8 + SLOTS * (16 + KEY_BYTES),
}

/** A key as the table keeps it, and its length mark. */
function stored(key: string): {bytes: Buffer; mark: number} {
  const bytes = Buffer.from(String(key), 'utf8') // req.ip: undefined once the socket has gone
  return bytes.length <= KEY_BYTES
    ? {bytes, mark: bytes.length + 1}
    : {bytes: createHash('sha256').update(bytes).digest(), mark: DIGEST_MARK}
}

/**
 * FNV-1a, seeded, then MurmurHash3's finalizer. The slot is the hash's low 16 bits, and FNV-1a's low
 * bits depend on its state's low bits only: without the finalizer, 16 of the seed's 31 bits placed
 * every address, and the 65,536 placements could be tried one by one from outside.
 */
function hash(bytes: Uint8Array, seed: number): number {
  let h = (2166136261 ^ seed) >>> 0
  for (const b of bytes) h = Math.imul(h ^ b, 16777619)
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

export class SharedRateTable {
  /** [the lock's holder (a thread id + 1, or 0), the hash seed] */
  private readonly head: Int32Array
  /** When each slot's window ends (ms since the epoch): the slot is free from then on. */
  private readonly ends: Float64Array
  private readonly counts: Int32Array
  /** The kept key's length mark (0: a slot never used). */
  private readonly marks: Int32Array
  private readonly keys: Uint8Array
  private readonly me: number

  /** The memory the threads share: made once (the main thread), handed to every worker. */
  static memory(): SharedArrayBuffer {
    const memory = new SharedArrayBuffer(layout.size)
    new Int32Array(memory, 0, 2)[1] = randomInt(2 ** 31)
    return memory
  }

  /** Releases the lock if the thread `thread` (ended) held it. */
  static releaseLock(memory: SharedArrayBuffer, thread: number): void {
    const head = new Int32Array(memory, 0, 2)
    if (Atomics.compareExchange(head, 0, thread + 1, 0) === thread + 1) Atomics.notify(head, 0)
  }

  constructor(memory: SharedArrayBuffer) {
    this.head = new Int32Array(memory, 0, 2)
    this.ends = new Float64Array(memory, layout.ends, SLOTS)
    this.counts = new Int32Array(memory, layout.counts, SLOTS)
    this.marks = new Int32Array(memory, layout.marks, SLOTS)
    this.keys = new Uint8Array(memory, layout.keys, SLOTS * KEY_BYTES)
    this.me = threadId + 1
  }

  /** Counts a request of `key` in its window running at `now`, or in a new one of `windowMs`. */
  incr(key: string, windowMs: number, now: number): {current: number; ttl: number} {
    const k = stored(key)
    this.lock()
    try {
      const {slot, found} = this.find(k, now)
      if (!found) {
        // ended first, running last: a thread stopped halfway (terminate(), out of memory) leaves a
        // slot that has ended, never one where an address finds another's count
        this.ends[slot] = 0
        this.marks[slot] = k.mark
        this.keys.set(k.bytes, slot * KEY_BYTES)
        this.counts[slot] = 0
        this.ends[slot] = now + windowMs
      }
      // an Int32 count stops at its largest: wrapped to -2^31, `current > max` would let the address
      // sign again (2^31 refused requests in one window: a day's window, ~25,000 a second)
      const current = this.counts[slot]! < COUNT_MAX ? ++this.counts[slot]! : COUNT_MAX
      return {current, ttl: this.ends[slot]! - now}
    } finally {
      this.unlock()
    }
  }

  /** The count and time left of `key`'s window running at `now`, without counting. */
  read(key: string, now: number): {current: number; ttl: number} {
    const k = stored(key)
    this.lock()
    try {
      const {slot, found} = this.find(k, now)
      return found ? {current: this.counts[slot]!, ttl: this.ends[slot]! - now} : {current: 0, ttl: 0}
    } finally {
      this.unlock()
    }
  }

  /**
   * The slot of `k`'s window running at `now` (found), else the slot a new one takes: the first empty
   * or ended slot within PROBES of its hash, else the one there whose window ends first.
   */
  private find(k: {bytes: Buffer; mark: number}, now: number): {slot: number; found: boolean} {
    const start = hash(k.bytes, this.head[1]!)
    let free = -1
    let first = start & (SLOTS - 1)
    for (let i = 0; i < PROBES; i++) {
      const s = (start + i) & (SLOTS - 1)
      const running = this.ends[s]! > now
      if (running && this.marks[s] === k.mark && this.holds(s, k.bytes)) return {slot: s, found: true}
      if (!running && free < 0) free = s
      if (this.ends[s]! < this.ends[first]!) first = s
    }
    return {slot: free >= 0 ? free : first, found: false}
  }

  private holds(slot: number, bytes: Buffer): boolean {
    const at = slot * KEY_BYTES
    for (let i = 0; i < bytes.length; i++) if (this.keys[at + i] !== bytes[i]) return false
    return true
  }

  private lock(): void {
    for (;;) {
      const holder = Atomics.compareExchange(this.head, 0, 0, this.me)
      if (holder === 0) return
      Atomics.wait(this.head, 0, holder, 10)
    }
  }

  private unlock(): void {
    Atomics.store(this.head, 0, 0)
    Atomics.notify(this.head, 0, 1)
  }
}
