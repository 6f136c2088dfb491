/**
 * A fixed-window counter per client address for @fastify/rate-limit, shared by every route that
 * uses it. The plugin's own in-memory store gives each route a fresh child store, so /ssh/sign,
 * /sign, /ssh/renew and their /1.0 twins would each get the full allowance; this one returns itself.
 * Bounded: at most MAX_KEYS addresses; the oldest windows are dropped first.
 */

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
