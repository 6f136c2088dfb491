/**
 * How a failed command looks to a person (stderr) or a script (--json on stdout), and its exit code.
 * Used by the oclif base command and the fast path alike, so both fail the same way.
 */
import {isSshcaError, SshcaError} from '../errors.ts'
import {terminalText} from '../util/text.ts'
import {EXIT, EXIT_CODES} from './exit-codes.ts'

export interface ErrorJson {
  error: {code: string; message: string; hint?: string; details?: Record<string, unknown>}
}

export function toSshcaError(err: unknown): SshcaError {
  if (isSshcaError(err)) return err
  const message = err instanceof Error ? err.message : String(err)
  return new SshcaError('ERR_INTERNAL', `unexpected failure: ${message}`, {
    cause: err,
    hint: 'run again with DEBUG=sshca to see where it failed, and report it if it persists',
  })
}

export function exitCodeFor(err: SshcaError): number {
  return EXIT_CODES[err.code] ?? EXIT.INTERNAL
}

export function errorJson(err: SshcaError): ErrorJson {
  return {
    error: {
      code: err.code,
      message: err.message,
      ...(err.hint ? {hint: err.hint} : {}),
      ...(err.details ? {details: err.details} : {}),
    },
  }
}

/** The message on stderr; a message names what it was given (a file, a key ID, an upstream's words): terminalText. */
export function errorText(err: SshcaError, debug = Boolean(process.env.DEBUG)): string {
  let out = `Error [${err.code}]: ${err.message}\n`
  if (err.hint) out += `  → ${err.hint}\n`
  if (debug && err.stack) out += `${err.stack}\n`
  return terminalText(out)
}
