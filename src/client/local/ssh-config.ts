/**
 * sshca's managed ssh_config: `$SSHCA_HOME/ssh_config`, one marked block per context, and one
 * `Include` of it at the top of ~/.ssh/config. A block holds two `Match` sections for the context's
 * host pattern:
 *   1. what ssh needs to judge the host: `RevokedHostKeys` (the context's KRL, so ssh refuses a
 *      revoked host certificate) and `UserKnownHostsFile` when the @cert-authority lines live in a
 *      file ssh would not read by itself. No `exec` here: a Match whose exec fails does not apply,
 *      and a failed login must never switch revocation checking off.
 *   2. `exec "sshca login --ensure --quiet --context C"`: ssh runs it while reading its config, before
 *      it connects; it returns at once when a valid certificate of C is at hand, and signs in
 *      otherwise (prompts on the terminal, never on ssh's stdout). Unlike a ProxyCommand it runs
 *      once per `ssh`, so ControlMaster/ControlPersist keep working. When the context works without
 *      an agent, the section also names the key and certificate files (IdentityFile, CertificateFile).
 *
 * Why under $SSHCA_HOME and not ~/.ssh/sshca/config: everything the block points at (the KRL, the
 * settings) lives there, the home check covers it (owner, mode), and two homes never share a file.
 *
 * `Match final host`: with a plain `Match host`, ssh compares the name as typed while known_hosts is
 * searched under the HostName an alias resolves to (`Host web` → `HostName web.example.com`), so the
 * revocation list would be skipped for aliases. `final` (OpenSSH ≥ 8.0) matches after HostName and
 * canonicalization; older ssh rejects the keyword, so `sshca config` asks `ssh -V` first.
 */
import {spawnSync} from 'node:child_process'
import {readdir, readFile, stat} from 'node:fs/promises'
import {homedir} from 'node:os'
import {dirname, isAbsolute, join, resolve as resolvePath} from 'node:path'
import {SshcaError} from '../../errors.ts'
import {exists, writeFileAtomic} from '../../util/fs.ts'
import {agentlessFiles, readContext, saveContext, type Context} from '../home/home.ts'
import {beginMarker, endMarker, mergeManagedBlock} from './known-hosts.ts'
import {withSettingsLock} from '../home/settings-lock.ts'

export const SSH_CONFIG_FILE = 'ssh_config'

export const managedSshConfigPath = (home: string): string => join(home, SSH_CONFIG_FILE)

/**
 * One path argument of an ssh_config line: double-quoted when it holds whitespace, `#` or `'` (which
 * would start a comment or a quote). Refused when ssh would read it as another path: a double quote
 * or a newline; a backslash that ssh 8.7+ reads as an escape (before `\\`, `'`, `"`, a space or the
 * closing quote; older ssh reads backslashes as they are, so no escaping means the same to both);
 * `%` or `${`, which ssh expands in IdentityFile, CertificateFile and UserKnownHostsFile.
 */
