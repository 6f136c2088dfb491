/**
 * $SSHCA_HOME (default ~/.sshca, 0700): one folder per bootstrapped CA ("context") with its root and
 * settings, a `current` file naming the context in use, and the refresh-token file fallback.
 * Files 0600, folders 0700. Everything is written atomically.
 */
import {lstatSync, readFileSync, readdirSync, realpathSync} from 'node:fs'
import {join, relative, resolve} from 'node:path'
import {SshcaError} from '../../errors.ts'
import {writeFileAtomic} from '../../util/fs.ts'
import {ensureHomeLayout} from './home-layout.ts'

export function sshcaHome(env: NodeJS.ProcessEnv = process.env): string {
  // absolute: its paths go into ssh_config, which ssh would read against its own working directory
  return env.SSHCA_HOME ? resolve(env.SSHCA_HOME) : defaultHome()
}

/**
 * ~/.sshca. On POSIX $HOME first, which is what os.homedir() returns when it is set: node:os is then
 * not loaded (0.2 ms of `sshca list`, src/cli/fast.ts). Windows' os.homedir() reads USERPROFILE, not
 * HOME (which MSYS2 and Git Bash may set elsewhere): there it is asked.
 */
export const defaultHome = (): string =>
  join((process.platform !== 'win32' && process.env.HOME) || process.getBuiltinModule('node:os').homedir(), '.sshca')

export interface ContextSettings {
  name: string
  caUrl: string
  rootFingerprint: string
  /** authorized_keys lines of the CA's SSH user CA keys (from GET /ssh/roots). */
  userCaKeys: string[]
  hostCaKeys: string[]
  /** The CA's ssh.hostPattern (OpenSSH pattern list; "!*" when it names no hosts). */
  hostPattern: string
  /** The pattern `sshca config` last wrote for this context (the CA's, or narrowed by --pattern). */
  configuredPattern?: string
  /**
   * The CA's host pattern as the person last accepted it: shown by bootstrap (with its warning), or
   * the CA's when they ran config --pattern. hostPattern follows the CA without asking anyone (every
   * login refreshes it); config adopts no change of it without --pattern, and proxycommand picks a
   * context by this (or configuredPattern), never by hostPattern. Absent in contexts of older sshca.
   */
  acceptedCaPattern?: string
  bootstrappedAt: string
  /** The known_hosts file `sshca config` wrote the @cert-authority block to (context remove takes it out; login keeps it current). */
  knownHostsFile?: string
  /** What `sshca config` wrote into the managed ssh_config, so login can rewrite the block the same way. */
  sshConfig?: ContextSshConfig
  /** Set while the context keeps its certificate in files because the agent cannot hold it. */
  agentless?: {reason: string; socket: string | null; since: string}
  /**
   * The provisioner a person last signed in with: used when the CA has several and none is named, so
   * `login --ensure` and `proxycommand` (no terminal to ask on) sign in the way the person chose.
   */
  provisioner?: string
  /**
   * The (issuer, audience) pairs of the ID tokens sent to this CA: a token for one of them is good
   * there, so no other context (of another root) sends one (src/client/login/token-audiences.ts).
   */
  tokenAudiences?: TokenAudience[]
}

/** An ID token's issuer and one of its audiences: whom the token is good for. */
export interface TokenAudience {
  issuer: string
  audience: string
}

/** The managed ssh_config block of a context, as `sshca config` last wrote it. */
export interface ContextSshConfig {
  pattern: string
  krlFile: string | null
  krlNote?: string | null
  knownHostsFile?: string
  matchFinal: boolean
  loginCommand: string | null
}

export interface Context extends ContextSettings {
  rootPem: string
  dir: string
}

export const contextDir = (home: string, name: string): string => join(home, 'contexts', name)
export const CONTEXT_FILE = 'context.json'
export const ROOT_FILE = 'root_ca.crt'

export function validContextName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)
}

/** Saves a context's settings (everything but the root and the folder) atomically. */
export async function saveContext(ctx: Context): Promise<void> {
  const {rootPem: _r, dir: _d, ...settings} = ctx
  await writeFileAtomic(join(ctx.dir, CONTEXT_FILE), `${JSON.stringify(settings satisfies ContextSettings, null, 2)}\n`)
}

/** The key and certificate files of a context that works without an agent. */
export const agentlessFiles = (ctx: Pick<Context, 'dir'>): {key: string; certificate: string} => ({
  key: join(ctx.dir, 'id_sshca'),
  certificate: join(ctx.dir, 'id_sshca-cert.pub'),
})

// The home's few small files are read synchronously, as checkHomeTree reads the tree: an async read
// hands each to libuv's thread pool, which the first one starts, and `sshca list`, which needs no
// other, would pay for that on every run.

