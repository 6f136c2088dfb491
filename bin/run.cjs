#!/usr/bin/env node
// sshca entry point. Daily commands take a path that skips importing @oclif/core (see src/cli/fast.ts):
// one bundle each in dist/fast/ (scripts/bundle-fast.ts). CommonJS: an ES module entry sets up Node's
// ES module loader first, 0.8 ms of `sshca list`'s start, which the bundles never need (bin/run.js,
// the entry of sshca 0.1's installed units and scripts, imports this file).
// No static imports: the Node.js version is checked before anything that a too-old Node cannot load.
// 22.16: node:sqlite unflagged with DatabaseSync#isTransaction (the CA's store); package.json's engines says the same
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 16)) {
  const message = `sshca needs Node.js 22.16 or newer; this is ${process.version} (${process.execPath})`
  const hint = 'install Node.js 22 or 24 (nodejs.org, your package manager, or `nvm install 24`) and run sshca again'
  if (process.argv.includes('--json'))
    process.stdout.write(`${JSON.stringify({error: {code: 'ERR_NODE_VERSION', message, hint}}, null, 2)}\n`)
  // \u2192, the arrow: one character outside ASCII makes V8 hold this whole file as UTF-16, slower to read each start
  else process.stderr.write(`Error [ERR_NODE_VERSION]: ${message}\n  \u2192 ${hint}\n`)
  process.exit(9)
}
// a reader that stops early (`sshca ca --help | head -1`) closes the pipe: that ends the command, quietly
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0)
  throw err
})
// built-in modules through getBuiltinModule: an ES import of one builds a facade that loads all of it
const {enableCompileCache, createRequire} = process.getBuiltinModule('node:module')
const cacheDir = privateCompileCache()
if (cacheDir !== false) enableCompileCache?.(cacheDir)
const argv = process.argv.slice(2)
// list, login, proxycommand: their bundle (CommonJS, scripts/bundle-fast.ts says why); anything else (--version): src/cli/fast.ts
const bundled = argv[0] === 'list' || argv[0] === 'login' || argv[0] === 'proxycommand'
const bundle = bundled ? loadBundle(argv[0]) : undefined
void (async () => {
  const {tryFastPath} = bundle?.exports ?? (await import('../dist/cli/fast.js'))
  const fast = await tryFastPath(argv)
  bundle?.keepCode()
  // list and login are over when they return: exit once their output is written rather than wait while
  // Node frees its heap object by object (~1.5 ms of a token login). proxycommand's relay may still be
  // running (it ends with ssh's connection); anything else goes to oclif.
  if (fast && (argv[0] === 'list' || argv[0] === 'login')) exitAfterOutput()
  if (!fast) {
    const {execute} = await import('@oclif/core')
    // no plugins but sshca's own: oclif would otherwise load "user" and "link" plugins named in
    // $XDG_DATA_HOME/sshca/package.json (or ~/.local/share/sshca, $SSHCA_DATA_DIR) and run their hooks,
    // and root runs sshca (`sshca host …`, renewal) with environments it did not choose (su without -,
    // sudo -E): whoever can write that folder would run code as root (SECURITY.md)
    await execute({dir: __filename, loadOptions: {root: __filename, userPlugins: false, devPlugins: false}})
  }
})()

/** Exits with process.exitCode once stdout and stderr have written what they were given (pipes are asynchronous on macOS). */
function exitAfterOutput() {
  process.stdout.write('', () => process.stderr.write('', () => process.exit()))
}

/**
 * Where Node may keep compiled code for the next start: a folder only this user can change, or false
 * (no cache, a slower start). Node's default, os.tmpdir()/node-compile-cache, is shared by every user
 * and Node checks neither its owner nor its files' beyond a checksum anyone can compute: whoever creates
 * it first decides what code the others run (root's `sshca host` units and `ca serve` included). So
 * $XDG_CACHE_HOME/sshca (else ~/.cache/sshca), 0700, used only when it and every folder above it belong
 * to this user or root and no one else may write to them (sticky folders aside, as in
 * src/client/local/exec-path.ts). Windows keeps Node's default, in the user's own profile.
 */
