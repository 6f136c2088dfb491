/**
 * The Meter as Prometheus metrics (prom-client, on a registry of its own: nothing global), served in
 * the text format on a separate listen address (`metrics.address` in ca.yaml), never on the API's
 * port. Labels are bounded: provisioner and rule names come from ca.yaml, reasons from the closed
 * DenialReason union, routes from the route table (unmatched URLs are one "unmatched" label).
 * Nothing secret, and nothing per-subject, is a label.
 */
import {createServer, type Server} from 'node:http'
import {Counter, Gauge, Histogram, Registry} from 'prom-client'
import type {Meter} from './meter.ts'

/** Expiry dates and key facts read at scrape time (the server passes a function over its material). */
export interface ExpiryFacts {
  /** Not-after of each X.509 certificate the CA holds: tls, root, intermediate. */
  certificates: {name: string; notAfter: Date}[]
  /** Each published SSH CA key: kind, id, state and when it was activated (or created). */
  sshKeys: {kind: string; id: string; state: string; since: Date}[]
}

export class PrometheusMeter implements Meter {
  readonly registry = new Registry()
  private readonly certificates: Counter
  private readonly latency: Histogram
  private readonly commitLatency: Histogram
  private readonly commitBatch: Histogram
  private readonly tokens: Counter
  private readonly jwks: Counter
  private readonly limited: Counter
  private readonly webhooks: Histogram
  private facts: () => ExpiryFacts = () => ({certificates: [], sshKeys: []})

  constructor() {
    const registers = [this.registry]
    this.certificates = new Counter({
      name: 'sshca_certificates_total',
      help: 'Signing decisions: certificates issued, handed out again (a renewal or rekey whose answer was lost, asked again) and requests denied, by provisioner, rule, certificate type and denial reason.',
      labelNames: ['outcome', 'provisioner', 'rule', 'type', 'reason'],
      registers,
    })
    this.latency = new Histogram({
      name: 'sshca_http_request_duration_seconds',
      help: 'API request latency by route and status.',
      labelNames: ['route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    })
    this.commitLatency = new Histogram({
      name: 'sshca_store_commit_duration_seconds',
      help: 'Store commits of issuances (one transaction per batch).',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers,
    })
    this.commitBatch = new Histogram({
      name: 'sshca_store_commit_batch_size',
      help: 'Issuances per store commit (group commit).',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    })
    this.tokens = new Counter({
      name: 'sshca_token_verifications_total',
      help: 'Identity, enrollment and proof-of-possession tokens verified (outcome=valid) or refused (outcome=the reason).',
      labelNames: ['provisioner', 'outcome'],
      registers,
    })
    this.jwks = new Counter({
      name: 'sshca_jwks_fetches_total',
      help: 'Discovery + JWKS fetches per issuer and how they ended.',
      labelNames: ['issuer', 'outcome'],
      registers,
    })
    this.limited = new Counter({
      name: 'sshca_rate_limited_requests_total',
      help: 'Requests refused by the per-address rate limit.',
      labelNames: ['route'],
      registers,
    })
    this.webhooks = new Histogram({
      name: 'sshca_webhook_duration_seconds',
      help: 'Authorizing webhook calls by provisioner, rule and outcome (allow, deny, error).',
      labelNames: ['provisioner', 'rule', 'outcome'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    })
    const facts = () => this.facts()
    new Gauge({
      name: 'sshca_certificate_expiry_timestamp_seconds',
      help: "Not-after of the CA's own X.509 certificates (tls, intermediate, root), seconds since the epoch.",
      labelNames: ['certificate'],
      registers,
      collect() {
        this.reset()
        for (const c of facts().certificates) this.set({certificate: c.name}, Math.floor(c.notAfter.getTime() / 1000))
      },
    })
    new Gauge({
      name: 'sshca_ssh_ca_key_since_timestamp_seconds',
      help: 'Each published SSH CA key, by kind, id and rotation state: when it entered that state (activated, or created for a next key).',
      labelNames: ['kind', 'id', 'state'],
      registers,
      collect() {
        this.reset()
        for (const k of facts().sshKeys)
          this.set({kind: k.kind, id: k.id, state: k.state}, Math.floor(k.since.getTime() / 1000))
      },
    })
  }

  /** What the expiry gauges read at each scrape. */
  setFacts(fn: () => ExpiryFacts): void {
    this.facts = fn
  }

  decision(o: Parameters<Meter['decision']>[0]): void {
    this.certificates.inc({
      outcome: o.outcome,
      provisioner: o.provisioner ?? '',
      rule: o.rule ?? '',
      type: o.certType ?? '',
      reason: o.reason ?? '',
    })
  }

  request(route: string, status: number, seconds: number): void {
    this.latency.observe({route, status: String(status)}, seconds)
  }

  commit(batchSize: number, seconds: number): void {
    this.commitLatency.observe(seconds)
    this.commitBatch.observe(batchSize)
  }

  tokenVerification(o: {provisioner?: string | undefined; outcome: string}): void {
    this.tokens.inc({provisioner: o.provisioner ?? '', outcome: o.outcome})
  }

  jwksFetch(issuer: string, outcome: 'ok' | 'error'): void {
    this.jwks.inc({issuer, outcome})
  }

  rateLimited(route: string): void {
    this.limited.inc({route})
  }

  webhook(o: {provisioner: string; rule: string; outcome: 'allow' | 'deny' | 'error'; seconds: number}): void {
    this.webhooks.observe({provisioner: o.provisioner, rule: o.rule, outcome: o.outcome}, o.seconds)
  }
}

/**
 * GET /metrics (text format) on its own plain-HTTP listener; anything else is 404. It serves counts,
 * not secrets, but keep it on an internal address: the listener is the operator's to firewall.
 */
export async function serveMetrics(
  meter: PrometheusMeter,
  host: string,
  port: number,
): Promise<{server: Server; url: string; close(): Promise<void>}> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, {'content-type': 'text/plain'}).end('not found\n')
      return
    }
    meter.registry.metrics().then(
      (text) => res.writeHead(200, {'content-type': meter.registry.contentType}).end(text),
      () => res.writeHead(500, {'content-type': 'text/plain'}).end('metrics failed\n'),
    )
  })
  server.requestTimeout = 10_000
  server.headersTimeout = 5000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  const bound = (server.address() as {port: number}).port
  const h = host.includes(':') ? `[${host}]` : host
  return {
    server,
    url: `http://${h}:${bound}/metrics`,
    // a scrape cut short is asked again; a connection left open would hold the CA's close for ever (Node
    // stops enforcing headersTimeout on a server being closed: a client dripping its headers)
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
