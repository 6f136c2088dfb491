/**
 * The CA's HTTP API as a fastify app (src/ca/server.ts listens). Mounted at / and at /1.0 like
 * step-ca; the routes (routes.ts) see only the Authority. Every response carries x-request-id;
 * every signing decision is audited once. Every wait is bounded (limits in ca.yaml): a request, its
 * headers, an idle connection, a TLS handshake; connections are capped, signing routes
 * rate-limited per client address and shed with a 503 when too many are in flight.
 */
import {randomUUID} from 'node:crypto'
import {STATUS_CODES} from 'node:http'
import {monitorEventLoopDelay} from 'node:perf_hooks'
import type {Duplex} from 'node:stream'
import rateLimit, {type FastifyRateLimitStoreCtor} from '@fastify/rate-limit'
import Fastify, {type FastifyInstance, type FastifyReply, type FastifyRequest} from 'fastify'
import type {Schema} from '../../protocol/check.ts'
import type {Authority} from '../authority/authority.ts'
import type {ServerSettings} from '../config/config.ts'
import {IN_FLIGHT_PER_THREAD} from '../authority/runtime.ts'
import {denial} from '../policy/types.ts'
import {httpError} from './errors.ts'
import {SharedRateStore} from './rate-store.ts'
import {routes} from './routes.ts'
import {traceOf} from './trace.ts'

export const BODY_LIMIT = 16 * 1024
/** An oversized body up to this size is read and dropped so the client reads its 413; beyond, the connection is closed. */
const DRAIN_LIMIT = 1024 * 1024

export interface AppOptions {
  /**
   * Open connections and signing requests in flight, counted over a SharedArrayBuffer by every
   * worker thread serving the CA (src/ca/workers.ts), so that limits.maxConnections and
   * limits.maxInFlight hold for the CA as a whole. Each thread counts in its own slot, which the
   * main thread zeroes when the thread dies (what it counted died with it).
   */
  counters?: {all: Int32Array; slot: number}
  /** The rate-limit counters (@fastify/rate-limit's store): the workers' one table in shared memory. */
  rateStore?: FastifyRateLimitStoreCtor
  /**
   * The settings the server is built from (startOnlyChanges), when they are not the policy in force: a worker
   * started after a reload builds its server as the threads it serves beside did, at the CA's start.
   */
  startSettings?: ServerSettings
  /** The event-loop lag in milliseconds and how to stop measuring it: eventLoopLag() unless a test stands in. */
  lag?: {current(): number; stop(): void}
}

/**
 * limits.maxInFlight when ca.yaml leaves it unset: this many for each thread serving the API. What is
 * in flight on a thread is its event loop's queue: on the development machine a core signs ~1,200 a
 * second beside the refusals of an overload, so 48 are ~40 ms of work. Measured at 4× the sustainable
 * rate on one core (CONTRIBUTING.md, "Overload"): 256 let the p99 of the certificates issued reach
 * 400 ms, 64 held it at 108–142 ms, 48 at 90–117 ms with as many certificates issued; 32 lost a third of
 * them. Since the worker's messages are batched (workers.ts), on a core signing ~2,000 a second under
 * overload: 73–88 ms. A count, not a time: with half a core, 48 let it reach 176 ms and 24 brought it
 * to 127 ms (limits.maxInFlight). A burst past it is shed with Retry-After, which sshca's client honours.
 */
export {IN_FLIGHT_PER_THREAD}

/**
 * The signature algorithms of the API's TLS, both ways: the CA's own certificate is ECDSA P-256
 * (keys/pki.ts), and a client certificate (step's identity, ECDSA P-256) is taken only with these.
 * OpenSSL checks the CertificateVerify of any client certificate offered, before anything looks at
 * the certificate (requestCert, rejectUnauthorized off): an RSA key of 3072 bits may carry a public
 * exponent as long as its modulus, which made each such handshake cost the CA ~10 ordinary ones
 * (~5 ms against ~0.5) while its sender, holding a small private exponent, signs for nothing.
 * The curves' costs are fixed; no RSA signature is accepted, so such a client sends no certificate.
 */
export const TLS_SIGALGS = 'ecdsa_secp256r1_sha256:ecdsa_secp384r1_sha384:ecdsa_secp521r1_sha512:ed25519'

