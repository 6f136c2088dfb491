/**
 * The client side of the CA's HTTP API, over TLS that trusts the bootstrapped root alone (Node's
 * default CA store is replaced, not extended). node:https rather than undici: undici costs 40 ms
 * (its Client) to 115 ms (whole) to import, against a budget of ~3× bare node for a whole login.
 */
import {Agent, request, type RequestOptions} from 'node:https'
import {SshcaError, type ErrorCode} from '../../errors.ts'
import {ErrorBody, WEBHOOK_MAX_SECONDS} from '../../protocol/api.ts'
import type {Schema} from '../../protocol/check.ts'
import {singleLine} from '../../util/text.ts'
import {announceRetryWait, retryWait} from './retry.ts'

const TLS_TRUST_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
])
const MAX_BODY = 4 * 1024 * 1024
/** Idle time allowed between two packets of a request (Node's socket timeout). */
const IDLE_TIMEOUT_MS = 15_000
/**
 * The same for the signing routes (POST /ssh/sign, /ssh/renew, /ssh/rekey), which a CA may hold
 * without a byte on its database, 10.5 s a call with PostgreSQL's default db.timeout (a connection,
 * then the statement): before and after a rule's webhook of up to WEBHOOK_MAX_SECONDS (51 s in all),
 * or three calls in a row for a renewal or a rekey (31.5 s). Given up on sooner, a certificate is
 * issued, and the token spent, for nobody (a renewal's lineage then moves to a certificate the host
 * never got: the next renewal gets that one again, SECURITY.md row 62, but a user's sign-in is lost).
 * Still within REQUEST_DEADLINE_MS.
 */
export const SIGN_IDLE_TIMEOUT_MS = (WEBHOOK_MAX_SECONDS + 25) * 1000
/** The routes that may issue, and so wait SIGN_IDLE_TIMEOUT_MS. */
const SIGNING_PATHS = new Set(['/ssh/sign', '/ssh/renew', '/ssh/rekey'])
/**
 * The whole request, connect to the last byte of the body, whatever arrives meanwhile: the idle
 * timeout alone lets a server (or anyone on the path of bootstrap's unpinned first request) that
 * sends a byte every few seconds hold a request, and `login --ensure` under ssh's Match exec with it,
 * for hours. Above SIGN_IDLE_TIMEOUT_MS, the longest a CA may hold a signing request silent.
 */
export const REQUEST_DEADLINE_MS = 60_000

export interface RawResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/** One HTTPS request; `ca` undefined with `insecure` set means "do not check TLS" (bootstrap only). */
export function httpsRequest(
  url: URL,
  opts: {
    method?: string
    body?: string
    headers?: Record<string, string>
    agent?: Agent
    ca?: string
    insecure?: boolean
    timeoutMs?: number
    /** The whole request's deadline (default REQUEST_DEADLINE_MS). */
    deadlineMs?: number
  },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    // settled once: the deadline's error wins over the reset it causes
    let done = false
    const finish = (fn: () => void): void => {
      if (done) return
      done = true
      clearTimeout(deadline)
      fn()
    }
    const fail = (err: unknown): void => finish(() => reject(err))
    const timedOut = (ms: number, what: string): Error =>
      Object.assign(new Error(`${what} within ${ms} ms`), {code: 'ETIMEDOUT'})
    const o: RequestOptions = {
      method: opts.method ?? 'GET',
      headers: {
        accept: 'application/json',
        'user-agent': 'sshca',
        ...(opts.body
          ? {'content-type': 'application/json', 'content-length': String(Buffer.byteLength(opts.body))}
          : {}),
        ...opts.headers,
      },
      timeout: opts.timeoutMs ?? IDLE_TIMEOUT_MS,
      ...(opts.agent
        ? {agent: opts.agent}
        : {agent: false, ...(opts.insecure ? {rejectUnauthorized: false} : {ca: opts.ca, rejectUnauthorized: true})}),
    }
    const req = request(url, o, (res) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size > MAX_BODY) {
          const err = new Error('response too large')
          fail(err)
          req.destroy(err)
        } else chunks.push(c)
      })
      res.on('end', () =>
        finish(() => resolve({status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks)})),
      )
      res.on('error', fail)
    })
    const deadlineMs = opts.deadlineMs ?? REQUEST_DEADLINE_MS
    const deadline = setTimeout(() => {
      const err = timedOut(deadlineMs, 'no complete answer')
      fail(err)
      req.destroy(err)
    }, deadlineMs)
    req.on('timeout', () => {
      const err = timedOut(o.timeout!, 'no answer')
      fail(err)
      req.destroy(err)
    })
    req.on('error', fail)
    req.end(opts.body)
  })
}

export function networkError(caUrl: string, err: unknown): SshcaError {
  const code = (err as NodeJS.ErrnoException).code ?? ''
  if (TLS_TRUST_ERRORS.has(code)) {
    return new SshcaError(
      'ERR_TRUST_TLS',
      `the CA at ${caUrl} presented a TLS certificate that the pinned root does not vouch for (${code})`,
      {
        cause: err,
        hint: 'this is what a machine-in-the-middle looks like; if the CA was re-created, bootstrap it again with --force',
      },
    )
  }
  const why =
    code === 'ECONNREFUSED'
      ? 'connection refused'
      : code === 'ENOTFOUND'
        ? 'unknown host'
        : code === 'ETIMEDOUT'
          ? 'timed out'
          : (err as Error).message
  return new SshcaError('ERR_CA_UNREACHABLE', `cannot reach the CA at ${caUrl}: ${why}`, {
    cause: err,
    hint: 'check the URL and your network (VPN?), then try again',
  })
}

