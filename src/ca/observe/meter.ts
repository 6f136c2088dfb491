/**
 * What the signing core counts and times, behind one small interface (smallstep's authority meter):
 * the pipeline calls it; `prometheus.ts` fills it with prom-client on its own listen address
 * (`metrics.address` in ca.yaml); tests and tools use the no-op meter.
 */
export interface Meter {
  /** A certificate issued, one handed out again (a renewal whose answer was lost), or a request refused, with its reason. */
  decision(o: {
    outcome: 'issued' | 'redelivered' | 'denied'
    provisioner?: string | undefined
    rule?: string | undefined
    certType?: string | undefined
    reason?: string | undefined
  }): void
  /** How long a route took, seconds. */
  request(route: string, status: number, seconds: number): void
  /** A store commit: its batch size and how long it took, seconds. */
  commit(batchSize: number, seconds: number): void
  /** A token verified (`valid`) or refused (the denial reason), per provisioner when known. */
  tokenVerification(o: {provisioner?: string | undefined; outcome: string}): void
  /** An issuer's discovery document + JWKS fetched, or the fetch failed. */
  jwksFetch(issuer: string, outcome: 'ok' | 'error'): void
  /** A request refused by the per-address rate limit. */
  rateLimited(route: string): void
  /** An authorizing webhook answered (allow/deny) or did not (error, timeout). */
  webhook(o: {provisioner: string; rule: string; outcome: 'allow' | 'deny' | 'error'; seconds: number}): void
}

export const noopMeter: Meter = {
  decision() {},
  request() {},
  commit() {},
  tokenVerification() {},
  jwksFetch() {},
  rateLimited() {},
  webhook() {},
}