/**
 * A secure context's options for the API's key and certificate: at start, and at every
 * setSecureContext (a TLS renewal, a rotation), which keeps nothing of the context it replaces (not
 * the minimum version nor the signature algorithms).
 */
export function tlsContext(pair: {key: string; cert: string}): {
  key: string
  cert: string
  minVersion: 'TLSv1.2'
  sigalgs: string
} {
  return {key: pair.key, cert: pair.cert, minVersion: 'TLSv1.2', sigalgs: TLS_SIGALGS}
}

/** Counters for AppOptions.counters: two (connections, in flight) per slot. */
export const appCounters = (slots: number): Int32Array => new Int32Array(new SharedArrayBuffer(8 * slots))
const CONNECTIONS = 0
const IN_FLIGHT = 1

/** The places of a kind taken in every slot. */
function count(all: Int32Array, kind: number): number {
  let sum = 0
  for (let i = kind; i < all.length; i += 2) sum += Atomics.load(all, i)
  return sum
}

/** Takes one of `max` places of a kind in slot `slot`; false (and nothing taken) when the slots hold them all. */
function take(all: Int32Array, slot: number, kind: number, max: number): boolean {
  const mine = 2 * slot + kind
  Atomics.add(all, mine, 1)
  if (count(all, kind) <= max) return true
  Atomics.sub(all, mine, 1)
  return false
}

