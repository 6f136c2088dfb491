/**
 * Refusals made before a token is read — 503 `overloaded` (load shedding) and 429 `rate_limited` —
 * come in floods, from anyone: one audit line each let a client write about 5,000 lines a second on one
 * core (measured in the overload run), enough to fill the audit log's disk, and a full disk stops
 * issuance (the audit log fails closed). So the lines are coalesced per event, reason, client address
 * and route: the first refusal is written at once, as before; the ones that follow within the window
 * are counted and written as one line when it ends (`repeated`: how many refusals that line stands for,
 * besides the one written at once; `window_ms`). At most two lines per window for a key, and at most
 * `maxKeys` keys at once (100 a thread: 200 lines a second at most, however many addresses a flood
 * comes from); past them refusals share one key, whose lines say `overflow: true` and how many
 * `clients` they stood for, and name no client. A client address is cut to 64 characters (behind a
 * proxy trusted for any X-Forwarded-For, it is whatever the client sent). Every other line passes
 * through untouched; the metrics still count each refusal.
 */
import type {AuditEvent, AuditLog} from './audit.ts'

/** The reasons whose lines are coalesced: both are decided before the request's token is looked at. */
const FLOODED = new Set(['overloaded', 'rate_limited'])

interface Pending {
  event: AuditEvent
  fields: Record<string, unknown>
  repeated: number
  /** The overflow key's: the client addresses it stood for. */
  clients?: Set<unknown>
  timer: NodeJS.Timeout
}

const MAX_ADDRESS = 64

/** The coalescing log; `flush()` writes what is counted now (before a last line such as server_stopped). */
export interface CoalescedAuditLog extends AuditLog {
  flush(): void
}

export function coalesceRefusals(log: AuditLog, o: {windowMs?: number; maxKeys?: number} = {}): CoalescedAuditLog {
  const windowMs = o.windowMs ?? 1000
  const maxKeys = o.maxKeys ?? 100
  const pending = new Map<string, Pending>()
  let closed = false
  const end = (key: string): void => {
    const p = pending.get(key)!
    pending.delete(key)
    clearTimeout(p.timer)
    if (p.repeated === 0) return
    // the line stands for many requests: not one request's id
    const {request_id: _id, ...fields} = p.fields
    try {
      log.write(p.event, {
        ...fields,
        ...(p.clients ? {clients: p.clients.size} : {}),
        repeated: p.repeated,
        window_ms: windowMs,
      })
    } catch {
      // a full disk: the audit log keeps the line and writes it before its next one (audit.ts); no
      // request waits on a summary, so nothing here fails closed
    }
  }
  const flush = (): void => {
    for (const key of [...pending.keys()]) end(key)
  }
  return {
    write(event, fields) {
      if (closed || !FLOODED.has(fields.reason as string)) return log.write(event, fields)
      if (typeof fields.client_address === 'string' && fields.client_address.length > MAX_ADDRESS)
        fields = {...fields, client_address: fields.client_address.slice(0, MAX_ADDRESS)}
      let key = JSON.stringify([event, fields.reason, fields.client_address ?? null, fields.route ?? null])
      let clients: Set<unknown> | undefined
      if (!pending.has(key) && pending.size >= maxKeys) {
        key = JSON.stringify([event, fields.reason, 'overflow'])
        clients = pending.get(key)?.clients ?? new Set()
        // a bound on the set too: it only counts
        if (clients.size < 100_000) clients.add(fields.client_address)
        const {client_address: _c, route: _r, ...rest} = fields
        fields = {...rest, overflow: true}
      }
      const p = pending.get(key)
      if (p) {
        p.repeated++
        p.fields = fields
        return
      }
      const timer = setTimeout(() => end(key), windowMs)
      timer.unref()
      pending.set(key, {event, fields, repeated: 0, timer, ...(clients ? {clients} : {})})
      log.write(event, fields)
    },
    flush,
    failing: () => log.failing?.() ?? false,
    async close() {
      closed = true
      flush()
      await log.close()
    },
  }
}
