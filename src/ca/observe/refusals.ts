/**
 * Refusals made before a token is read — 503 `overloaded` (load shedding) and 429 `rate_limited` —
 * come in floods, from anyone: one audit line each let a client write about 5,000 lines a second on one
 * core (measured in the overload run), enough to fill the audit log's disk, and a full disk stops
 * issuance (the audit log fails closed). So the lines are coalesced per event, reason, client address
 * and route: the first refusal is written at once, as before; the ones that follow within the window
 * are counted and written as one line when it ends (`repeated`: how many refusals that line stands for,
 * besides the one written at once; `window_ms`).
 * At most two lines per window for a key, and at most `maxKeys` keys at once; past them refusals
 * share one key whose client address is `*` (many clients at once is itself what the line says).
 * Every other line passes through untouched; the metrics still count each refusal.
 */
import type {AuditEvent, AuditLog} from './audit.ts'

/** The reasons whose lines are coalesced: both are decided before the request's token is looked at. */
const FLOODED = new Set(['overloaded', 'rate_limited'])

interface Pending {
  event: AuditEvent
  fields: Record<string, unknown>
  repeated: number
  timer: NodeJS.Timeout
}

export function coalesceRefusals(log: AuditLog, o: {windowMs?: number; maxKeys?: number} = {}): AuditLog {
  const windowMs = o.windowMs ?? 1000
  const maxKeys = o.maxKeys ?? 1000
  const pending = new Map<string, Pending>()
  const end = (key: string): void => {
    const p = pending.get(key)!
    pending.delete(key)
    clearTimeout(p.timer)
    if (p.repeated === 0) return
    // the line stands for many requests: not one request's id
    const {request_id: _id, ...fields} = p.fields
    try {
      log.write(p.event, {...fields, repeated: p.repeated, window_ms: windowMs})
    } catch {
      // a full disk: what was counted is lost with it, as the lines themselves would have been
    }
  }
  return {
    write(event, fields) {
      if (!FLOODED.has(fields.reason as string)) return log.write(event, fields)
      let key = JSON.stringify([event, fields.reason, fields.client_address ?? null, fields.route ?? null])
      if (!pending.has(key) && pending.size >= maxKeys) {
        key = JSON.stringify([event, fields.reason, '*', null])
        fields = {...fields, client_address: '*', route: undefined}
      }
      const p = pending.get(key)
      if (p) {
        p.repeated++
        p.fields = fields
        return
      }
      const timer = setTimeout(() => end(key), windowMs)
      timer.unref()
      pending.set(key, {event, fields, repeated: 0, timer})
      log.write(event, fields)
    },
    async close() {
      for (const key of [...pending.keys()]) end(key)
      await log.close()
    },
  }
}