export function buildApp(
  authority: Authority,
  https: {key: string; cert: string} | undefined,
  o: AppOptions = {},
): FastifyInstance {
  // read here once (startOnlyChanges); maxInFlight, maxEventLoopDelay and rate.max are read per request
  const {limits, trustProxy} = o.startSettings ?? authority.settings
  const {all, slot} = o.counters ?? {all: appCounters(1), slot: 0}
  const app = Fastify({
    ...(https
      ? {
          https: {
            ...tlsContext(https),
            // step's X.509 identity (see authority/identity.ts), when ca.yaml asks for it (tls.
            // clientCertificates: request): asked for, never required; the routes that accept it
            // verify it themselves, every other route ignores it. Not asked for by default: OpenSSL
            // checks every signature of any chain offered, at whatever cost its keys set
            requestCert: authority.clientCertificates === 'request',
            rejectUnauthorized: false,
            handshakeTimeout: limits.handshakeTimeout * 1000,
            // node checks request and header deadlines this often (default 30 s, too coarse for them)
            connectionsCheckingInterval: 1000,
          },
        }
      : {}),
    bodyLimit: BODY_LIMIT,
    logger: false,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    return503OnClosing: true,
    requestTimeout: limits.requestTimeout * 1000,
    keepAliveTimeout: limits.idleTimeout * 1000,
    connectionTimeout: limits.idleTimeout * 1000,
    // fastify takes a hop count too (proxy-addr), though its types omit it
    trustProxy: trustProxy as boolean | string[],
    clientErrorHandler: clientError,
    // a URL the router cannot decode (`/%`) is refused before any hook or the error handler runs
    frameworkErrors: (err, req, reply) => {
      const {status, body} =
        err.code === 'FST_ERR_BAD_URL'
          ? {status: 400, body: {status: 400, message: err.message, request_id: req.id}}
          : httpError(err, req.id)
      void (reply as unknown as FastifyReply)
        .code(status)
        .headers({'x-request-id': req.id, 'cache-control': 'no-store'})
        .send(body)
    },
  }) as unknown as FastifyInstance
  app.server.headersTimeout = limits.headersTimeout * 1000
  // net.Server's maxConnections, for every thread serving the CA: dropped at accept, before TLS
  app.server.on('connection', (socket: Duplex) => {
    if (!take(all, slot, CONNECTIONS, limits.maxConnections)) return void socket.destroy()
    // Stryker disable next-line ArithmeticOperator: CONNECTIONS is 0, so - and + name the same place
    socket.once('close', () => Atomics.sub(all, 2 * slot + CONNECTIONS, 1))
  })
  // Stryker disable next-line StringLiteral,CallExpression: declares the property so every request has one shape; undefined, null and absent read the same where it is read
  app.decorateRequest('auditTrace', null)

  // request bodies are checked by src/protocol's shapes, the ones the client builds them with
  app.setValidatorCompiler(({schema}) => (data: unknown) => {
    const r = (schema as unknown as Schema<unknown>).safeParse(data)
    // Stryker disable next-line ObjectLiteral: the request shapes transform nothing (no withDefault among them), so the checked copy equals the body fastify keeps without one
    if (r.success) return {value: r.data}
    const first = r.error.issues[0]
    return {
      error: denial(
        'ERR_INPUT',
        'bad_request',
        `bad request body: ${first ? `${first.path.join('.') || '(body)'}: ${first.message}` : 'invalid'}`,
      ),
    }
  })

  // the requests of each connection being answered: pipelined ones are answered in order, behind the first
  const answering = new WeakMap<object, number>()
  app.addHook('onRequest', (req, reply, done) => {
    void reply.headers({'x-request-id': req.id, 'cache-control': 'no-store'})
    answering.set(req.raw.socket, (answering.get(req.raw.socket) ?? 0) + 1)
    done()
  })
  // closing, the server stops accepting and closes its idle connections; one busy then (a request on
  // its webhook or its database) stayed open once answered, and kept the thread, and the CA's close(),
  // until the deadline. Its answer now says `connection: close`, so Node ends the connection after it
  // (not closed under a client that may be sending its next request). Requests that arrive while
  // closing get fastify's 503 with the same header
  let closing = false
  app.addHook('preClose', (done) => {
    closing = true
    done()
  })
  // only on the last request of its connection: Node ends the connection after an answer that says
  // close, and the answers of requests pipelined behind it, worked on and maybe issued, were lost
  app.addHook('onSend', (req, reply, payload, done) => {
    if (closing && (answering.get(req.raw.socket) ?? 0) <= 1) void reply.header('connection', 'close')
    done(null, payload)
  })

  // load shedding: past maxInFlight signing requests (counted for every thread serving the CA), answer
  // 503 at once rather than queue without bound; and while this thread's event loop lags (requests
  // wait in socket buffers, where no counter sees them). Refused as soon as the headers are read
  // while the places are all taken (the cheapest refusal: no body parsed); a place is taken only once
  // the body is read and checked (preHandler), still before the token is looked at, so a client that
  // sends headers and then trickles its body holds a connection until requestTimeout, never a place
  // (48 such requests would otherwise stop every signing).
  const lag = o.lag ?? eventLoopLag()
  app.addHook('onClose', (_app, done) => {
    lag.stop()
    done()
  })
  const maxInFlight = (): number => authority.settings.limits.maxInFlight ?? IN_FLIGHT_PER_THREAD * (all.length / 2)
  const overloaded = (reply: FastifyReply, why: string) => {
    void reply.header('retry-after', '1')
    return denial('ERR_CA_OVERLOADED', 'overloaded', why)
  }
  app.addHook('onRequest', (req, reply, done) => {
    if (!req.routeOptions.config.signing) return done()
    const {maxEventLoopDelay} = authority.settings.limits
    if (count(all, IN_FLIGHT) >= maxInFlight()) return done(overloaded(reply, 'too many signing requests in flight'))
    if (maxEventLoopDelay !== false && lag.current() > maxEventLoopDelay)
      return done(overloaded(reply, `the event loop lags ${Math.round(lag.current())} ms`))
    done()
  })
  app.addHook('preHandler', (req, reply, done) => {
    if (!req.routeOptions.config.signing) return done()
    if (!take(all, slot, IN_FLIGHT, maxInFlight()))
      return done(overloaded(reply, 'too many signing requests in flight'))
    reply.raw.once('close', () => Atomics.sub(all, 2 * slot + IN_FLIGHT, 1))
    done()
  })

  // request latency per route (the route's pattern, never the raw URL: labels stay bounded)
  app.addHook('onResponse', (req, reply, done) => {
    answering.set(req.raw.socket, (answering.get(req.raw.socket) ?? 1) - 1)
    authority.meter.request(req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000)
    // Stryker disable next-line CallExpression: onResponse runs after the answer is sent, and no hook follows this one
    done()
  })

  app.setErrorHandler((err, req, reply) => {
    const {status, body} = httpError(err, req.id)
    if (req.auditTrace || req.routeOptions.config.signing) authority.recordRefusal(traceOf(req), err, status)
    if (status === 413) keepReading(req, reply)
    void reply.code(status).send(body)
  })

  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send({status: 404, message: `no route ${req.method} ${req.url.split('?')[0]}`, request_id: req.id})
  })

  // registered on the root, so / and /1.0 share one bucket per client address
  if (limits.rate !== false) {
    const window = limits.rate.window
    void app.register(rateLimit, {
      global: false,
      store: o.rateStore ?? SharedRateStore,
      // read from the policy in force, so a reload changes it
      max: async () => {
        const rate = authority.settings.limits.rate
        // Stryker disable next-line ConditionalExpression,BooleanLiteral: @fastify/rate-limit 11 exceeds on `current > max`, false for `false.max` (undefined) as for MAX_SAFE_INTEGER: with the rate off neither limits (1,001 requests pass, tested)
        return rate === false ? Number.MAX_SAFE_INTEGER : rate.max
      },
      timeWindow: window * 1000,
      errorResponseBuilder: (_req, ctx) =>
        denial(
          'ERR_RATE_LIMITED',
          'rate_limited',
          `more than ${ctx.max} signing requests in ${Math.round(window)} s from this address; try again in ${Math.ceil(ctx.ttl / 1000)} s`,
          {retry_after_seconds: Math.ceil(ctx.ttl / 1000)},
        ),
    })
  }
  void app.register(routes(authority))
  void app.register(routes(authority), {prefix: '/1.0'})
  return app
}

