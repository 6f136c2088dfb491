/**
 * The one table from error codes to HTTP statuses, and the body a caller sees: a message only
 * below 500, never why a policy denied (that is in the audit log).
 */
import {isSshcaError, type ErrorCode} from '../errors.ts'
import type {ErrorBody} from '../protocol/api.ts'

export const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  ERR_INPUT: 400,
  ERR_SSH_FORMAT: 400,
  ERR_SSH_UNSUPPORTED: 400,
  ERR_TOKEN_INVALID: 401,
  ERR_TOKEN_REPLAYED: 401,
  ERR_POLICY_DENIED: 403,
  ERR_NOT_FOUND: 404,
  ERR_ISSUANCE_DISABLED: 503,
  ERR_UPSTREAM_UNAVAILABLE: 503,
  ERR_STORE_UNAVAILABLE: 503,
}

/** Codes whose own message is for the operator (the audit log) and whose callers get this instead. */
const PUBLIC_MESSAGE_OF: Partial<Record<ErrorCode, string>> = {
  ERR_STORE_UNAVAILABLE: 'the CA cannot record certificates right now, so it issued none; try again shortly',
}

const PUBLIC_MESSAGE: Partial<Record<number, string>> = {
  401: 'the token was rejected: it is invalid, expired, for another audience, or already used; get a new one',
  403: 'the CA policy does not allow a certificate for this request',
  500: 'internal error',
}

export function httpError(err: unknown, requestId: string): {status: number; body: ErrorBody} {
  let status = 500
  let message = 'internal error'
  if (isSshcaError(err)) {
    status = HTTP_STATUS[err.code] ?? 500
    message = PUBLIC_MESSAGE_OF[err.code] ?? PUBLIC_MESSAGE[status] ?? err.message
  } else {
    // fastify's own client errors: body too large (413), bad JSON (400), wrong content type (415)
    const sc = (err as {statusCode?: number}).statusCode
    if (typeof sc === 'number' && sc >= 400 && sc < 500) {
      status = sc
      message = (err as Error).message
    }
  }
  return {status, body: {status, message, request_id: requestId}}
}