const STATUS_CODES: Record<number, ErrorCode> = {
  400: 'ERR_CA_BAD_REQUEST',
  401: 'ERR_CA_UNAUTHORIZED',
  403: 'ERR_CA_DENIED',
  413: 'ERR_CA_BAD_REQUEST',
  429: 'ERR_CA_UNAVAILABLE',
  501: 'ERR_CA_UNSUPPORTED',
  503: 'ERR_CA_UNAVAILABLE',
}

export class CaClient {
  readonly caUrl: string
  private readonly agent: Agent
  private readonly deadlineMs: number

  /** `o.deadlineMs`: each request's deadline, connect to the body's end (default REQUEST_DEADLINE_MS). */
  constructor(caUrl: string, rootPem: string, o: {deadlineMs?: number} = {}) {
    this.caUrl = caUrl.replace(/\/+$/, '')
    this.deadlineMs = o.deadlineMs ?? REQUEST_DEADLINE_MS
    // one secure context for all its connections (from `ca`, Node builds one per connection); node:tls
    // taken here, not imported: importing it loads node:crypto, which `login --ensure` with a
    // certificate at hand never needs (node:https loads it only for a connection)
    const secureContext = process.getBuiltinModule('node:tls').createSecureContext({ca: rootPem})
    this.agent = new Agent({keepAlive: true, maxSockets: 2, secureContext, rejectUnauthorized: true})
  }

  close(): void {
    this.agent.destroy()
  }

  private async send(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<RawResponse> {
    const payload = body === undefined ? {} : {body: JSON.stringify(body)}
    let waited = 0
    for (let attempt = 1; ; attempt++) {
      let res: RawResponse
      try {
        res = await httpsRequest(new URL(this.caUrl + path), {
          method,
          agent: this.agent,
          deadlineMs: this.deadlineMs,
          ...(SIGNING_PATHS.has(path) ? {timeoutMs: SIGN_IDLE_TIMEOUT_MS} : {}),
          ...payload,
          ...(headers ? {headers} : {}),
        })
      } catch (err) {
        throw networkError(this.caUrl, err)
      }
      const wait = retryWait(res, attempt, waited)
      if (!wait) return res
      announceRetryWait(wait, this.caUrl)
      await new Promise((resolve) => setTimeout(resolve, wait.ms))
      waited += wait.ms
    }
  }

  /** A binary GET (the KRL). */
  async bytes(path: string): Promise<Buffer> {
    const res = await this.send('GET', path, undefined, {accept: 'application/octet-stream'})
    if (res.status === 200) return res.body
    throw this.failure('GET', path, res)
  }

  async call<T>(
    method: 'GET' | 'POST',
    path: string,
    schema: Schema<T>,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<T> {
    const res = await this.send(method, path, body, headers)
    let json: unknown
    try {
      json = JSON.parse(res.body.toString('utf8'))
    } catch {
      json = undefined
    }
    if (res.status >= 200 && res.status < 300) {
      const parsed = schema.safeParse(json)
      if (!parsed.success)
        throw new SshcaError('ERR_CA_BAD_RESPONSE', `the CA answered ${method} ${path} with an unexpected body`, {
          details: {status: res.status},
        })
      return parsed.data
    }
    throw this.failure(method, path, res, json)
  }

  private failure(method: string, path: string, res: RawResponse, json?: unknown): SshcaError {
    if (json === undefined) {
      try {
        json = JSON.parse(res.body.toString('utf8'))
      } catch {
        json = undefined
      }
    }
    // sshca's error bodies carry a request id; step-ca's ({status, message}) carry none
    const err = ErrorBody.safeParse(json)
    const header = res.headers['x-request-id']
    // the CA's words go inside sshca's own lines: one line each, or a hostile CA could print lines
    // that look like sshca's (a forged error code, a forged hint to run something)
    const rawId = (err.success ? err.data.request_id : undefined) ?? (typeof header === 'string' ? header : undefined)
    const requestId = rawId === undefined ? undefined : singleLine(rawId)
    const message = err.success ? singleLine(err.data.message) : `HTTP ${res.status}`
    const code = STATUS_CODES[res.status] ?? 'ERR_CA_BAD_RESPONSE'
    const lead =
      code === 'ERR_CA_DENIED'
        ? 'the CA policy denied the request'
        : code === 'ERR_CA_UNAUTHORIZED'
          ? 'the CA rejected the identity token'
          : `the CA answered ${method} ${path} with ${res.status}`
    const quote = requestId
      ? `quote the request id ${requestId} (they can look it up in the audit log, or run sshca ca explain)`
      : 'quote the time and this message'
    return new SshcaError(code, `${lead}: ${message}${requestId ? ` (request id ${requestId})` : ''}`, {
      details: {status: res.status, ...(requestId ? {requestId} : {}), ...(err.success ? {caMessage: message} : {})},
      hint:
        code === 'ERR_CA_DENIED'
          ? `ask the CA operator why; ${quote}`
          : code === 'ERR_CA_UNAUTHORIZED'
            ? 'sign in again (sshca login --force); if it persists, the CA may not trust this identity provider'
            : code === 'ERR_CA_UNSUPPORTED'
              ? 'this CA does not offer that; ask its operator'
              : 'try again later; if it persists, tell the CA operator',
    })
  }
}