export async function currentContextName(home: string): Promise<string | undefined> {
  try {
    return readFileSync(join(home, 'current'), 'utf8').trim() || undefined
  } catch {
    // no current file (or none we can read): no context is current
  }
  return undefined
}

export async function listContexts(home: string): Promise<string[]> {
  try {
    // Stryker disable next-line MethodExpression: libuv's scandir already returns names sorted (strcmp), and context names are ASCII
    return readdirSync(join(home, 'contexts')).filter(validContextName).sort()
  } catch {
    return []
  }
}

/** Why parsed context.json text cannot be a context's settings; undefined when its fields have their types. */
export function settingsProblem(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return `${CONTEXT_FILE} is not a JSON object`
  const o = v as Record<string, unknown>
  const kind = (k: string, want: string, ok: (x: unknown) => boolean, optional = false): string | undefined =>
    (optional && o[k] === undefined) || ok(o[k]) ? undefined : `${CONTEXT_FILE}: ${k} is not ${want}`
  const text = (x: unknown): boolean => typeof x === 'string'
  const texts = (x: unknown): boolean => Array.isArray(x) && x.every(text)
  const object = (x: unknown): boolean => typeof x === 'object' && x !== null && !Array.isArray(x)
  return (
    ['name', 'caUrl', 'rootFingerprint', 'hostPattern', 'bootstrappedAt']
      .map((k) => kind(k, 'a string', text))
      .find(Boolean) ??
    ['userCaKeys', 'hostCaKeys'].map((k) => kind(k, 'a list of strings', texts)).find(Boolean) ??
    ['configuredPattern', 'acceptedCaPattern', 'knownHostsFile', 'provisioner']
      .map((k) => kind(k, 'a string', text, true))
      .find(Boolean) ??
    ['sshConfig', 'agentless'].map((k) => kind(k, 'an object', object, true)).find(Boolean) ??
    (o.sshConfig !== undefined && !text((o.sshConfig as Record<string, unknown>).pattern)
      ? `${CONTEXT_FILE}: sshConfig.pattern is not a string`
      : undefined) ??
    kind(
      'tokenAudiences',
      'a list of {issuer, audience}',
      (x) => Array.isArray(x) && x.every((a) => object(a) && text(a.issuer) && text(a.audience)),
      true,
    )
  )
}

export async function readContext(home: string, name: string): Promise<Context | undefined> {
  const dir = contextDir(home, name)
  try {
    const parsed: unknown = JSON.parse(readFileSync(join(dir, CONTEXT_FILE), 'utf8'))
    // the types checked, not trusted: a file of the wrong shape is a damaged context, never a TypeError later
    const problem = settingsProblem(parsed)
    if (problem) throw new Error(problem)
    const settings = parsed as ContextSettings
    const rootPem = readFileSync(join(dir, ROOT_FILE), 'utf8')
    return {...settings, rootPem, dir}
  } catch (err) {
    // no context.json: no context (a stray folder); its root_ca.crt missing: a damaged one
    const e = err as NodeJS.ErrnoException
    if (e.code === 'ENOENT' && e.path === join(dir, CONTEXT_FILE)) return undefined
    throw new SshcaError('ERR_INPUT', `the context "${name}" in ${dir} is damaged: ${(err as Error).message}`, {
      hint: `bootstrap it again: sshca bootstrap --context ${name} --ca-url URL --fingerprint HEX --force`,
    })
  }
}

/** What the home check needs to know of a path; undefined when it does not exist. */
export interface PathInfo {
  uid: number
  mode: number
  isDirectory: boolean
  isSymbolicLink: boolean
}

export interface HomeCheckDeps {
  lstat(path: string): PathInfo | undefined
  readdir(path: string): string[]
  realpath(path: string): string
  /** The current uid; undefined where there are none (Windows): then nothing is checked. */
  uid: number | undefined
}

