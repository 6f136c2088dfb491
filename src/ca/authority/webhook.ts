/**
 * Authorizing webhooks (step-ca's "authorizing" kind): a rule may name an HTTPS endpoint that has
 * the last word. After the rule matched and the certificate is built, the CA POSTs the token's
 * verified claims and the request (never the token itself) and issues only when the answer is
 * HTTP 2xx with a JSON body whose `allow` is exactly `true`, within the timeout. Anything else —
 * a refusal, another status, another body, a redirect, a TLS certificate not vouched for, no answer
 * in time — denies: fail closed. Every call is audited (outcome, status, time) and metered.
 *
 * Body: {"type": "sshca.authorize.v1", "timestamp" (RFC 3339, UTC), "requestId", "provisioner",
 * "rule", "claims", "request": {"certType", "keyType", "keyFingerprint", "clientAddress"}, "certificate": {"principals", "keyId",
 * "validAfter", "validBefore", "criticalOptions", "extensions"}}; with secretFile, the header
 * `X-Sshca-Signature: sha256=<hex HMAC-SHA256 of the body>` proves it came from the CA, and the
 * signed timestamp when: a webhook refuses a body much older than its clock (a replay).
 */
import {createHash, createHmac, X509Certificate} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {request} from 'node:https'
import {request as httpRequest} from 'node:http'
import {assertPrivateFile} from '../../util/fs.ts'
import type {Claims, CertificateSpec} from '../policy/policy.ts'
import {denial, type ProvisionerConfig, type RuleConfig, type WebhookConfig} from '../policy/types.ts'
import {IN_FLIGHT_PER_THREAD, type AuditTrace, type CaRuntime} from './runtime.ts'

const MAX_ANSWER = 64 * 1024
/** The shortest HMAC secret taken: a shorter one (or none, on an empty first line) is a mistake, refused. */
export const MIN_SECRET = 16

/** Secrets and CA files, read once per loaded config (a reload reads them again). */
const files = new WeakMap<WebhookConfig, Promise<{secret?: string; ca?: string}>>()

function filesOf(w: WebhookConfig): Promise<{secret?: string; ca?: string}> {
  let f = files.get(w)
  if (!f) {
    f = (async () => ({
      // a secret others can read proves nothing: refused (so the call is, and the request denied)
      ...(w.secretFile
        ? {
            secret: await assertPrivateFile(w.secretFile).then(async () => {
              const line = (await readFile(w.secretFile!, 'utf8')).split(/\r?\n/)[0]!
              // an empty first line (a file that starts with a newline) would send every call unsigned
              if (line.length < MIN_SECRET)
                throw new Error(
                  `${w.secretFile}: its first line holds ${line.length === 0 ? 'no secret' : `a secret of ${line.length} characters`}; put one of at least ${MIN_SECRET} there`,
                )
              return line
            }),
          }
        : {}),
      ...(w.ca ? {ca: await readCaFile(w.ca)} : {}),
    }))()
    f.catch(() => files.delete(w))
    files.set(w, f)
  }
  return f
}

/**
 * The PEM certificates of `ca: FILE`, at least one. Node takes an empty `ca` as none given and trusts
 * the system's CAs instead: an empty or truncated file would let anyone with a certificate for the
 * webhook's name from any public (or corporate) CA answer allow. Refused, so the call is.
 */
async function readCaFile(path: string): Promise<string> {
  const text = await readFile(path, 'utf8')
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----/g) ?? []
  const parses = (pem: string): boolean => {
    try {
      new X509Certificate(pem)
      return true
    } catch {
      return false
    }
  }
  if (!blocks.some(parses))
    throw new Error(
      `${path} holds no PEM certificate; the webhook's TLS certificate would be checked against the system's CAs instead`,
    )
  return text
}

/**
 * A webhook call's result. `refused`: the webhook answered, in the protocol, that it does not allow the
 * request; any other failure (no answer, another status, a body cut off, too large or not JSON) is the
 * webhook's error. `reached`: a connection to the webhook was open, so the body may have gone out and
 * the webhook acted on it (counted, prompted its person); a call that never connected did not.
 */
export type WebhookOutcome =
  | {allow: true; status: number; reached?: true}
  | {allow: false; status: number | null; why: string; refused?: true; reached?: true}

