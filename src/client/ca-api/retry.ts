/**
 * When the client asks the CA again (src/client/ca-api/ca-client.ts), and who shows the wait. Its own module,
 * free of node:https, so the CLI can register the display on the fast path without loading TLS.
 */
/**
 * A CA that sheds load (503) or holds a client to its rate (429) says when to come back in a
 * Retry-After header: the client comes back, a few times, within a bound. Only then: without the
 * header (step-ca sends none, nor does an sshca that failed for another reason) or with a wait
 * longer than RETRY.maxWait the answer is the error. Resending is safe: the CA sheds and
 * rate-limits before it reads a token, so the token was not spent.
 */
export const RETRY = {
  /** Requests in all, the first included. */
  attempts: 4,
  /** Seconds: a longer Retry-After is not waited for. */
  maxWait: 10,
  /** Seconds waited in all, at most. */
  total: 15,
}

export interface RetryWait {
  status: number
  /** Milliseconds this wait lasts. */
  ms: number
  /** The attempt about to be made, and how many there may be. */
  attempt: number
  of: number
}

/**
 * How long to wait before asking again, or undefined to give up now: what Retry-After names, or
 * 1, 2, 4 s for the 2nd, 3rd, 4th attempt when that is longer (a CA that sheds always says 1), plus
 * up to half of it (at least half a second) at random, so clients shed together do not return in
 * the same instant to be shed together again.
 */
export function retryWait(
  res: {status: number; headers: Record<string, string | string[] | undefined>},
  attempt: number,
  waitedMs: number,
  random: () => number = Math.random,
): RetryWait | undefined {
  if (res.status !== 503 && res.status !== 429) return undefined
  if (attempt >= RETRY.attempts) return undefined
  const header = res.headers['retry-after']
  if (typeof header !== 'string' || !/^\d{1,2}$/.test(header.trim())) return undefined
  const named = Number(header.trim())
  if (named > RETRY.maxWait) return undefined
  const seconds = Math.max(named, 2 ** (attempt - 1))
  const ms = seconds * 1000 + Math.floor(random() * Math.max(500, seconds * 500))
  if (waitedMs + ms > RETRY.total * 1000) return undefined
  return {status: res.status, ms, attempt: attempt + 1, of: RETRY.attempts}
}

/** The line a person sees while a request waits to be retried. */
export const retryNote = (w: RetryWait, caUrl: string): string =>
  `the CA at ${caUrl} is ${w.status === 429 ? 'limiting this address' : 'busy'} (HTTP ${w.status}); asking again in ${(w.ms / 1000).toFixed(1)} s (attempt ${w.attempt} of ${w.of})\n`

let onRetryWait: ((w: RetryWait, caUrl: string) => void) | undefined
/** Who shows a person that a request waits to be retried (the CLI: a line on stderr). */
export function showRetryWaits(fn: ((w: RetryWait, caUrl: string) => void) | undefined): void {
  onRetryWait = fn
}

export function announceRetryWait(w: RetryWait, caUrl: string): void {
  onRetryWait?.(w, caUrl)
}
