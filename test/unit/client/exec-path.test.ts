/** The root-only check for what sshca's systemd units run, on made-up file systems. */
import assert from 'node:assert/strict'
import {mkdtempSync, realpathSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {
  assertSafeForRoot,
  installedSshca,
  pathProblem,
  realFs,
  treeProblem,
  type EntryInfo,
  type ExecPathDeps,
} from '../../../src/client/local/exec-path.ts'

type Node = Partial<EntryInfo> & {link?: string}

/** A file system from {path: entry}; directories are implied by their children. */
function fakeFs(entries: Record<string, Node>): ExecPathDeps & {set(path: string, e: Node): void} {
  const map = new Map<string, Node>()
  const set = (path: string, e: Node): void => {
    map.set(path, e)
    for (let d = dirname(path); !map.has(d); d = dirname(d)) {
      map.set(d, {isDirectory: true})
      if (d === '/') break
    }
  }
  for (const [p, e] of Object.entries(entries)) set(p, e)
  const info = (p: string): EntryInfo | undefined => {
    const e = map.get(p)
    if (!e) return undefined
    const isDirectory =
      e.isDirectory ?? (e.link === undefined && [...map.keys()].some((k) => dirname(k) === p && k !== p))
    return {
      uid: e.uid ?? 0,
      mode: e.mode ?? (isDirectory ? 0o40755 : 0o100644),
      isDirectory,
      isSymbolicLink: e.link !== undefined,
    }
  }
  return {
    set,
    lstat: info,
    readdir: (p) => {
      // as readdirSync: a file (or a link) is no directory
      if (!info(p)?.isDirectory)
        throw Object.assign(new Error(`ENOTDIR: not a directory, scandir '${p}'`), {code: 'ENOTDIR'})
      return [...map.keys()]
        .filter((k) => k !== p && dirname(k) === p)
        .map((k) => k.slice(p === '/' ? 1 : p.length + 1))
    },
    readlink: (p) => map.get(p)!.link!,
    realpath: (p) => {
      const parts = p.split('/').filter(Boolean)
      let cur = '/'
      for (const part of parts) {
        cur = join(cur, part)
        const e = map.get(cur)
        if (e?.link) cur = resolve(dirname(cur), e.link)
      }
      return cur
    },
  }
}

const NODE = '/usr/bin/node'
const PKG = '/usr/lib/node_modules/sshca'
const SCRIPT = `${PKG}/bin/run.js`
const HOME = '/root/.sshca'

function goodFs() {
  return fakeFs({
    [NODE]: {mode: 0o100755},
    [SCRIPT]: {mode: 0o100755},
    [`${PKG}/package.json`]: {},
    [`${PKG}/dist/cli/fast.js`]: {},
    [`${PKG}/node_modules/jose/package.json`]: {},
    '/usr/local/bin/sshca': {link: '../../lib/node_modules/sshca/bin/run.js'},
    [`${HOME}/contexts/prod/context.json`]: {mode: 0o100600},
    '/root': {isDirectory: true, mode: 0o40700},
    [HOME]: {isDirectory: true, mode: 0o40700},
    '/tmp': {isDirectory: true, mode: 0o41777},
  })
}

const refusal = (
  fs: ExecPathDeps,
  exe = installedSshca(fs, NODE, SCRIPT, (p) => fs.lstat(p) !== undefined),
  home = HOME,
): string | undefined => {
  try {
    assertSafeForRoot(exe, home, fs)
    return undefined
  } catch (err) {
    assert.equal((err as {code: string}).code, 'ERR_UNSAFE_PATH')
    return (err as {details: {path: string}}).details.path + ' :: ' + (err as Error).message
  }
}

describe('what a root service may run (config --host)', () => {
  it('an installed sshca (root-owned, nothing group/other-writable) passes; the unit names real paths', () => {
    const fs = goodFs()
    const exe = installedSshca(fs, NODE, '/usr/local/bin/sshca', (p) => fs.lstat(p) !== undefined)
    assert.deepEqual(exe, {node: NODE, script: SCRIPT, packageRoot: PKG, command: `${NODE} ${SCRIPT}`})
    assert.equal(refusal(fs, exe), undefined)
  })

  it('refuses, naming the path: a group-writable parent of node', () => {
    const fs = goodFs()
    fs.set('/usr/bin', {isDirectory: true, mode: 0o40775})
    assert.match(refusal(fs)!, /^\/usr\/bin :: .*\/usr\/bin is unsafe \(it is writable by its group \(mode 0775\)\)/)
  })

  it('refuses a script owned by a user (a home or nvm install), an other-writable file deep in the package, a file npm left with a tarball uid', () => {
    const nvm = goodFs()
    nvm.set('/home/alice/.nvm/versions/node/v24/bin/node', {uid: 1000, mode: 0o100755})
    nvm.set('/home/alice', {isDirectory: true, uid: 1000})
    assert.match(
      refusal(
        nvm,
        installedSshca(nvm, '/home/alice/.nvm/versions/node/v24/bin/node', SCRIPT, (p) => nvm.lstat(p) !== undefined),
      )!,
      /^\/home\/alice :: .*belongs to uid 1000, not root/,
    )
    const deep = goodFs()
    deep.set(`${PKG}/node_modules/jose/dist/index.js`, {mode: 0o100666})
    assert.match(
      refusal(deep)!,
      /^\/usr\/lib\/node_modules\/sshca\/node_modules\/jose\/dist\/index\.js :: .*writable by every user/,
    )
    const tarball = goodFs()
    tarball.set(`${PKG}/dist/cli/fast.js`, {uid: 501})
    assert.match(refusal(tarball)!, /fast\.js :: .*uid 501/)
  })

  it('a symlink in the package is judged by its target (npm link into a home folder)', () => {
    const fs = goodFs()
    fs.set('/home/bob/src/jose/index.js', {uid: 1001})
    fs.set('/home/bob', {isDirectory: true, uid: 1001})
    fs.set(`${PKG}/node_modules/jose`, {link: '/home/bob/src/jose'})
    assert.match(
      refusal(fs)!,
      /node_modules\/jose :: .*points to \/home\/bob\/src\/jose, and \/home\/bob: it belongs to uid 1001/,
    )
  })

  it("a sticky world-writable directory is allowed (only root may rename root's entries); its user-owned child is not", () => {
    const fs = goodFs()
    fs.set('/tmp/x/node', {mode: 0o100755})
    assert.equal(pathProblem('/tmp/x/node', fs), undefined)
    fs.set('/tmp/y/node', {})
    fs.set('/tmp/y', {isDirectory: true, uid: 1000})
    assert.deepEqual(pathProblem('/tmp/y/node', fs), {path: '/tmp/y', why: 'it belongs to uid 1000, not root'})
    fs.set('/srv/drop', {isDirectory: true, mode: 0o40777})
    fs.set('/srv/drop/node', {})
    assert.equal(pathProblem('/srv/drop/node', fs)!.path, '/srv/drop')
  })

  it("refuses npx's cache even when root owns it, and an SSHCA_HOME a user can change", () => {
    const fs = goodFs()
    const npx = '/root/.npm/_npx/1f2e/node_modules/sshca/bin/run.js'
    fs.set(npx, {})
    assert.match(
      refusal(
        fs,
        installedSshca(fs, NODE, npx, () => false),
      )!,
      /npx's cache/,
    )
    const home = goodFs()
    home.set('/home/alice/.sshca/contexts/prod/context.json', {uid: 1000})
    home.set('/home/alice', {isDirectory: true, uid: 1000})
    assert.match(
      refusal(home, undefined, '/home/alice/.sshca')!,
      /^\/home\/alice :: refusing to write a root service that runs with SSHCA_HOME=\/home\/alice\/\.sshca/,
    )
    const inner = goodFs()
    inner.set(`${HOME}/contexts/prod/root_ca.crt`, {mode: 0o100664})
    assert.match(refusal(inner)!, /root_ca\.crt :: .*writable by its group/)
  })

  it('pathProblem: every component from the root down; relative, missing (unless allowed) and symlinked paths are refused', () => {
    const fs = goodFs()
    assert.equal(pathProblem(NODE, fs), undefined)
    assert.deepEqual(pathProblem('usr/bin/node', fs), {path: 'usr/bin/node', why: 'it is not an absolute path'})
    assert.equal(pathProblem('/usr/bin/missing', fs)?.path, '/usr/bin/missing')
    assert.equal(pathProblem('/usr/bin/missing', fs, true), undefined)
    assert.equal(pathProblem('/usr/local/bin/sshca', fs)?.path, '/usr/local/bin/sshca')
    // the first bad component is named, not the file
    fs.set('/opt', {isDirectory: true, uid: 1001})
    fs.set('/opt/node/bin/node', {mode: 0o100755})
    assert.equal(pathProblem('/opt/node/bin/node', fs)?.path, '/opt')
    fs.set('/', {isDirectory: true, mode: 0o40777})
    assert.equal(pathProblem(NODE, fs)?.path, '/')
  })

  it('treeProblem walks every level and each directory once, and judges a symlinked directory by its own tree', () => {
    const fs = goodFs()
    assert.equal(treeProblem(PKG, fs), undefined)
    fs.set(`${PKG}/dist/deep/er/still/x.js`, {mode: 0o100666})
    assert.equal(treeProblem(PKG, fs)?.path, `${PKG}/dist/deep/er/still/x.js`)
    const ok = goodFs()
    // a root-owned directory elsewhere, linked into the package: its files are looked at too
    ok.set('/usr/share/lib-x/bad.js', {uid: 1001})
    ok.set(`${PKG}/node_modules/lib-x`, {link: '/usr/share/lib-x'})
    assert.match(treeProblem(PKG, ok)!.path, /^\/usr\/share\/lib-x\/bad\.js$/)
    // a link back into the package (a cycle) ends: the package was walked already
    const cyc = goodFs()
    cyc.set(`${PKG}/node_modules/self`, {link: PKG})
    assert.equal(treeProblem(PKG, cyc), undefined)
    // a dangling link below a root-owned directory: nothing to run there, nothing to refuse
    const dangling = goodFs()
    dangling.set(`${PKG}/node_modules/.bin/gone`, {link: '/usr/lib/gone'})
    assert.equal(treeProblem(PKG, dangling), undefined)
  })

  it('a symlink to a file is judged by its target and not walked into; an entry gone between readdir and lstat is passed over', () => {
    const fs = goodFs()
    fs.set(`${PKG}/node_modules/.bin/jose`, {link: '../jose/package.json'})
    assert.equal(treeProblem(PKG, fs), undefined)
    const racing: ExecPathDeps = {...fs, lstat: (p) => (p.endsWith('/fast.js') ? undefined : fs.lstat(p))}
    assert.equal(treeProblem(PKG, racing), undefined)
  })

  it('names a unit file would have to quote are refused: node, the script, the home (also where a symlinked home leads)', () => {
    const fs = goodFs()
    const exe = (node: string, script: string | undefined) => ({
      node,
      script,
      packageRoot: undefined,
      command: script ? `${node} ${script}` : node,
    })
    fs.set('/opt/my node/bin/node', {mode: 0o100755})
    assert.match(refusal(fs, exe('/opt/my node/bin/node', undefined))!, /^\/opt\/my node\/bin\/node :: /)
    fs.set('/opt/s/run".js', {mode: 0o100755})
    assert.match(refusal(fs, exe(NODE, '/opt/s/run".js'))!, /^\/opt\/s\/run"\.js :: /)
    fs.set('/root/my home/contexts/c/context.json', {mode: 0o100600})
    fs.set('/root/my home', {isDirectory: true, mode: 0o40700})
    assert.match(refusal(fs, exe(NODE, undefined), '/root/my home')!, /^\/root\/my home :: /)
    fs.set('/root/link-home', {link: '/root/my home'})
    assert.match(refusal(fs, exe(NODE, undefined), '/root/link-home')!, /^\/root\/my home :: /)
    // a home that is a symlink to a safe place is judged there, and passes
    fs.set('/root/alias', {link: '.sshca'})
    assert.equal(refusal(fs, exe(NODE, undefined), '/root/alias'), undefined)
    // and the units name where it leads, the folder checked, not the link (which may be repointed)
    assert.equal(assertSafeForRoot(exe(NODE, undefined), '/root/alias', fs), HOME)
  })

  it('a single executable has no script; a script outside any package is still checked on its own', () => {
    const fs = goodFs()
    assert.deepEqual(installedSshca(fs, NODE, NODE), {
      node: NODE,
      script: undefined,
      packageRoot: undefined,
      command: NODE,
    })
    assert.equal(refusal(fs, installedSshca(fs, NODE, NODE)), undefined)
    fs.set('/opt/loose/run.js', {uid: 1001, mode: 0o100755})
    assert.match(
      refusal(fs, {
        node: NODE,
        script: '/opt/loose/run.js',
        packageRoot: undefined,
        command: `${NODE} /opt/loose/run.js`,
      })!,
      /^\/opt\/loose\/run\.js :: .*uid 1001/,
    )
  })

  it("the package's own .git (a git checkout installed as root) is skipped at its top only", () => {
    const fs = goodFs()
    fs.set(`${PKG}/.git/config`, {uid: 1000})
    assert.equal(refusal(fs), undefined)
  })

  it('realFs: what node:fs says, undefined for a missing path, and any other error thrown', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sshca-execpath-'))
    writeFileSync(join(dir, 'f'), 'x')
    symlinkSync('f', join(dir, 'l'))
    const f = realFs.lstat(join(dir, 'f'))!
    assert.deepEqual(
      [f.uid, f.mode & 0o777, f.isDirectory, f.isSymbolicLink],
      [process.getuid!(), 0o644 & ~process.umask(), false, false],
    )
    assert.equal(realFs.lstat(join(dir, 'l'))!.isSymbolicLink, true)
    assert.equal(realFs.lstat(dir)!.isDirectory, true)
    assert.equal(realFs.lstat(join(dir, 'missing')), undefined)
    assert.throws(() => realFs.lstat(join(dir, 'f', 'below-a-file')), {code: 'ENOTDIR'})
    assert.deepEqual(realFs.readdir(dir).sort(), ['f', 'l'])
    assert.equal(realFs.readlink(join(dir, 'l')), 'f')
    assert.equal(realFs.realpath(join(dir, 'l')), join(realpathSync(dir), 'f'))
  })

  it('treeProblem skips only the names it is told to, at the top', () => {
    const fs = fakeFs({'/p/.git/config': {uid: 1000}, '/p/a/.git/x': {uid: 1000}})
    assert.equal(treeProblem('/p', fs, ['.git'])!.path, '/p/a/.git/x')
  })
})