/** One POST, bounded in time and size; never throws. */
export async function callWebhook(w: WebhookConfig, body: string): Promise<WebhookOutcome> {
  let secret: string | undefined
  let ca: string | undefined
  try {
    ;({secret, ca} = await filesOf(w))
  } catch (err) {
    return {allow: false, status: null, why: `cannot read the webhook's secret or CA file: ${(err as Error).message}`}
  }
  const url = new URL(w.url)
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    'user-agent': 'sshca',
    accept: 'application/json',
  }
  if (secret) headers['x-sshca-signature'] = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`
  return new Promise<WebhookOutcome>((resolve) => {
    let settled = false
    let reached = false
    const done = (o: WebhookOutcome): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.destroy()
      resolve(reached ? {...o, reached: true} : o)
    }
    const options = {
      method: 'POST',
      headers,
      agent: false as const,
      ...(url.protocol === 'https:' ? {rejectUnauthorized: true, ...(ca ? {ca} : {})} : {}),
    }
    const req = (url.protocol === 'https:' ? request : httpRequest)(url, options, (res) => {
      const status = res.statusCode ?? 0
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size > MAX_ANSWER) done({allow: false, status, why: 'the answer is too large'})
        else chunks.push(c)
      })
      res.on('end', () => {
        if (status < 200 || status >= 300) return done({allow: false, status, why: `it answered HTTP ${status}`})
        let answer: unknown
        try {
          answer = JSON.parse(Buffer.concat(chunks).toString('utf8'))
        } catch {
          return done({allow: false, status, why: 'its answer is not JSON'})
        }
        // exactly true: "true", 1 or a missing field are not an allow
        if ((answer as {allow?: unknown})?.allow === true) return done({allow: true, status})
        done({allow: false, status, why: 'it did not allow the request', refused: true})
      })
      res.on('error', (err) => done({allow: false, status, why: err.message}))
    })
    const timer = setTimeout(
      () => done({allow: false, status: null, why: `no answer within ${w.timeout} s`}),
      w.timeout * 1000,
    )
    req.on('error', (err) =>
      done({allow: false, status: null, why: (err as NodeJS.ErrnoException).code ?? err.message}),
    )
    // the body goes out once the connection is up (and, for https, its certificate checked)
    req.on('socket', (socket) =>
      socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => (reached = true)),
    )
    req.end(body)
  })
}

/** Requests of this thread waiting on an authorizing webhook now. */
let waiting = 0

/**
 * How many requests of a thread may wait on webhooks at once: half of its share of limits.maxInFlight.
 * Each waits up to the webhook's timeout holding its place, so a webhook that hangs (or whoever holds
 * tokens for its rule) could otherwise take every place, and rules without a webhook would be shed too.
 */
export function webhookWaitCap(rt: CaRuntime): number {
  const threads = rt.threads ?? 1
  const places = rt.policy.config.limits.maxInFlight ?? IN_FLIGHT_PER_THREAD * threads
  return Math.max(1, Math.floor(places / threads / 2))
}

/** Asks the rule's webhook, if it has one; throws the denial unless it allowed, and audits the call. */
export async function authorize(
  rt: CaRuntime,
  p: ProvisionerConfig,
  rule: RuleConfig,
  claims: Claims,
  spec: CertificateSpec,
  trace: AuditTrace,
  /** Called when the call never reached the webhook (nothing was sent): the token may ask again. */
  notReached?: () => Promise<void>,
): Promise<void> {
  const w = rule.webhook
  if (!w) return
  const body = JSON.stringify({
    type: 'sshca.authorize.v1',
    // when the CA sent it, under the signature: a body seen on the webhook's side (its logs, a proxy
    // in front of it) replayed later is told from a fresh one (step-ca's webhooks carry one too)
    timestamp: new Date(rt.clock()).toISOString(),
    requestId: trace.request_id,
    provisioner: p.name,
    rule: rule.name,
    claims,
    request: {
      certType: trace.cert_type,
      keyType: trace.key_type,
      keyFingerprint: trace.key_fingerprint,
      clientAddress: trace.client_address,
    },
    certificate: {
      principals: spec.principals,
      keyId: spec.keyId,
      validAfter: Number(spec.validAfter),
      validBefore: Number(spec.validBefore),
      criticalOptions: spec.criticalOptions,
      extensions: Object.keys(spec.extensions),
    },
  })
  const started = performance.now()
  const cap = webhookWaitCap(rt)
  let outcome: WebhookOutcome
  if (waiting >= cap) {
    outcome = {
      allow: false,
      status: null,
      why: `${waiting} requests already wait on authorizing webhooks (at most ${cap})`,
    }
  } else {
    waiting++
    try {
      outcome = await callWebhook(w, body)
    } finally {
      waiting--
    }
  }
  const seconds = (performance.now() - started) / 1000
  const result = outcome.allow ? 'allow' : outcome.refused ? 'deny' : 'error'
  trace.webhook = {
    // its origin and a digest of the whole URL: some endpoints take a key in the query or the path
    // (https://hooks.example.com/services/T0/B0/<secret>), and the audit log keeps no secret
    url: new URL(w.url).origin,
    urlSha256: createHash('sha256').update(w.url).digest('hex').slice(0, 16),
    outcome: result,
    status: outcome.status,
    ms: Math.round(seconds * 1000),
    ...(outcome.allow ? {} : {why: outcome.why}),
  }
  rt.meter?.webhook({provisioner: p.name, rule: rule.name, outcome: result, seconds})
  if (!outcome.reached) await notReached?.()
  if (outcome.allow) return
  if (result === 'deny')
    throw denial(
      'ERR_POLICY_DENIED',
      'webhook_denied',
      `the authorizing webhook of rule "${rule.name}" did not allow the request`,
    )
  // no answer (or not one we read) is a denial too: fail closed; 503 so a client may try again
  throw denial(
    'ERR_UPSTREAM_UNAVAILABLE',
    'webhook_unavailable',
    `the authorizing webhook of rule "${rule.name}" gave no usable answer: ${outcome.why}`,
  )
}
