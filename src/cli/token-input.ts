/**
 * Where `sshca certificate --host --sign` gets its enrollment token. argv is readable by every local
 * user (/proc/PID/cmdline, ps) while the command runs, and a token read there can be spent first by
 * someone else's key; a file only its owner can read, standard input, or $SSHCA_TOKEN
 * (/proc/PID/environ is readable by the same user and root only) are not. --token still works, with
 * a warning. Exactly one source: two would leave a person unsure which token was used.
 */
import {readFileSync} from 'node:fs'
import {basename} from 'node:path'
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

/** A process as /proc shows it to everyone: its parent and its command line. */
export interface ProcessView {
  ppid: number
  argv: string[]
}

/** Linux's /proc view of process `pid`, or undefined (gone, not Linux). */
function procView(pid: number): ProcessView | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // "pid (comm) state ppid …": the name may hold spaces and parentheses, the last ")" ends it
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    return {ppid, argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')}
  } catch {
    return undefined
  }
}

/**
 * The process above this one (up to 16 generations) whose command line holds `token`, or undefined.
 * `sudo SSHCA_TOKEN="$T" sshca …` keeps the token in sudo's own argv — readable by every local user
 * (ps, /proc/PID/cmdline) for as long as sudo waits for sshca — though sshca reads it from its
 * environment: the token is exposed before sshca starts, and sshca can only say so (SECURITY.md
 * client row 1b). Where there is no /proc, undefined.
 */
export function tokenOnAncestorCommandLine(
  token: string,
  view: (pid: number) => ProcessView | undefined = procView,
  first = process.ppid,
): {pid: number; command: string} | undefined {
  // a few characters (an empty or mistyped value) would be found in any command line by chance; a
  // token is hundreds long, and one this short is refused as empty or invalid anyway
  if (token.length < 16) return undefined
  for (let pid = first, depth = 0; pid > 1 && depth < 16; depth++) {
    const p = view(pid)
    if (!p) return undefined
    if (p.argv.some((a) => a.includes(token))) return {pid, command: basename(p.argv[0] || '?')}
    pid = p.ppid
  }
  return undefined
}

/** The warning for an ancestor holding $SSHCA_TOKEN's token on its command line (tokenOnAncestorCommandLine). */
export const ancestorArgvWarning = (a: {pid: number; command: string}): string =>
  `the enrollment token in $${TOKEN_ENV} is also on the command line of ${a.command} (pid ${a.pid}), the process that started sshca: every local user can read it there (ps, /proc/PID/cmdline) while that process runs, and may spend it first with their own key. If the CA then says the token was already used, ask for a new one; bind tokens to the host key (sshca ca token --host NAME --key FILE). Next time pass it on standard input: printf %s "$TOKEN" | sudo sshca certificate ... --token-file -`