function privateCompileCache() {
  if (typeof process.getuid !== 'function') return undefined
  const fs = process.getBuiltinModule('node:fs')
  const path = process.getBuiltinModule('node:path')
  const xdg = process.env.XDG_CACHE_HOME
  const base =
    xdg && path.isAbsolute(xdg)
      ? xdg
      : path.join(process.env.HOME || process.getBuiltinModule('node:os').homedir(), '.cache')
  const dir = path.join(base, 'sshca', 'node-compile-cache')
  const uid = process.getuid()
  // it and every folder above it: a folder (not a link), this user's or root's, that no one else may
  // write to (a sticky folder such as /tmp may be writable by all: no one else may rename what is ours
  // in it); the cache folder itself this user's alone
  const safe = (from) => {
    for (let p = from; ; p = path.dirname(p)) {
      const st = fs.lstatSync(p)
      const writable = (st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0
      if (!st.isDirectory() || (st.uid !== uid && st.uid !== 0) || writable) return false
      if (p === dir && (st.uid !== uid || (st.mode & 0o077) !== 0)) return false
      if (path.dirname(p) === p) return true
    }
  }
  try {
    // checked before anything is made in it too: root with another user's HOME (sudo without -H) makes
    // no root-owned folders in that home
    let existing = dir
    while (!fs.existsSync(existing)) existing = path.dirname(existing)
    if (!safe(existing)) return false
    fs.mkdirSync(dir, {recursive: true, mode: 0o700})
    return safe(dir) ? dir : false
  } catch {
    return false
  }
}

/**
 * One bundle of dist/fast, run as CommonJS but compiled here rather than by require(), so that V8's code
 * for it can be kept for the next start once the command has run: by then every function the command
 * called is compiled, where Node's compile cache keeps only what V8 compiled before running anything
 * (the functions' code, not their source, is most of what `sshca list` costs beyond bare Node). Kept in
 * the private cache folder, or nowhere, under a name made of the bundle's inode, size, modification and
 * change times and Node's version: V8 itself checks only the source's length, its own version and its
 * flags, so a changed bundle or another Node never finds old code. scripts/bundle-fast.ts turns each
 * import() into a call of __load (a script compiled this way can import only through an experimental
 * option).
 */
function loadBundle(name) {
  const fs = process.getBuiltinModule('node:fs')
  const path = process.getBuiltinModule('node:path')
  const vm = process.getBuiltinModule('node:vm')
  const file = path.join(__dirname, '..', 'dist', 'fast', `${name}.cjs`)
  // read and named through one descriptor: the name describes the text that was read
  const fd = fs.openSync(file, 'r')
  const st = fs.fstatSync(fd, {bigint: true})
  const source = fs.readFileSync(fd, 'utf8')
  fs.closeSync(fd)
  let cache
  let cachedData
  if (typeof cacheDir === 'string') {
    // ctime too: no tool sets it, so a file rewritten in place (cp -p, rsync --inplace, npm's fixed
    // mtimes and a reused inode) never matches, even at the same length and modification time
    cache = path.join(
      cacheDir,
      `${name}-${process.version}-${st.dev}-${st.ino}-${st.size}-${st.mtimeNs}-${st.ctimeNs}.v8`,
    )
    try {
      cachedData = fs.readFileSync(cache)
    } catch {
      // none yet: compiled from the source, kept after the command ran
    }
  }
  // the wrapper Node's require() puts around a CommonJS module, on the source's first line (the line numbers stay)
  const script = new vm.Script(`(function (exports, require, module, __filename, __dirname, __load) {${source}\n})`, {
    filename: file,
    cachedData,
  })
  const module = {exports: {}}
  const load = (specifier) => import(specifier) // bare specifiers: the package's node_modules, as from dist/fast
  script.runInThisContext()(module.exports, createRequire(file), module, file, path.dirname(file), load)
  return {
    exports: module.exports,
    keepCode() {
      if (cache === undefined || (cachedData !== undefined && !script.cachedDataRejected)) return
      const tmp = `${cache}.${process.pid}.tmp`
      try {
        fs.writeFileSync(tmp, script.createCachedData(), {mode: 0o600, flag: 'wx'})
        fs.renameSync(tmp, cache)
      } catch {
        fs.rmSync(tmp, {force: true}) // a full disk: no cache, and no half of one
        return
      }
      try {
        // another bundle's or Node's code for this command, untouched for a week: an older sshca's (a
        // second installation that still uses its own rewrites it once)
        const weekAgo = Date.now() - 7 * 86_400_000
        for (const f of fs.readdirSync(cacheDir)) {
          const other = path.join(cacheDir, f)
          if (
            f.startsWith(`${name}-`) &&
            /\.(v8|tmp)$/.test(f) &&
            other !== cache &&
            fs.statSync(other).mtimeMs < weekAgo
          )
            fs.rmSync(other, {force: true})
        }
      } catch {
        // tidying only: a file gone meanwhile (another sshca tidied) changes nothing
      }
    },
  }
}
