/**
 * The CA's HTTP API as a fastify app (routes only; src/ca/server.ts listens). Mounted at / and at
 * /1.0 like step-ca. Every response carries x-request-id; every signing decision is audited once.
 * Every wait is bounded (limits in ca.yaml): a request, its headers, an idle connection, a TLS
 * handshake; connections are capped, signing routes rate-limited per client address and shed with a
 * 503 when too many are in flight.
 */
import {randomUUID, timingSafeEqual} from 'node:crypto'
import {STATUS_CODES} from 'node:http'
import type {Duplex} from 'node:stream'
import rateLimit from '@fastify/rate-limit'
import Fastify, {type FastifyInstance, type FastifyReply, type FastifyRequest} from 'fastify'
import {SshcaError} from '../../errors.ts'
import {OidcSshCaSignRequest, SshSignRequest, type ProvisionersResponse, type SshRootsResponse} from '../../protocol/api.ts'
import {certificateLine} from '../../ssh/cert.ts'
import {LIMIT_DEFAULTS, type CaConfig} from '../config/config.ts'
import {hostRoutes, signHostCertificate} from '../authority/host.ts'
import {httpError} from './errors.ts'
import {denial, reasonOf} from '../policy/policy.ts'
import type {AuditTrace, CaRuntime} from '../authority/runtime.ts'
import {SharedRateStore} from './rate-store.ts'
import {parseSubjectKey, signUserCertificate} from '../authority/sign.ts'

export const BODY_LIMIT = 16 * 1024
/** An oversized body up to this size is read and dropped so the client reads its 413; beyond, the connection is closed. */
const DRAIN_LIMIT = 1024 * 1024

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A signing route: rate-limited, shed under load, and every outcome audited. */
    signing?: boolean
  }
  interface FastifyRequest {
    auditTrace: AuditTrace | null
  }
}

export interface RouteHelpers {
  trace(req: FastifyRequest): AuditTrace
  parseBody<T>(schema: {safeParse(v: unknown): {success: true; data: T} | {success: false; error: {issues: {path: PropertyKey[]; message: string}[]}}}, body: unknown): T
}

/** What the server's own settings need from ca.yaml: the limits and whom to trust as a proxy. */
export type ServerSettings = Pick<CaConfig, 'limits' | 'trustProxy'>

const defaults: ServerSettings = {limits: LIMIT_DEFAULTS, trustProxy: false}

