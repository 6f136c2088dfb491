/**
 * The routes: parse the request (src/protocol's shapes, through the validator compiler), ask the
 * Authority, render its answer. Nothing here decides anything.
 */
import type {FastifyInstance, FastifyPluginAsync} from 'fastify'
import {OidcSshCaSignRequest, SshCheckHostRequest, SshRekeyRequest, SshRenewRequest, SshRevokeRequest, SshSignRequest, type HostsResponse, type ProvisionersResponse, type SshCheckHostResponse, type SshRootsResponse} from '../../protocol/api.ts'
import {certificateLine} from '../../ssh/cert.ts'
import type {Authority} from '../authority/authority.ts'
import {traceOf} from './trace.ts'

/** A signing route: one bucket per client address across all of them, shed under load, audited. */
const signing = {signing: true, rateLimit: {groupId: 'signing'}} as const

export function routes(authority: Authority): FastifyPluginAsync {
  return async (r: FastifyInstance) => {
    r.get('/health', async () => ({status: 'ok'}))

    r.get<{Params: {sha: string}}>('/root/:sha', async (req, reply) => {
      const ca = authority.root(req.params.sha)
      return ca === undefined ? reply.code(404).send({status: 404, message: 'no root with that fingerprint', request_id: req.id}) : {ca}
    })

    r.get('/roots', async () => authority.roots())
    r.get('/provisioners', async (): Promise<ProvisionersResponse> => authority.provisioners())
    r.get('/ssh/roots', async (): Promise<SshRootsResponse> => authority.sshRoots())
    r.get('/ssh/krl', async (_req, reply) => reply.type('application/octet-stream').send(await authority.krl()))
    r.get('/ssh/hosts', async (req): Promise<HostsResponse> => authority.hosts(req.headers.authorization))

    r.post<{Body: SshSignRequest}>('/ssh/sign', {config: signing, schema: {body: SshSignRequest}}, async (req, reply) => {
      const cert = await authority.signSsh(req.body, traceOf(req))
      return reply.code(201).send({crt: cert.blob.toString('base64')})
    })

    r.post<{Body: {public_key: string}}>('/sign', {config: signing, schema: {body: OidcSshCaSignRequest}}, async (req, reply) => {
      const cert = await authority.signBearer(req.headers.authorization, req.body.public_key, traceOf(req))
      return reply.code(200).type('text/plain; charset=utf-8').send(`${certificateLine(cert)}\n`)
    })

    r.post<{Body: {ott: string}}>('/ssh/renew', {config: signing, schema: {body: SshRenewRequest}}, async (req, reply) => {
      const cert = await authority.renewSsh(req.body.ott, traceOf(req))
      return reply.code(201).send({crt: cert.blob.toString('base64')})
    })

    // step's SSHPOP routes (issue 12's client; the interop work may widen them to step's own token form)
    r.post<{Body: SshRekeyRequest}>('/ssh/rekey', {config: signing, schema: {body: SshRekeyRequest}}, async (req, reply) => {
      const cert = await authority.rekeySsh(req.body.ott, req.body.publicKey, traceOf(req))
      return reply.code(201).send({crt: cert.blob.toString('base64')})
    })

    r.post<{Body: SshRevokeRequest}>('/ssh/revoke', {config: signing, schema: {body: SshRevokeRequest}}, async (req) => {
      await authority.revokeSsh(req.body, traceOf(req))
      return {status: 'ok'}
    })

    r.post<{Body: SshCheckHostRequest}>('/ssh/check-host', {config: {rateLimit: {groupId: 'check-host'}}, schema: {body: SshCheckHostRequest}}, async (req): Promise<SshCheckHostResponse> => ({exists: await authority.checkHost(req.body.principal)}))
  }
}
