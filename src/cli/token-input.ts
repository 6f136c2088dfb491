/**
 * Where `sshca certificate --host --sign` gets its enrollment token. argv is readable by every local
 * user (/proc/PID/cmdline, ps) while the command runs, and a token read there can be spent first by
 * someone else's key; a file only its owner can read, standard input, or $SSHCA_TOKEN
 * (/proc/PID/environ is readable by the same user and root only) are not. --token still works, with
 * a warning. Exactly one source: two would leave a person unsure which token was used.
 */
import {SshcaError} from '../errors.ts'
import {readSecretInput} from './io.ts'

export const TOKEN_ENV = 'SSHCA_TOKEN'

export type TokenSource = {kind: 'flag'; value: string} | {kind: 'file'; path: string} | {kind: 'env'; value: string}

// Stryker disable next-line StringLiteral: the words of a warning (tests assert it is printed, not how it reads)
export const ARGV_WARNING =
  '--token puts the enrollment token on the command line, where every local user can read it (ps, /proc/PID/cmdline) while sshca runs, and spend it first with their own key. Use --token-file FILE (mode 0600), --token-file - (standard input) or $SSHCA_TOKEN.'

export function chooseTokenSource(o: {
  token?: string | undefined
  tokenFile?: string | undefined
  env?: string | undefined
}): TokenSource {
  const given: TokenSource[] = []
  if (o.token !== undefined) given.push({kind: 'flag', value: o.token})
  if (o.tokenFile !== undefined) given.push({kind: 'file', path: o.tokenFile})
  if (o.env !== undefined && o.env !== '') given.push({kind: 'env', value: o.env})
  // Stryker disable next-line StringLiteral: the names only word the usage error
  const names = {flag: '--token', file: '--token-file', env: `$${TOKEN_ENV}`}
  if (given.length === 0) {
    throw new SshcaError('ERR_USAGE', 'no enrollment token given', {
      hint: `pass --token-file FILE (or - for standard input), or set ${TOKEN_ENV}; the CA operator makes one with: sshca ca token --host HOSTNAME`,
    })
  }
  if (given.length > 1) {
    throw new SshcaError(
      'ERR_USAGE',
      `the enrollment token was given ${given.length} ways (${given.map((g) => names[g.kind]).join(', ')}); give it one way only`,
      {hint: `unset ${TOKEN_ENV} or drop a flag`},
    )
  }
  return given[0]!
}

/** The token of `src`; a token file must be readable by its owner only (it is a credential). */
export async function readEnrollmentToken(src: TokenSource): Promise<string> {
  let token: string
  if (src.kind === 'file') {
    token = await readSecretInput(src.path, 'enrollment token', '--token-file')
  } else {
    token = src.value
  }
  token = token.trim()
  if (token === '')
    throw new SshcaError(
      'ERR_INPUT',
      `the enrollment token from ${src.kind === 'file' ? (src.path === '-' ? 'standard input' : src.path) : src.kind === 'env' ? `$${TOKEN_ENV}` : '--token'} is empty`,
    )
  return token
}