export const fsDeps = (): HomeCheckDeps => ({
  lstat(path) {
    try {
      const s = lstatSync(path)
      return {uid: s.uid, mode: s.mode, isDirectory: s.isDirectory(), isSymbolicLink: s.isSymbolicLink()}
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  },
  readdir: (path) => readdirSync(path),
  realpath: (path) => realpathSync(path),
  // Stryker disable next-line OptionalChaining: getuid exists wherever the tests run (POSIX); the ?. is for Windows
  uid: process.getuid?.(),
})

/** Folders under $SSHCA_HOME whose files are secrets (refresh tokens): never readable by others. */
const SECRET_DIRS = ['tokens']

const octal = (mode: number): string => `0${(mode & 0o777).toString(8)}`

/**
 * $SSHCA_HOME decides which CA roots are trusted, which context is current, which KRL ssh reads and
 * where refresh tokens are: every entry in it must belong to the current user (or root), be writable
 * by nobody else, and be no symlink; refresh tokens must be readable by nobody else. A home that does
 * not exist yet passes (bootstrap creates it 0700). Throws ERR_UNSAFE_PATH / ERR_FILE_PERMISSIONS
 * naming the first offending path, with the command that fixes it.
 */
export function checkHomeTree(home: string, deps: HomeCheckDeps = fsDeps()): void {
  if (deps.uid === undefined) return
  const uid = deps.uid
  let root = home
  const top = deps.lstat(home)
  if (!top) return
  // Stryker disable next-line ConditionalExpression: the realpath of a home that is no symlink is the same folder, walked and named the same
  if (top.isSymbolicLink) root = deps.realpath(home)
  const visit = (path: string, depth: number, secret: boolean): void => {
    const info = deps.lstat(path)
    if (!info) return
    // Stryker disable next-line ConditionalExpression: join(home, relative(root, root)) is the home itself (normalised): only a message's words change
    const shown = path === root ? home : join(home, relative(root, path))
    if (info.isSymbolicLink) {
      throw new SshcaError(
        'ERR_UNSAFE_PATH',
        `${shown} is a symbolic link; sshca never makes one in its home, and will not follow one there`,
        {hint: `replace it with the file it points to, or remove it (rm ${shown})`},
      )
    }
    if (info.uid !== uid && info.uid !== 0) {
      throw new SshcaError(
        'ERR_UNSAFE_PATH',
        `${shown} belongs to uid ${info.uid}, not to you (uid ${uid}): that user could change which CA sshca trusts`,
        {
          hint: `if it is yours: chown -R ${uid} ${home}; otherwise point SSHCA_HOME at a folder of your own`,
        },
      )
    }
    if (info.mode & 0o022) {
      throw new SshcaError(
        'ERR_UNSAFE_PATH',
        `${shown} is writable by ${info.mode & 0o002 ? 'every user' : 'its group'} (mode ${octal(info.mode)}): another user could change which CA sshca trusts`,
        {
          hint: `chmod go-w ${shown}${info.isDirectory ? `   (sshca makes its folders 0700: chmod 700 ${shown})` : ''}`,
        },
      )
    }
    if (secret && !info.isDirectory && info.mode & 0o077) {
      throw new SshcaError(
        'ERR_FILE_PERMISSIONS',
        `${shown} holds a refresh token and is readable by others (mode ${octal(info.mode)})`,
        {hint: `chmod 600 ${shown}`},
      )
    }
    if (!info.isDirectory || depth >= 4) return
    for (const name of deps.readdir(path)) {
      const child = join(path, name)
      visit(child, depth + 1, secret || (depth === 0 && SECRET_DIRS.includes(name)))
    }
  }
  visit(root, 0, false)
}

const checkedHomes = new Set<string>()

/** checkHomeTree and ensureHomeLayout once per process and home: every command that reads the home calls this first. */
export function checkHome(home: string, deps?: HomeCheckDeps): void {
  if (checkedHomes.has(home)) return
  checkHomeTree(home, deps)
  // a home written by an older sshca is brought forward; one from a newer sshca is refused
  ensureHomeLayout(home)
  checkedHomes.add(home)
}

/** The named context, or the current one; typed errors that say how to bootstrap. */
export async function loadContext(home: string, name?: string): Promise<Context> {
  checkHome(home)
  const chosen = name ?? (await currentContextName(home))
  if (!chosen) {
    throw new SshcaError('ERR_NOT_BOOTSTRAPPED', 'no CA has been bootstrapped yet', {
      hint: 'run: sshca bootstrap --ca-url https://ca.example.com --fingerprint <root sha256>',
    })
  }
  const ctx = await readContext(home, chosen)
  if (!ctx) {
    const known = await listContexts(home)
    throw new SshcaError('ERR_CONTEXT_NOT_FOUND', `no context "${chosen}" in ${home}`, {
      hint: known.length ? `known contexts: ${known.join(', ')}` : 'run sshca bootstrap first',
    })
  }
  return ctx
}

/**
 * Every bootstrapped context's user CA keys → context name (for `sshca list`), keyed by the key's wire
 * blob in base64: the same key, compared whole, without hashing it (list's table never loads node:crypto).
 */
export async function knownUserCas(home: string): Promise<Map<string, string>> {
  checkHome(home)
  const {PublicKey} = await import('../../ssh/keys.ts')
  const out = new Map<string, string>()
  for (const name of await listContexts(home)) {
    const ctx = await readContext(home, name).catch(() => undefined)
    // Stryker disable next-line ArrayDeclaration: a stand-in line is no key, so it names no CA either
    for (const line of ctx?.userCaKeys ?? []) {
      try {
        out.set(PublicKey.parseLine(line).key.blob.toString('base64'), name)
      } catch {
        // a damaged line names no CA
      }
    }
  }
  return out
}