/**
 * fastify closes the connection after a 413 while the client may still be sending: the kernel then
 * resets it and the client never reads the answer. Read the rest of a moderate body and drop it,
 * so the 413 arrives; a larger one (or one past the request timeout) still loses its connection.
 */
function keepReading(req: FastifyRequest, reply: FastifyReply): void {
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > DRAIN_LIMIT) return
  reply.removeHeader('connection')
  let seen = 0
  req.raw.on('data', (chunk: Buffer) => {
    seen += chunk.length
    if (seen > DRAIN_LIMIT) req.raw.socket.destroy()
  })
  req.raw.resume()
}

/**
 * What Node's HTTP parser refuses (a malformed request, headers over 16 KiB, a client too slow)
 * never reaches a route: it gets the API's error shape too, and the connection is closed.
 */
function clientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  // Stryker disable next-line LogicalOperator,StringLiteral: a reset socket is already destroyed when its error is emitted, and a destroyed one is not writable (nothing below is written) and ignores destroy()
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400
  const id = randomUUID()
  const body = JSON.stringify({status, message: `malformed HTTP request: ${STATUS_CODES[status]}`, request_id: id})
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${id}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`,
    )
  }
  socket.destroy(err)
}

/**
 * The mean event-loop delay over the last second, in milliseconds (10 ms resolution subtracted). A mean,
 * not a maximum: one long synchronous step does not trip it, a loop that stays behind does.
 */
/**
 * Closes `app`: it stops accepting, and waits for its requests in flight; past `deadlineMs`, the
 * connections still open are ended. Node stops enforcing headersTimeout and requestTimeout on a
 * server being closed, so a client sending its headers a byte at a time held close() open for ever
 * (`ca serve --workers 0` never exited on SIGTERM).
 */
export async function closeWithin(app: FastifyInstance, deadlineMs: number): Promise<void> {
  const timer = setTimeout(() => app.server.closeAllConnections(), deadlineMs)
  try {
    await app.close()
  } finally {
    clearTimeout(timer)
  }
}

export function eventLoopLag(): {current(): number; stop(): void} {
  // Stryker disable next-line ObjectLiteral: 10 ms is node's default resolution
  const histogram = monitorEventLoopDelay({resolution: 10})
  histogram.enable()
  let current = 0
  const timer = setInterval(() => {
    current = Number.isNaN(histogram.mean) ? 0 : Math.max(0, histogram.mean / 1e6 - 10)
    histogram.reset()
  }, 1000)
  timer.unref()
  return {
    current: () => current,
    stop: () => {
      clearInterval(timer)
      histogram.disable()
    },
  }
}
