/**
 * What a root service may run. `sshca config --host` writes systemd units whose ExecStart root runs
 * daily: if any file or directory on that path can be changed by a user other than root, that user
 * becomes root at the next timer (nvm, npx and home-directory installs are the usual way in). So
 * the units name the real (symlink-free) paths of node and of sshca's script, and are refused when
 *   - any component of those paths, from / down, is not owned by root, or is writable by its group or
 *     by others (a sticky directory such as /tmp is allowed: nobody but root may rename root's
 *     entries in it; the entries below must pass on their own),
 *   - anything in sshca's package (its code and node_modules, what node loads) fails the same test,
 *   - the script lives in npx's cache (root-owned with `sudo npx`, but npm may clear it any day),
 *   - or the same holds for $SSHCA_HOME, which decides which CA the service trusts.
 * The file system is passed in, so the rules are unit-tested on made-up trees.
 */
import {existsSync, lstatSync, readdirSync, readlinkSync, realpathSync} from 'node:fs'
import {dirname, isAbsolute, join, parse, resolve, sep} from 'node:path'
import {SshcaError} from '../../errors.ts'

export interface EntryInfo {
  uid: number
  mode: number
  isDirectory: boolean
  isSymbolicLink: boolean
}

export interface ExecPathDeps {
  /** lstat; undefined when the path does not exist. */
  lstat(path: string): EntryInfo | undefined
  readdir(path: string): string[]
  readlink(path: string): string
  realpath(path: string): string
}

export const realFs: ExecPathDeps = {
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
  readlink: (path) => readlinkSync(path),
  realpath: (path) => realpathSync(path),
}

export interface PathProblem {
  path: string
  why: string
}

const STICKY = 0o1000

/** Why one entry must not be trusted by a root service, or undefined. */
export function entryProblem(info: EntryInfo): string | undefined {
  if (info.uid !== 0) return `it belongs to uid ${info.uid}, not root`
  if (info.mode & 0o022 && !(info.isDirectory && info.mode & STICKY))
    return `it is writable by ${info.mode & 0o002 ? 'every user' : 'its group'} (mode 0${(info.mode & 0o7777).toString(8)})`
  return undefined
}

/** `/a/b/c` → [`/`, `/a`, `/a/b`, `/a/b/c`]. */
export function components(path: string): string[] {
  const root = parse(path).root
  const out = [root]
  let cur = root
  // Stryker disable next-line MethodExpression: on POSIX the root is "/", so splitting the whole path or dropping the filter gives the same components (join ignores an empty part)
  for (const part of path.slice(root.length).split(sep).filter(Boolean)) {
    cur = join(cur, part)
    out.push(cur)
  }
  return out
}

/**
 * The first component of `path`, from the root down, that a root service must not trust. A missing
 * component ends the walk when `allowMissing` (its parent, already checked, decides who may create it).
 */
export function pathProblem(path: string, deps: ExecPathDeps, allowMissing = false): PathProblem | undefined {
  if (!isAbsolute(path)) return {path, why: 'it is not an absolute path'}
  for (const c of components(path)) {
    const info = deps.lstat(c)
    // Stryker disable next-line StringLiteral: the words of the refusal
    if (!info) return allowMissing ? undefined : {path: c, why: 'it does not exist'}
    // Stryker disable next-line StringLiteral: the words of the refusal
    if (info.isSymbolicLink) return {path: c, why: 'it is a symbolic link (the unit must name the real path)'}
    const why = entryProblem(info)
    if (why) return {path: c, why}
  }
  return undefined
}

/**
 * Every entry below `dir` (skipping `skip` names at its top): the first one a root service must not
 * trust. A symlink is judged by where it points: every component of its target, and the target's
 * own tree when it is a directory outside those already walked.
 */
// Stryker disable next-line ArrayDeclaration: a default that names something is only skipped if a package holds an entry of that name
export function treeProblem(dir: string, deps: ExecPathDeps, skip: readonly string[] = []): PathProblem | undefined {
  const walked = new Set<string>()
  const walk = (d: string, top: boolean): PathProblem | undefined => {
    // Stryker disable next-line ConditionalExpression: two guards against walking a directory twice (this one and the prefix test on a link's target); each mutant removes one while the other holds
    if (walked.has(d)) return undefined
    walked.add(d)
    for (const name of deps.readdir(d)) {
      if (top && skip.includes(name)) continue
      const p = join(d, name)
      const info = deps.lstat(p)
      if (!info) continue
      if (info.isSymbolicLink) {
        const target = resolve(dirname(p), deps.readlink(p))
        const problem = pathProblem(target, deps, true)
        if (problem)
          return {
            path: p,
            // Stryker disable next-line ConditionalExpression,StringLiteral: the words of the refusal
            why: `it points to ${target}, and ${problem.path === target ? 'that' : problem.path}: ${problem.why}`,
          }
        const t = deps.lstat(target)
        // Stryker disable next-line MethodExpression: see the guard at the top of walk
        if (t?.isDirectory && ![...walked].some((w) => target === w || target.startsWith(w + sep))) {
          const inner = walk(deps.realpath(target), false)
          if (inner) return inner
        }
        continue
      }
      const why = entryProblem(info)
      if (why) return {path: p, why}
      if (info.isDirectory) {
        const inner = walk(p, false)
        if (inner) return inner
      }
    }
    return undefined
  }
  return walk(dir, true)
}

