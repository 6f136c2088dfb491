/**
 * The CA's HTTP API as a fastify app (routes only; src/ca/server.ts listens). Mounted at / and at
 * /1.0 like step-ca. Every response carries x-request-id; every signing decision is audited once.
 */
import {randomUUID, timingSafeEqual} from 'node:crypto'
import Fastify, {type FastifyInstance, type FastifyRequest} from 'fastify'
import {SshcaError} from '../errors.ts'
import {OidcSshCaSignRequest, SshSignRequest, type ProvisionersResponse, type SshRootsResponse} from '../protocol/api.ts'
import {certificateLine} from '../ssh/cert.ts'
import {hostRoutes, signHostCertificate} from './host.ts'
import {httpError} from './http-errors.ts'
import {reasonOf} from './policy.ts'
import type {AuditTrace, CaRuntime} from './runtime.ts'
import {parseSubjectKey, signUserCertificate} from './sign.ts'

export const BODY_LIMIT = 16 * 1024

export interface RouteHelpers {
  trace(req: FastifyRequest): AuditTrace
  parseBody<T>(schema: {safeParse(v: unknown): {success: true; data: T} | {success: false; error: {issues: {path: PropertyKey[]; message: string}[]}}}, body: unknown): T
}

const traces = new WeakMap<FastifyRequest, AuditTrace>()

export function buildApp(rt: CaRuntime, https: {key: string; cert: string} | undefined): FastifyInstance {
  const app = Fastify({
    ...(https ? {https: {key: https.key, cert: https.cert, minVersion: 'TLSv1.2' as const}} : {}),
    bodyLimit: BODY_LIMIT,
    logger: false,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    return503OnClosing: true,
    keepAliveTimeout: 65_000,
  }) as unknown as FastifyInstance

  const trace = (req: FastifyRequest): AuditTrace => {
    let t = traces.get(req)
    if (!t) {
      t = {request_id: req.id, client_address: req.ip, route: req.routeOptions.url ?? req.url}
      traces.set(req, t)
    }
    return t
  }
  const helpers: RouteHelpers = {trace, parseBody}

  app.addHook('onRequest', (req, reply, done) => {
    void reply.headers({'x-request-id': req.id, 'cache-control': 'no-store'})
    done()
  })

  app.setErrorHandler((err, req, reply) => {
    const {status, body} = httpError(err, req.id)
    if (traces.has(req) || isSigningRoute(req)) {
      const t = trace(req)
      const reason = err instanceof SshcaError ? (reasonOf(err) ?? (status === 500 ? 'internal_error' : 'bad_request')) : status === 500 ? 'internal_error' : 'bad_request'
      try {
        rt.audit.write('certificate_denied', {...t, reason, status, detail: (err as Error).message.slice(0, 500)})
      } catch {
        // the audit log cannot be written (that may be the error being answered): still answer
      }
    }
    void reply.code(status).send(body)
  })

  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({status: 404, message: `no route ${req.method} ${req.url.split('?')[0]}`, request_id: req.id})
  })

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

    r.post('/ssh/sign', async (req, reply) => {
      const t = trace(req)
      const body = parseBody(SshSignRequest, req.body)
      const key = parseSubjectKey({blobBase64: body.publicKey})
      const certType = body.certType ?? 'user'
      // host certificates come with an enrollment token from `ca token --host`, users with an OIDC token
      const cert = certType === 'host' ? await signHostCertificate(rt, key, body.ott, t, body) : await signUserCertificate(rt, key, body.ott, certType, t)
      return reply.code(201).send({crt: cert.blob.toString('base64')})
    })

    r.post('/sign', async (req, reply) => {
      const t = trace(req)
      const auth = req.headers.authorization ?? ''
      const m = /^Bearer\s+(\S+)$/i.exec(auth)
      if (!m) throw new SshcaError('ERR_INPUT', 'send the token as "Authorization: Bearer <JWT>"', {details: {reason: 'bad_request'}})
      const body = parseBody(OidcSshCaSignRequest, req.body)
      const key = parseSubjectKey({line: body.public_key})
      const cert = await signUserCertificate(rt, key, m[1]!, 'user', t)
      return reply.code(200).type('text/plain; charset=utf-8').send(`${certificateLine(cert)}\n`)
    })

    hostRoutes(r, rt, helpers)
  }
  void app.register(routes)
  void app.register(routes, {prefix: '/1.0'})
  return app
}

const SIGNING_ROUTES = new Set(['/ssh/sign', '/sign', '/ssh/renew', '/1.0/ssh/sign', '/1.0/sign', '/1.0/ssh/renew'])
function isSigningRoute(req: FastifyRequest): boolean {
  return req.method === 'POST' && SIGNING_ROUTES.has((req.routeOptions.url ?? req.url).split('?')[0]!)
}

function parseBody<T>(schema: {safeParse(v: unknown): {success: true; data: T} | {success: false; error: {issues: {path: PropertyKey[]; message: string}[]}}}, body: unknown): T {
  const r = schema.safeParse(body)
  if (r.success) return r.data
  const first = r.error.issues[0]
  throw new SshcaError('ERR_INPUT', `bad request body: ${first ? `${first.path.join('.') || '(body)'}: ${first.message}` : 'invalid'}`, {details: {reason: 'bad_request'}})
}

