/** A request's audit trace, kept on the request (fastify's decorateRequest) and filled in as the pipeline learns. */
import type {FastifyRequest} from 'fastify'
import type {AuditTrace} from '../authority/runtime.ts'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A signing route: rate-limited, shed under load, and every outcome audited. */
    signing?: boolean
  }
  interface FastifyRequest {
    auditTrace: AuditTrace | null
  }
}

/** The audit trace of a request, made on first use: what its audit line will say. */
export function traceOf(req: FastifyRequest): AuditTrace {
  req.auditTrace ??= {request_id: req.id, client_address: req.ip, route: req.routeOptions.url ?? req.url}
  return req.auditTrace
}