export function buildApp(rt: CaRuntime, https: {key: string; cert: string} | undefined, settings: ServerSettings = defaults): FastifyInstance {
  const limits = settings.limits
  const app = Fastify({
    ...(https
      ? {
          https: {
            key: https.key,
            cert: https.cert,
            minVersion: 'TLSv1.2' as const,
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
    trustProxy: settings.trustProxy as boolean | string[],
    clientErrorHandler: clientError,
    // a URL the router cannot decode (`/%`) is refused before any hook or the error handler runs
    frameworkErrors: (err, req, reply) => {
      const {status, body} = err.code === 'FST_ERR_BAD_URL' ? {status: 400, body: {status: 400, message: err.message, request_id: req.id}} : httpError(err, req.id)
      void (reply as unknown as FastifyReply).code(status).headers({'x-request-id': req.id, 'cache-control': 'no-store'}).send(body)
    },
  }) as unknown as FastifyInstance
  app.server.headersTimeout = limits.headersTimeout * 1000
  app.server.maxConnections = limits.maxConnections

  const trace = (req: FastifyRequest): AuditTrace => {
    req.auditTrace ??= {request_id: req.id, client_address: req.ip, route: req.routeOptions.url ?? req.url}
    return req.auditTrace
  }
  const helpers: RouteHelpers = {trace, parseBody}
  app.decorateRequest('auditTrace', null)

  app.addHook('onRequest', (req, reply, done) => {
    void reply.headers({'x-request-id': req.id, 'cache-control': 'no-store'})
    done()
  })

  // load shedding: past maxInFlight signing requests, answer 503 at once rather than queue without bound
  let inFlight = 0
  app.addHook('onRequest', (req, reply, done) => {
    if (!req.routeOptions.config.signing) return done()
    if (inFlight >= rt.policy.config.limits.maxInFlight) {
      void reply.header('retry-after', '1')
      return done(denial('ERR_CA_OVERLOADED', 'overloaded', 'too many signing requests in flight'))
    }
    inFlight++
    let released = false
    const release = (): void => {
      if (!released) inFlight--
      released = true
    }
    reply.raw.once('close', release)
    done()
  })

  app.setErrorHandler((err, req, reply) => {
    const {status, body} = httpError(err, req.id)
    if (req.auditTrace || req.routeOptions.config.signing) {
      const t = trace(req)
      const reason = err instanceof SshcaError ? (reasonOf(err) ?? (status >= 500 ? 'internal_error' : 'bad_request')) : status >= 500 ? 'internal_error' : 'bad_request'
      rt.audit.write(reason === 'rate_limited' ? 'rate_limited' : 'certificate_denied', {...t, reason, status, detail: (err as Error).message.slice(0, 500), ...auditDetails(err)})
    }
    if (status === 413) keepReading(req, reply)
    void reply.code(status).send(body)
  })

  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({status: 404, message: `no route ${req.method} ${req.url.split('?')[0]}`, request_id: req.id})
  })

  // registered on the root, so / and /1.0 share one bucket per client address
  if (limits.rate !== false) {
    const rate = limits.rate
    void app.register(rateLimit, {
      global: false,
      store: SharedRateStore,
      // read from the policy in force, so a reload changes it
      max: async () => (rt.policy.config.limits.rate === false ? Number.MAX_SAFE_INTEGER : rt.policy.config.limits.rate.max),
      timeWindow: rate.window * 1000,
      errorResponseBuilder: (_req, ctx) => denial('ERR_RATE_LIMITED', 'rate_limited', `more than ${ctx.max} signing requests in ${Math.round(rate.window)} s from this address; try again in ${Math.ceil(ctx.ttl / 1000)} s`, {retry_after_seconds: Math.ceil(ctx.ttl / 1000)}),
    })
  }
  const signing = {signing: true, rateLimit: {groupId: 'signing'}} as const

  const routes = async (r: FastifyInstance): Promise<void> => {
    r.get('/health', async () => ({status: 'ok'}))

    r.get<{Params: {sha: string}}>('/root/:sha', async (req, reply) => {
      const want = req.params.sha.toLowerCase().replace(/[:-]/g, '')
      const have = rt.material.rootFingerprint
      if (!/^[0-9a-f]{64}$/.test(want) || !timingSafeEqual(Buffer.from(want), Buffer.from(have))) {
        return reply.code(404).send({status: 404, message: 'no root with that fingerprint', request_id: req.id})
      }
      return {ca: rt.material.rootPem}
    })

    r.get('/roots', async () => ({crts: [rt.material.rootPem]}))

    r.get('/provisioners', async (): Promise<ProvisionersResponse> => ({
      provisioners: rt.policy.config.provisioners.map((p) => ({
        type: 'OIDC',
        name: p.name,
        clientID: p.clientId ?? p.audience,
        audience: p.audience,
        // people sign in with provisioners that have a client id; CI provisioners only name an audience
        interactive: p.clientId !== undefined,
        configurationEndpoint: `${p.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`,
        ...(p.clientSecret !== undefined ? {clientSecret: p.clientSecret} : {}),
        ...(p.listenAddress !== undefined ? {listenAddress: p.listenAddress} : {}),
        ...(p.scopes !== undefined ? {scopes: p.scopes} : {}),
      })),
      nextCursor: '',
    }))

    r.get('/ssh/roots', async (): Promise<SshRootsResponse> => ({
      userKey: [rt.material.userCa.publicKey.blob.toString('base64')],
      hostKey: [rt.material.hostCa.publicKey.blob.toString('base64')],
      hostPattern: rt.policy.config.ssh.hostPattern,
    }))

    r.post('/ssh/sign', {config: signing}, async (req, reply) => {
      const t = trace(req)
      const body = parseBody(SshSignRequest, req.body)
      const key = parseSubjectKey({blobBase64: body.publicKey})
      const certType = body.certType ?? 'user'
      // host certificates come with an enrollment token from `ca token --host`, users with an OIDC token
      const cert = certType === 'host' ? await signHostCertificate(rt, key, body.ott, t, body) : await signUserCertificate(rt, key, body.ott, certType, t)
      return reply.code(201).send({crt: cert.blob.toString('base64')})
    })

    r.post('/sign', {config: signing}, async (req, reply) => {
      const t = trace(req)
      const auth = req.headers.authorization ?? ''
      const m = /^Bearer\s+(\S+)$/i.exec(auth)
      if (!m) throw new SshcaError('ERR_INPUT', 'send the token as "Authorization: Bearer <JWT>"', {details: {reason: 'bad_request'}})
      const body = parseBody(OidcSshCaSignRequest, req.body)
      const key = parseSubjectKey({line: body.public_key})
      const cert = await signUserCertificate(rt, key, m[1]!, 'user', t)
      return reply.code(200).type('text/plain; charset=utf-8').send(`${certificateLine(cert)}\n`)
    })

    hostRoutes(r, rt, helpers, signing)
  }
  void app.register(routes)
  void app.register(routes, {prefix: '/1.0'})
  return app
}

/** Non-secret details a denial carries into its audit line (when a token was spent, on what). */
function auditDetails(err: unknown): Record<string, unknown> {
  if (!(err instanceof SshcaError) || !err.details) return {}
  const {reason: _reason, ...rest} = err.details
  return rest
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
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400
  const id = randomUUID()
  const body = JSON.stringify({status, message: `malformed HTTP request: ${STATUS_CODES[status]}`, request_id: id})
  if (socket.writable) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${id}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n${body}`)
  }
  socket.destroy(err)
}


function parseBody<T>(schema: {safeParse(v: unknown): {success: true; data: T} | {success: false; error: {issues: {path: PropertyKey[]; message: string}[]}}}, body: unknown): T {
  const r = schema.safeParse(body)
  if (r.success) return r.data
  const first = r.error.issues[0]
  throw new SshcaError('ERR_INPUT', `bad request body: ${first ? `${first.path.join('.') || '(body)'}: ${first.message}` : 'invalid'}`, {details: {reason: 'bad_request'}})
}
