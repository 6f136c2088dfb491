/**
 * What the signing core counts and times, behind one small interface: the metrics issue fills it
 * with prom-client on its own address; until then (and in tests and tools) the no-op meter.
 */
export interface Meter {
  /** A certificate issued or a request refused, with its reason. */
  decision(o: {outcome: 'issued' | 'denied'; provisioner?: string | undefined; rule?: string | undefined; certType?: string | undefined; reason?: string | undefined}): void
  /** How long a route took, seconds. */
  request(route: string, status: number, seconds: number): void
  /** A store commit: its batch size and how long it took, seconds. */
  commit(batchSize: number, seconds: number): void
}

export const noopMeter: Meter = {
  decision() {},
  request() {},
  commit() {},
}