export function configArg(value: string): string {
  if (/["\r\n\0%]|\\(?=[\\'" ]|$)|\$\{/.test(value))
    throw new SshcaError(
      'ERR_INPUT',
      `the path ${JSON.stringify(value)} cannot be written into an ssh_config (ssh would read another path: it holds a double quote, a newline, %, \${ or a backslash ssh reads as an escape)`,
      {hint: 'keep $SSHCA_HOME and the files you name on paths without those characters'},
    )
  return /[\s#']/.test(value) ? `"${value}"` : value
}

export interface SshConfigBlockOptions {
  context: string
  /** The OpenSSH pattern list the block applies to (already validated). */
  pattern: string
  /** The context's KRL; null when there is none (the block then says why in a comment). */
  krlFile: string | null
  /** Why there is no KRL, for that comment. */
  krlNote?: string | null
  /** A known_hosts file ssh would not read by itself (set with config --known-hosts). */
  knownHostsFile?: string
  /** `Match final host` (OpenSSH ≥ 8.0) instead of `Match host`. */
  matchFinal: boolean
  /** The command ssh runs to log in when needed (see ensureCommand); null: no automatic login. */
  loginCommand?: string | null
  /**
   * The context's key and certificate files, for when it works without an agent. Always named: ssh
   * skips files that do not exist, and login may write them while ssh is still reading this block.
   */
  identityFiles?: {key: string; certificate: string} | null
}

/** The block's lines, markers included (no line terminators). */
export function sshConfigBlockLines(o: SshConfigBlockOptions): string[] {
  const match = `Match ${o.matchFinal ? 'final ' : ''}host ${o.pattern}`
  const lines = [beginMarker(o.context), match]
  if (o.krlFile) {
    lines.push(
      "  # the CA's revocation list: ssh refuses the host certificates it revoked (refreshed by sshca config and sshca login)",
    )
    lines.push(`  RevokedHostKeys ${configArg(o.krlFile)}`)
  } else {
    lines.push(
      `  # no RevokedHostKeys: ${(o.krlNote ?? 'the CA publishes no revocation list').replace(/[\r\n]+/g, ' ')}`,
    )
  }
  if (o.knownHostsFile) {
    lines.push('  # the @cert-authority lines of this context are in a file ssh does not read by default')
    lines.push(`  UserKnownHostsFile ${configArg(o.knownHostsFile)} ~/.ssh/known_hosts ~/.ssh/known_hosts2`)
  }
  const files = o.identityFiles
    ? [
        "  # used when the ssh-agent cannot hold this context's certificate (login then writes these 0600 files)",
        `  IdentityFile ${configArg(o.identityFiles.key)}`,
        `  CertificateFile ${configArg(o.identityFiles.certificate)}`,
      ]
    : []
  if (o.loginCommand) {
    if (/["\r\n\0]/.test(o.loginCommand))
      throw new TypeError('the login command cannot hold a double quote or a newline')
    lines.push(`${match} exec "${o.loginCommand}"`)
    lines.push(
      `  # ssh runs this before connecting: it returns at once while a valid certificate of "${o.context}" is at hand, else signs in`,
    )
    lines.push(...files)
  } else {
    lines.push(...files)
  }
  lines.push(endMarker(o.context))
  return lines
}

/** Characters a path may hold inside the login command without quoting (for ssh_config and the shell). */
const PLAIN = /^[A-Za-z0-9._/@+=:,%-]+$/

/**
 * One word of the command ssh's `Match exec` hands to the shell: single-quoted when it holds spaces;
 * `%` doubled (ssh expands %h, %p … in it); refused when it holds what neither ssh_config's double
 * quotes nor the shell's single quotes can carry plainly.
 */
export function execWord(word: string): string {
  if (word === '' || /["'\\$`\r\n\0]/.test(word)) {
    throw new SshcaError(
      'ERR_UNSAFE_PATH',
      `${JSON.stringify(word)} cannot go into an ssh_config Match exec (it holds a quote, a backslash, a $ or a newline)`,
      {
        hint: 'install sshca and keep $SSHCA_HOME on paths without those characters, or use sshca config --no-auto-login',
      },
    )
  }
  const escaped = word.replace(/%/g, '%%')
  return PLAIN.test(word) ? escaped : `'${escaped}'`
}

/**
 * The `Match exec` command: this sshca (node and script by their real paths, so ssh finds it without
 * PATH), its home when it is not the default, `login --ensure --quiet --context C`, and a token file
 * when one was configured (machines whose identity token is kept fresh by something else).
 */
export function ensureCommand(o: {
  command: string[]
  home: string
  defaultHome: string
  context: string
  identityTokenFile?: string | undefined
}): string {
  const words = [
    ...(o.home === o.defaultHome ? [] : ['env', `SSHCA_HOME=${o.home}`]),
    ...o.command,
    'login',
    '--ensure',
    '--quiet',
    '--context',
    o.context,
    ...(o.identityTokenFile ? ['--identity-token-file', o.identityTokenFile] : []),
  ]
  return words.map(execWord).join(' ')
}

/** The managed file without the context's block (context remove); unchanged when it has none. */
export function removeSshConfigBlock(existing: string, context: string): {text: string; changed: boolean} {
  return mergeManagedBlock(existing, context, () => '', 'the sshca ssh_config')
}

/** Whether the managed file holds a block for the context. */
export const hasSshConfigBlock = (text: string, context: string): boolean => sshConfigBlock(text, context) !== undefined

/** The lines of the context's block, between its markers; undefined when the file has no such block. */
export function sshConfigBlock(text: string, context: string): string[] | undefined {
  const lines = text.split(/\r?\n/)
  const begin = lines.indexOf(beginMarker(context))
  if (begin < 0) return undefined
  // up to its end marker; one that was lost ends at the next block's (or at the end of the file)
  const end = lines.findIndex((l, i) => i > begin && (l === endMarker(context) || l.startsWith(BLOCK_BEGIN)))
  // Stryker disable next-line EqualityOperator: a line found after the begin marker is never line 0
  return lines.slice(begin + 1, end < 0 ? lines.length : end)
}

/** How every block's begin marker starts (beginMarker). */
const BLOCK_BEGIN = '# >>> sshca '

/**
 * The first word of an ssh_config argument as ssh 8.7+ reads it: quotes (double or single) removed,
 * `\\`, `\'`, `\"` and (unquoted) `\ ` unescaped, a `#` starting a word a comment; null when there is
 * no word or a quote is left open.
 */
export function configWord(rest: string): string | null {
  const s = rest.trimStart()
  if (s === '' || s.startsWith('#')) return null
  let out = ''
  let quote: string | null = null
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!
    const next = s[i + 1]
    // Stryker disable next-line ConditionalExpression: a trailing backslash is kept either way (no escape character follows it); the check is for the types
    if (c === '\\' && next !== undefined && (`\\'"`.includes(next) || (quote === null && next === ' '))) {
      out += next
      i++
    } else if (quote !== null) {
      if (c === quote) quote = null
      else out += c
    } else if (c === '"' || c === "'") quote = c
    else if (c === ' ' || c === '\t') break
    else out += c
  }
  return quote === null ? out : null
}

/** The file a block's RevokedHostKeys names (ssh takes the first), or null when it names none (or `none`). */
export function revokedHostKeysOf(block: readonly string[]): string | null {
  for (const line of block) {
    // Stryker disable next-line Regex: `.*` ends at the line's end anyway, and configWord skips the blanks a single \s leaves
    const m = /^\s*([A-Za-z]+)(?:\s*=\s*|\s+)(.*)$/.exec(line)
    if (!m || m[1]!.toLowerCase() !== 'revokedhostkeys') continue
    const word = configWord(m[2]!)
    return word === null || word.toLowerCase() === 'none' ? null : word
  }
  return null
}

const HEADER = [
  "# sshca's ssh_config (written by `sshca config`; included from ~/.ssh/config): one block per context,",
  '# each replaced in place. ssh keeps the first value it reads for a setting, and these are `Match final`',
  "# sections, read in ssh's last pass: a Host or Match section elsewhere that sets the same comes first",
  '# (sshca config warns of a RevokedHostKeys). Put your own settings in ~/.ssh/config, not here.',
]

/** The managed file with the context's block replaced (or added). */
export function mergeSshConfig(
  existing: string,
  o: SshConfigBlockOptions,
): {text: string; changed: boolean; block: string} {
  const block = (eol: string): string => sshConfigBlockLines(o).join(eol) + eol
  const base = existing === '' ? `${HEADER.join('\n')}\n` : existing
  const merged = mergeManagedBlock(base, o.context, block, 'the sshca ssh_config')
  return {...merged, changed: merged.text !== existing, block: block('\n')}
}

export const INCLUDE_MARKER =
  '# Added by `sshca config`: its per-context settings (RevokedHostKeys …); keep this line first.'

/** The Include line for the managed file; refused for a path ssh would read as a pattern (`*`, `?`, `[`). */
export function includeLine(file: string): string {
  if (/[*?[]/.test(file))
    throw new SshcaError(
      'ERR_INPUT',
      `${JSON.stringify(file)} cannot be included from ~/.ssh/config: ssh reads *, ? and [ in an Include as a pattern`,
      {hint: 'keep $SSHCA_HOME on a path without those characters'},
    )
  return `Include ${configArg(file)}`
}

/** The directive of a line, lower-cased, and its argument with quotes removed. */
function directive(line: string): {key: string; arg: string} | undefined {
  const m = /^\s*([A-Za-z]+)(?:\s*=\s*|\s+)(.*?)\s*$/.exec(line)
  if (!m) return undefined
  let arg = m[2]!
  const quoted =
    arg.startsWith('"') &&
    arg.endsWith('"') &&
    // Stryker disable next-line ConditionalExpression,EqualityOperator: a lone `"` would become "", and "" stays `""`: neither is a file sshca includes
    arg.length >= 2
  if (quoted) arg = arg.slice(1, -1)
  return {key: m[1]!.toLowerCase(), arg}
}

/**
 * ~/.ssh/config with exactly one `Include <file>` before any Host or Match line (so it applies to
 * every host and comes first). Unchanged when it is already there; otherwise every copy of it (and
 * its marker) is removed and marker + Include are put on top. Every other byte is kept.
 */
export function mergeInclude(existing: string, file: string): {text: string; changed: boolean} {
  const eol = existing.includes('\r\n') ? '\r\n' : '\n'
  // lines with their own terminators (as mergeManagedBlock splits them); "" has none
  // Stryker disable next-line Regex: the last alternative can only match at the end anyway (the first takes every line with a LF)
  const lines = existing.match(/[^\n]*\n|[^\n]+$/g) ?? []
  // Stryker disable next-line Regex: a line holds one LF at most, at its end, so the "$" changes nothing
  const bare = (l: string): string => l.replace(/\r?\n$/, '')
  const isOurs = (l: string): boolean => {
    const d = directive(bare(l))
    return d !== undefined && d.key === 'include' && d.arg === file
  }
  const firstSection = lines.findIndex((l) => {
    const d = directive(bare(l))
    return d !== undefined && (d.key === 'host' || d.key === 'match')
  })
  const ours = lines.flatMap((l, i) => (isOurs(l) ? [i] : []))
  // Stryker disable next-line EqualityOperator: a line is never both the Include and a Host/Match (<= is the same)
  if (ours.length === 1 && (firstSection < 0 || ours[0]! < firstSection)) return {text: existing, changed: false}
  const kept = lines.filter((l) => !isOurs(l) && bare(l) !== INCLUDE_MARKER)
  // always a change: the Include was missing, doubled, or after a section, and now is once, on top
  return {text: `${INCLUDE_MARKER}${eol}${includeLine(file)}${eol}${kept.join('')}`, changed: true}
}

/** The local ssh's version from `ssh -V`, or undefined when there is no ssh to ask. */
export function localSshVersion(): {major: number; minor: number} | undefined {
  try {
    // Stryker disable next-line ObjectLiteral: see the two options below; the timeout only bounds a hung ssh
    const r = spawnSync('ssh', ['-V'], {
      // Stryker disable next-line StringLiteral: without an encoding the output is a Buffer, which the template below decodes as utf8 all the same
      encoding: 'utf8',
      timeout: 5000,
      // Stryker disable next-line ArrayDeclaration: ssh -V reads no input, and pipes are the default for its output
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    // a stream that could not be read is null, "null" here, which names no version either
    const m = /OpenSSH_(?:for_Windows_)?(\d+)\.(\d+)/.exec(`${r.stderr}${r.stdout}`)
    return m ? {major: Number(m[1]), minor: Number(m[2])} : undefined
  } catch {
    // no ssh to ask: an unknown version
  }
  return undefined
}

/** `Match final` is understood from OpenSSH 8.0 on; an unknown ssh is assumed current. */
export function supportsMatchFinal(v: {major: number; minor: number} | undefined): boolean {
  return v === undefined || v.major >= 8
}

/** Where a `RevokedHostKeys` is set that ssh may take before the one in sshca's block. */
export interface ShadowingLine {
  file: string
  line: number
  /** The section it is in (`Host *`, `Match user alice`), or null at the top of the file. */
  section: string | null
}

/**
 * The `RevokedHostKeys` lines ssh may read before sshca's block applies. ssh keeps the first value it
 * obtains. sshca's block is a `Match final` section, matched in the pass after HostName and
 * canonicalization; every other section (`Host`, a `Match` without `final` or `canonical`) is read in
 * the pass before, wherever it stands, and so is the system's ssh_config (read after the user's in
 * each pass): a RevokedHostKeys there wins for the hosts its section matches, and ssh checks that list
 * instead of the CA's, accepting a host certificate the CA revoked. A `Match final` (or `canonical`)
 * section, or a file included from one, is read in the last pass only: it wins only when ssh reads it
 * before sshca's Include (a file included above it). With `matchFinal` false (ssh older than 8.0)
 * sshca's block is a `Match host` section of the first pass: only what comes before its Include wins.
 * Which hosts a section matches is ssh's to say, and `ssh -G` would run the Match exec lines
 * (signing in), so every such line is reported. Lines are split as ssh splits them (quotes, `=`);
 * Include lines are followed as ssh follows them (relative paths from ~/.ssh, or /etc/ssh for the
 * system's files; `~/`; `*`, `?` and `[...]` in any part of the path); a file that is not a regular
 * file (a FIFO, a device) is not read.
 */
export async function shadowingRevokedHostKeys(o: {
  userConfig: string
  sshDir: string
  managedFile: string
  systemConfig?: string
  /** ~/.ssh/config as it is, or will be once written (sshca's Include on top); read from userConfig when absent. */
  userText?: string
  /** Whether sshca's block is a `Match final` section (the default) or a `Match host` one (ssh before 8.0). */
  matchFinal?: boolean
}): Promise<ShadowingLine[]> {
  const found = new Map<string, ShadowingLine>()
  const managed = resolvePath(o.managedFile)
  const matchFinal = o.matchFinal ?? true
  const home = dirname(o.sshDir)
  // sshca's Include met yet, in ssh's reading order
  let reached = false
  const seen = new Set<string>()
  const scan = async (file: string, base: string, depth: number, inLastPass: boolean, text?: string): Promise<void> => {
    const path = resolvePath(file)
    // ssh stops at 16 levels of Include; a file read again in the same state adds nothing
    const key = `${path}\0${inLastPass}\0${reached}`
    if (seen.has(key) || depth > 16) return
    seen.add(key)
    const lines = (text ?? (await readRegularFile(path))).split(/\r?\n/)
    let lastPassOnly = inLastPass
    let section: string | null = null
    for (let i = 0; i < lines.length; i++) {
      const d = configLine(lines[i]!)
      if (!d) continue
      if (d.key === 'host' || d.key === 'match') {
        lastPassOnly = inLastPass || (d.key === 'match' && lastPassMatch(d.args))
        section = `${d.key === 'host' ? 'Host' : 'Match'} ${d.args.join(' ')}`
      } else if (d.key === 'revokedhostkeys') {
        const shadows = reached ? matchFinal && !lastPassOnly : matchFinal || !lastPassOnly
        if (shadows) found.set(`${path}:${i + 1}`, {file: path, line: i + 1, section})
      } else if (d.key === 'include') {
        for (const word of d.args) {
          const target =
            word === '~' || word.startsWith('~/')
              ? join(home, word.slice(1))
              : isAbsolute(word)
                ? word
                : join(base, word)
          for (const f of await expandGlob(target)) {
            if (resolvePath(f) === managed) reached = true
            else await scan(f, base, depth + 1, lastPassOnly)
          }
        }
      }
    }
  }
  await scan(o.userConfig, o.sshDir, 0, false, o.userText)
  if (!reached) {
    // no Include of sshca's file (yet): read as if it were on top, where sshca config puts it
    found.clear()
    seen.clear()
    reached = true
    await scan(o.userConfig, o.sshDir, 0, false, o.userText)
  }
  const system = o.systemConfig ?? '/etc/ssh/ssh_config'
  await scan(system, dirname(system), 0, false)
  return [...found.values()]
}

/** A line of an ssh_config as ssh splits it: its keyword (lower case; quotes in it dropped) and its arguments. */
function configLine(line: string): {key: string; args: string[]} | undefined {
  const m = /^[ \t\f]*([^ \t\f=]+)[ \t\f]*=?[ \t\f]*(.*)$/.exec(line.replace(/\r$/, ''))
  if (!m || m[1]!.startsWith('#')) return undefined
  return {key: m[1]!.replaceAll('"', '').toLowerCase(), args: splitArgs(m[2]!)}
}

/** Arguments as ssh's argv_split reads them: "" and '' quotes, \\ escapes, a word starting with # ends the line. */
function splitArgs(s: string): string[] {
  const out: string[] = []
  let i = 0
  while (i < s.length) {
    while (s[i] === ' ' || s[i] === '\t') i++
    if (i >= s.length || s[i] === '#') break
    let word = ''
    let quote = ''
    for (; i < s.length; i++) {
      const c = s[i]!
      const n = s[i + 1]
      if (c === '\\' && (n === "'" || n === '"' || n === '\\' || (quote === '' && n === ' '))) word += s[++i]
      else if (quote === '' && (c === ' ' || c === '\t')) break
      else if (quote === '' && (c === '"' || c === "'")) quote = c
      else if (quote !== '' && c === quote) quote = ''
      else word += c
    }
    out.push(word)
  }
  return out
}

/** Whether a Match line applies in ssh's last pass only: a `final` or `canonical` criterion, not negated. */
function lastPassMatch(args: readonly string[]): boolean {
  let last = false
  for (let i = 0; i < args.length; i++) {
    const w = args[i]!.toLowerCase()
    if (w === 'final' || w === 'canonical') last = true
    // the criteria without an argument; every other one takes the next word (`host final` is a host)
    else if (w !== 'all' && w !== '!final' && w !== '!canonical' && w !== '!all') i++
  }
  return last
}

/** The text of a regular file; nothing for one that cannot be read, or is a FIFO or a device (which could block or never end). */
async function readRegularFile(path: string): Promise<string> {
  const st = await stat(path).catch(() => undefined)
  return st?.isFile() ? readFile(path, 'utf8').catch(none) : ''
}

/** The files a path names as glob(3) reads it (`*`, `?`, `[...]` in any part; no leading dot matched), sorted. */
async function expandGlob(path: string): Promise<string[]> {
  const parts = path.split('/')
  if (!parts.some((p) => /[*?[]/.test(p))) return [path]
  let found = [parts[0] === '' ? '/' : parts[0]!]
  for (const part of parts.slice(1)) {
    if (part === '') continue
    if (!/[*?[]/.test(part)) {
      found = found.map((d) => join(d, part))
      continue
    }
    const pattern = globPart(part)
    const next: string[] = []
    for (const dir of found) {
      const entries = await readdir(dir).catch((): string[] => [])
      for (const e of entries)
        if (pattern.test(e) && !(e.startsWith('.') && !part.startsWith('.'))) next.push(join(dir, e))
    }
    found = next
  }
  return found.sort()
}

/** One part of a glob(3) pattern as a regular expression. */
function globPart(p: string): RegExp {
  const esc = (c: string): string => c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')
  let re = ''
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!
    if (c === '\\' && i + 1 < p.length) re += esc(p[++i]!)
    else if (c === '*') re += '.*'
    else if (c === '?') re += '.'
    else if (c === '[') {
      let j = i + 1
      const negate = p[j] === '!' || p[j] === '^'
      if (negate) j++
      let body = ''
      if (p[j] === ']') body += esc(p[j++]!)
      for (; j < p.length && p[j] !== ']'; j++) body += p[j] === '-' ? '-' : esc(p[j]!)
      if (j >= p.length) re += esc(c)
      else {
        re += `[${negate ? '^' : ''}${body}]`
        i = j
      }
    } else re += esc(c)
  }
  return new RegExp(`^${re}$`, 's')
}

/** A file that cannot be read holds nothing ssh would read. */
// Stryker disable next-line StringLiteral: any stand-in without the block or the Include reads as not installed
const none = (): string => ''

/** Whether ssh would read this context's block: it is in the managed file, and ~/.ssh/config includes that file. */
export async function sshConfigInstalled(
  home: string,
  context: string,
  sshDir: string = join(homedir(), '.ssh'),
): Promise<{block: boolean; include: boolean; file: string; userConfig: string; revokedHostKeys: string | null}> {
  const file = managedSshConfigPath(home)
  const userConfig = join(sshDir, 'config')
  const [text, user] = await Promise.all([readFile(file, 'utf8').catch(none), readFile(userConfig, 'utf8').catch(none)])
  const block = sshConfigBlock(text, context)
  return {
    block: block !== undefined,
    revokedHostKeys: block ? revokedHostKeysOf(block) : null,
    // mergeInclude always adds the Include to an empty (or missing) ~/.ssh/config
    include: !mergeInclude(user, file).changed,
    file,
    userConfig,
  }
}

/**
 * After login fetched a KRL: a block `sshca config` wrote when there was none (the CA published
 * none yet, or the fetch failed), or one that names another file, names the context's list now, so
 * ssh refuses revoked host certificates without waiting for the next `sshca config`. Under the
 * settings lock, against what is on disk then: a block or context removed meanwhile stays removed,
 * and the list must exist (ssh refuses every host of the pattern when the file is missing). Returns
 * the managed file when it changed it.
 */
export async function enableRevokedHostKeys(home: string, ctx: Context, krlFile: string): Promise<string | null> {
  const file = managedSshConfigPath(home)
  // no block, or one that names the list already (most logins): nothing to write, no lock to take
  const needed = (text: string): boolean => {
    const block = sshConfigBlock(text, ctx.name)
    return block !== undefined && revokedHostKeysOf(block) !== krlFile
  }
  // Stryker disable next-line ConditionalExpression: the same check is made again under the lock; this one only spares taking it
  if (!needed(await readFile(file, 'utf8').catch(none))) return null
  return withSettingsLock(home, async () => {
    const text = await readFile(file, 'utf8').catch(none)
    if (!needed(text)) return null
    // the settings as saved now; none: the context was removed (or never configured) meanwhile
    const saved = await readContext(home, ctx.name)
    if (!saved?.sshConfig || !(await exists(krlFile))) return null
    const settings = {...saved.sshConfig, krlFile, krlNote: null}
    const merged = mergeSshConfig(text, {context: ctx.name, ...settings, identityFiles: agentlessFiles(saved)})
    await writeFileAtomic(file, merged.text, 0o600)
    await saveContext({...saved, sshConfig: settings})
    return file
  })
}
