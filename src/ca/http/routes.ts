/**
 * The routes: parse the request (src/protocol's shapes, through the validator compiler), ask the
 * Authority, render its answer. Nothing here decides anything.
 *
 * step-ca's routes (same paths, bodies and statuses, so the step CLI works against this CA):
 * /version, /health, /root/:sha, /roots, /provisioners, /ssh/roots, /ssh/sign, /ssh/renew,
 * /ssh/rekey, /ssh/revoke, /ssh/config[/:type], /ssh/check-host, /ssh/hosts, /ssh/bastion, and
 * /sign, which answers step's X.509 CSR with a 501. sshca's own: /ssh/krl (the revocation list),
 * /sign with {public_key} and a Bearer token (oidc-ssh-ca's shape, for curl), and the Bearer form
 * of /ssh/hosts and /ssh/check-host.
 */
import type {TLSSocket} from 'node:tls'
import type {FastifyInstance, FastifyPluginAsync, FastifyRequest} from 'fastify'
import {
  SignRequest,
  SshBastionRequest,
  SshCheckHostRequest,
  SshConfigRequest,
  SshRekeyRequest,
  SshRenewRequest,
  SshRevokeRequest,
  SshSignRequest,
  type HostsResponse,
  type ProvisionersResponse,
  type SshRootsResponse,
  type SshSignResponse,
  type VersionResponse,
} from '../../protocol/api.ts'
import {certificateLine} from '../../ssh/cert.ts'
import type {Authority, ClientAuth} from '../authority/authority.ts'
import {denial} from '../policy/types.ts'
import {traceOf} from './trace.ts'

/** A signing route: one bucket per client address across all of them, shed under load, audited. */
const signing = {signing: true, rateLimit: {groupId: 'signing'}} as const

/** The Bearer header and the TLS client certificate (step's identity), if the client sent one. */
function clientAuth(req: FastifyRequest): ClientAuth {
  const socket = req.raw.socket as Partial<TLSSocket>
  return {authorization: req.headers.authorization, peerCertificate: socket.getPeerX509Certificate?.()}
}

export function routes(authority: Authority): FastifyPluginAsync {
  return async (r: FastifyInstance) => {
    // liveness: the process answers (restarting it would not bring the database back); says whether the store does
    r.get('/health', async () => ({status: 'ok', db: (await authority.storeReachable()) ? 'ok' : 'unreachable'}))

    // readiness, for a load balancer's health check: 503 while the store is unreachable or the audit
    // log takes no line, so the balancer sends no signing request to a replica that could only answer 503
    r.get('/ready', async (_req, reply) => {
      const db = await authority.storeReachable()
      const audit = !authority.auditFailing()
      if (db && audit) return {ready: true}
      return reply
        .code(503)
        .send({ready: false, ...(db ? {} : {db: 'unreachable'}), ...(audit ? {} : {audit: 'failing'})})
    })
    r.get('/version', async (): Promise<VersionResponse> => authority.version())

    r.get<{Params: {sha: string}}>('/root/:sha', async (req, reply) => {
      const ca = authority.root(req.params.sha)
      return ca === undefined
        ? reply.code(404).send({status: 404, message: 'no root with that fingerprint', request_id: req.id})
        : {ca}
    })

    r.get('/roots', async () => authority.roots())
    r.get<{Querystring: {cursor?: string; limit?: string}}>(
      '/provisioners',
      async (req): Promise<ProvisionersResponse> =>
        authority.provisioners({cursor: req.query.cursor, limit: req.query.limit}),
    )
    r.get('/ssh/roots', async (): Promise<SshRootsResponse> => authority.sshRoots())
    r.get('/ssh/krl', async (_req, reply) => reply.type('application/octet-stream').send(await authority.krl()))
    r.get('/ssh/hosts', {config: {rateLimit: {groupId: 'signing'}}}, async (req): Promise<HostsResponse> =>
      authority.hosts(clientAuth(req), traceOf(req)),
    )

    r.post<{Body: SshSignRequest}>(
      '/ssh/sign',
      {config: signing, schema: {body: SshSignRequest}},
      async (req, reply) => {
        const {cert, identityCrt} = await authority.signSsh(req.body, traceOf(req))
        return reply
          .code(201)
          .send({crt: cert.blob.toString('base64'), ...(identityCrt ? {identityCrt} : {})} satisfies SshSignResponse)
      },
    )

    r.post<{Body: SignRequest}>('/sign', {config: signing, schema: {body: SignRequest}}, async (req, reply) => {
      // step-ca's /sign takes an X.509 CSR; sshca's takes an SSH public key: the body tells which
      if (req.body.public_key === undefined) {
        if (typeof req.body.csr === 'string') authority.signX509()
        throw denial('ERR_INPUT', 'bad_request', 'bad request body: public_key: expected a string')
      }
      const cert = await authority.signBearer(req.headers.authorization, req.body.public_key, traceOf(req))
      return reply
        .code(200)
        .type('text/plain; charset=utf-8')
        .send(`${certificateLine(cert)}\n`)
    })

    r.post<{Body: SshRenewRequest}>(
      '/ssh/renew',
      {config: signing, schema: {body: SshRenewRequest}},
      async (req, reply) => {
        const cert = await authority.renewSsh(req.body.ott, traceOf(req))
        return reply.code(201).send({crt: cert.blob.toString('base64')})
      },
    )

    r.post<{Body: SshRekeyRequest}>(
      '/ssh/rekey',
      {config: signing, schema: {body: SshRekeyRequest}},
      async (req, reply) => {
        const cert = await authority.rekeySsh(req.body, traceOf(req))
        return reply.code(201).send({crt: cert.blob.toString('base64')})
      },
    )

    r.post<{Body: SshRevokeRequest}>('/ssh/revoke', {config: signing, schema: {body: SshRevokeRequest}}, async (req) =>
      authority.revokeSsh(req.body, traceOf(req)),
    )

    const sshConfig = async (req: FastifyRequest<{Body: SshConfigRequest; Params: {type?: string}}>) => {
      const type = req.params.type ?? req.body.type
      if (type !== undefined && type !== '' && type !== 'user' && type !== 'host')
        throw denial('ERR_INPUT', 'bad_request', `invalid type '${type}'`)
      return authority.sshConfig({...req.body, type: type === 'host' ? 'host' : 'user'})
    }
    r.post<{Body: SshConfigRequest; Params: {type?: string}}>(
      '/ssh/config',
      {schema: {body: SshConfigRequest}},
      sshConfig,
    )
    r.post<{Body: SshConfigRequest; Params: {type: string}}>(
      '/ssh/config/:type',
      {schema: {body: SshConfigRequest}},
      sshConfig,
    )

    r.post<{Body: SshCheckHostRequest}>(
      '/ssh/check-host',
      {config: {rateLimit: {groupId: 'signing'}}, schema: {body: SshCheckHostRequest}},
      async (req) => authority.checkHost(req.body, clientAuth(req), traceOf(req)),
    )
    r.post<{Body: SshBastionRequest}>('/ssh/bastion', {schema: {body: SshBastionRequest}}, async (req) =>
      authority.bastion(req.body),
    )
  }
}