/** The folder of the package a script belongs to: the nearest ancestor with a package.json. */
export function packageRoot(script: string, exists: (p: string) => boolean = existsSync): string | undefined {
  for (let d = dirname(script); ; d = dirname(d)) {
    if (exists(join(d, 'package.json'))) return d
    if (dirname(d) === d) return undefined
  }
}

export interface InstalledSshca {
  node: string
  /** Undefined for a single executable (node and sshca in one file). */
  script: string | undefined
  packageRoot: string | undefined
  /** The ExecStart prefix: the real paths, space-separated. */
  command: string
}

/** This process's node and sshca script by their real paths. */
export function installedSshca(
  deps: ExecPathDeps = realFs,
  execPath: string = process.execPath,
  argv1: string | undefined = process.argv[1],
  exists?: (p: string) => boolean,
): InstalledSshca {
  const node = deps.realpath(execPath)
  const script = argv1 ? deps.realpath(argv1) : undefined
  const own = script && script !== node ? script : undefined
  const root = own ? packageRoot(own, exists) : undefined
  return {node, script: own, packageRoot: root, command: own ? `${node} ${own}` : node}
}

const SYSTEMD_SAFE = /^[A-Za-z0-9._/@+-]+$/

/**
 * Refuses (ERR_UNSAFE_PATH, naming the path) a unit that root would run from anything another user
 * can change; see the module comment for the rules. Returns the home the units must name: its real
 * path, the folder that was checked. The path given may lead there through a link that another user
 * can change (a link in their folder, or a folder of theirs above it): a unit naming that path would
 * follow the link wherever it is pointed later, to a home (a CA) of theirs.
 */
export function assertSafeForRoot(exe: InstalledSshca, home: string, deps: ExecPathDeps = realFs): string {
  const fail = (p: PathProblem, what: string, hint: string): never => {
    throw new SshcaError(
      'ERR_UNSAFE_PATH',
      `refusing to write a root service that runs ${what}: ${p.path} is unsafe (${p.why})`,
      {details: {path: p.path}, hint},
    )
  }
  // Stryker disable next-line StringLiteral: the words of a hint
  const install =
    'install sshca where only root can write (sudo npm install -g sshca, or the package of your distribution) and run `sudo sshca config --host` from there'
  for (const p of [exe.node, exe.script]) {
    if (p !== undefined && !SYSTEMD_SAFE.test(p))
      fail({path: p, why: 'its name has characters a unit file would have to quote'}, exe.command, install)
  }
  if (exe.script?.split(sep).includes('_npx'))
    fail({path: exe.script, why: "it is in npx's cache, which npm clears"}, exe.command, install)
  const node = pathProblem(exe.node, deps)
  if (node) fail(node, exe.command, install)
  if (exe.script) {
    const script = pathProblem(exe.script, deps)
    if (script) fail(script, exe.command, install)
  }
  if (exe.packageRoot) {
    const tree = treeProblem(exe.packageRoot, deps, ['.git'])
    if (tree) fail(tree, exe.command, install)
  }
  const realHome = deps.lstat(home) ? deps.realpath(home) : home
  const h = pathProblem(realHome, deps) ?? treeProblem(realHome, deps)
  if (h)
    fail(
      h,
      `with SSHCA_HOME=${home}`,
      // Stryker disable next-line StringLiteral: the words of a hint
      'bootstrap the CA as root into a home only root can write (sudo sshca bootstrap …, SSHCA_HOME unset or root-owned), then run sudo sshca config --host',
    )
  for (const p of [home, realHome]) {
    if (!SYSTEMD_SAFE.test(p))
      fail(
        {path: p, why: 'its name has characters a unit file would have to quote'},
        `with SSHCA_HOME=${home}`,
        'use a home without spaces or special characters',
      )
  }
  return realHome
}
