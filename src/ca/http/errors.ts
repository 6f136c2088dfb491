/**
 * The one table from error codes to HTTP statuses and what a caller may read: a message only where
 * it tells the caller nothing about the policy or the CA's insides. Why a policy denied, and what an
 * upstream failure was, go to the audit log (with the request id the caller sees).
 */
import {isSshcaError, type ErrorCode} from '../../errors.ts'
import type {ErrorBody} from '../../protocol/api.ts'
import {DenialError, type DenialReason} from '../policy/types.ts'

/** The codes the signing core answers with; every one has a row, so a new one cannot silently become a 500. */
export type ServerErrorCode =
  | 'ERR_INPUT'
  | 'ERR_SSH_FORMAT'
  | 'ERR_SSH_UNSUPPORTED'
  | 'ERR_TOKEN_INVALID'
  | 'ERR_TOKEN_REPLAYED'
  | 'ERR_POLICY_DENIED'
  | 'ERR_NOT_FOUND'
  | 'ERR_NOT_IMPLEMENTED'
  | 'ERR_RATE_LIMITED'
  | 'ERR_ISSUANCE_DISABLED'
  | 'ERR_UPSTREAM_UNAVAILABLE'
  | 'ERR_STORE_UNAVAILABLE'
  | 'ERR_CA_OVERLOADED'
  | 'ERR_KEY_STORE'
  | 'ERR_INTERNAL'

/** `own`: the error's message is safe to show; a string: what the caller reads instead. */
export const SERVER_ERRORS: Record<ServerErrorCode, {status: number; message: 'own' | string}> = {
  ERR_INPUT: {status: 400, message: 'own'},
  ERR_SSH_FORMAT: {status: 400, message: 'own'},
  ERR_SSH_UNSUPPORTED: {status: 400, message: 'own'},
  ERR_TOKEN_INVALID: {
    status: 401,
    message: 'the token was rejected: it is invalid, expired or for another audience; get a new one',
  },
  // the caller holds the token: when it was spent is theirs to know (which certificate it bought is in the audit log)
  ERR_TOKEN_REPLAYED: {status: 401, message: 'own'},
  ERR_POLICY_DENIED: {status: 403, message: 'the CA policy does not allow a certificate for this request'},
  ERR_NOT_FOUND: {status: 404, message: 'own'},
  ERR_NOT_IMPLEMENTED: {status: 501, message: 'own'},
  ERR_RATE_LIMITED: {status: 429, message: 'own'},
  ERR_ISSUANCE_DISABLED: {status: 503, message: 'own'},
  ERR_UPSTREAM_UNAVAILABLE: {
    status: 503,
    message: 'the CA cannot verify tokens of this issuer right now; try again later',
  },
  ERR_CA_OVERLOADED: {status: 503, message: 'the CA is busy; try again in a second'},
  // the HSM failed to sign (token removed, session lost): the caller may retry; the detail is audited
  ERR_KEY_STORE: {status: 503, message: 'the CA cannot sign right now; try again later'},
  // a full disk or an I/O error: the detail is for the operator (the audit log, if it can still be written)
  ERR_STORE_UNAVAILABLE: {
    status: 503,
    message: 'the CA cannot record certificates right now, so it issued none; try again shortly',
  },
  ERR_INTERNAL: {status: 500, message: 'internal error'},
}

const isServerCode = (code: ErrorCode): code is ServerErrorCode => Object.hasOwn(SERVER_ERRORS, code)

/**
 * Denials whose own message the caller reads though their code's is generic. `superseded`: decided
 * only once the caller proved possession of the certificate's key (the SSHPOP token verified, in the
 * store's transaction), about that certificate alone, which anyone may see on its host (sshd shows its
 * newest certificate to every client); it says what to do next: enrol again.
 */
const CALLER_READS: ReadonlySet<DenialReason> = new Set(['superseded'])

export function httpError(err: unknown, requestId: string): {status: number; body: ErrorBody} {
  let status = 500
  let message = 'internal error'
  if (isSshcaError(err)) {
    if (isServerCode(err.code)) {
      const row = SERVER_ERRORS[err.code]
      status = row.status
      message =
        row.message === 'own' || (err instanceof DenialError && CALLER_READS.has(err.reason))
          ? err.message
          : row.message
    }
  } else {
    // fastify's own client errors: body too large (413), bad JSON (400), wrong content type (415), timeout (408)
    const sc = (err as {statusCode?: number}).statusCode
    if (typeof sc === 'number' && sc >= 400 && sc < 500) {
      status = sc
      message = (err as Error).message
    }
  }
  return {status, body: {status, message, request_id: requestId}}
}
