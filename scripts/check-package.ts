/**
 * `npm publish` runs this (prepublishOnly, after a clean build): the tarball npm would publish must
 * be one that works when installed with `npm install -g sshca`, with no dev dependency present.
 * It fails (exit 1, each problem named) when:
 * - package.json is private, or its bin, engines or version disagree with bin/run.cjs or the manifest;
 * - oclif.manifest.json is stale (regenerated from dist/ in a temp folder and compared, as
 *   test/integration/project.test.ts does), or a completion file is;
 * - a file the CLI loads is missing from the tarball (each command, the hook, bin/run.cjs and bin/run.js, the
 *   manifest, completions, LICENSE), or the tarball carries what it should not (TypeScript sources,
 *   tests, source maps, secrets-looking files);
 * - a file in the tarball imports a package that is not in `dependencies` (a dev dependency would be
 *   missing on the user's machine) or a `dependencies` entry is imported by nothing.
 * test/integration/package.test.ts runs it on every `npm test`.
 */
import {execFileSync} from 'node:child_process'
import {cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync} from 'node:fs'
import {builtinModules} from 'node:module'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {generate} from '../src/cli/completions.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

interface Pkg {
  name: string
  version: string
  private?: boolean
  bin?: Record<string, string>
  engines?: {node?: string}
  dependencies?: Record<string, string>
  /** Installed with the package when they build (pkcs11js: node-gyp); the code says so when one is missing. */
  optionalDependencies?: Record<string, string>
  oclif?: {hooks?: Record<string, string>}
}
interface Manifest {
  version: string
  commands: Record<string, {relativePath?: string[]; isESM?: boolean} & Record<string, unknown>>
}

/** The package a bare import names: `@scope/name/sub` → `@scope/name`, `name/sub` → `name`. */
export function packageOf(specifier: string): string | undefined {
  if (
    specifier.startsWith('.') ||
    specifier.startsWith('/') ||
    specifier.startsWith('node:') ||
    builtinModules.includes(specifier.split('/')[0]!)
  )
    return undefined
  const parts = specifier.split('/')
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]
}

/** Every module specifier a built ES module names: static imports, re-exports, side-effect imports, import(). */
export function importsIn(js: string): string[] {
  const out: string[] = []
  const patterns = [
    /\b(?:import|export)\s[^'"]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
    // the fast path's bundles are CommonJS (scripts/bundle-fast.ts)
    /\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ]
  for (const re of patterns) for (const m of js.matchAll(re)) out.push(m[1]!)
  return out
}

/** The files `npm pack` would put in the tarball, as npm itself lists them. */
function packedFiles(root: string): string[] {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const [report] = JSON.parse(out) as [{files: {path: string}[]}]
  return report.files.map((f) => f.path).sort()
}

/** oclif.manifest.json as `oclif manifest` writes it from dist/ now, in a temp copy (the checkout's is not touched). */
function freshManifest(root: string): Manifest {
  const dir = mkdtempSync(join(tmpdir(), 'sshca-check-package-'))
  try {
    cpSync(join(root, 'package.json'), join(dir, 'package.json'))
    cpSync(join(root, 'dist'), join(dir, 'dist'), {recursive: true})
    mkdirSync(join(dir, 'bin'))
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'))
    execFileSync(process.execPath, [join(root, 'node_modules', 'oclif', 'bin', 'run.js'), 'manifest'], {
      cwd: dir,
      stdio: 'ignore',
    })
    return JSON.parse(readFileSync(join(dir, 'oclif.manifest.json'), 'utf8')) as Manifest
  } finally {
    rmSync(dir, {recursive: true, force: true})
  }
}

export function checkPackage(root = ROOT): string[] {
  const problems: string[] = []
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Pkg
  if (!existsSync(join(root, 'dist', 'cli', 'fast.js'))) return ['dist/ is missing: run `npm run build` first']
  if (pkg.private) problems.push('package.json says "private": true: npm will not publish it')
  if (pkg.bin?.sshca !== './bin/run.cjs')
    problems.push(`package.json bin.sshca is ${JSON.stringify(pkg.bin?.sshca)}, not ./bin/run.cjs`)
  // bin/run.cjs refuses Node.js older than its own check: engines must say the same, so npm warns first
  const runJs = readFileSync(join(root, 'bin', 'run.cjs'), 'utf8')
  const floor = /major === (\d+) && minor < (\d+)/.exec(runJs)
  if (!floor) problems.push('bin/run.cjs: cannot find its Node.js version check')
  else if (pkg.engines?.node !== `>=${floor[1]}.${floor[2]}`)
    problems.push(
      `package.json engines.node is ${JSON.stringify(pkg.engines?.node)}; bin/run.cjs needs >=${floor[1]}.${floor[2]}`,
    )

  const manifest = JSON.parse(readFileSync(join(root, 'oclif.manifest.json'), 'utf8')) as Manifest
  if (manifest.version !== pkg.version)
    problems.push(
      `oclif.manifest.json is for version ${manifest.version}, package.json says ${pkg.version}: run \`npm run manifest\``,
    )
  // commands in id order: oclif lists them in the order dist/ is read, which differs between checkouts
  const strip = (m: Manifest) =>
    Object.fromEntries(
      Object.entries(m.commands)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([id, c]) => [id, {...c, isESM: undefined, relativePath: undefined}]),
    )
  if (JSON.stringify(strip(freshManifest(root))) !== JSON.stringify(strip(manifest)))
    problems.push('oclif.manifest.json does not match the commands in dist/: run `npm run build && npm run manifest`')
  for (const [name, text] of Object.entries(generate(manifest as unknown as Parameters<typeof generate>[0]))) {
    if (!existsSync(join(root, 'completions', name)) || readFileSync(join(root, 'completions', name), 'utf8') !== text)
      problems.push(`completions/${name} is stale: run \`npm run manifest\``)
  }

  const files = packedFiles(root)
  const packed = new Set(files)
  const needed = [
    'bin/run.cjs',
    'bin/run.js',
    'package.json',
    'oclif.manifest.json',
    'README.md',
    'LICENSE',
    'completions/sshca.bash',
    'completions/_sshca',
    'completions/sshca.fish',
    ...Object.values(manifest.commands).map((c) => (c.relativePath ?? []).join('/')),
    ...Object.values(pkg.oclif?.hooks ?? {}).map((h) => h.replace(/^\.\//, '')),
    // bin/run.cjs requires these for list, login and proxycommand
    ...readdirSync(join(root, 'dist', 'fast'))
      .filter((f) => f.endsWith('.cjs'))
      .map((f) => `dist/fast/${f}`),
  ]
  for (const f of needed) if (!packed.has(f)) problems.push(`the tarball lacks ${f}`)
  for (const f of files) {
    if (/\.(ts|map|tsbuildinfo|tgz)$/.test(f) && !f.endsWith('.d.ts'))
      problems.push(`the tarball carries ${f} (sources, maps and archives stay out)`)
    if (/^(src|test|scripts|bench|docs|node_modules|\.cache)\//.test(f)) problems.push(`the tarball carries ${f}`)
    if (/(^|\/)(\.env|.*\.pem|.*\.key|id_[a-z0-9]+)$/.test(f))
      problems.push(`the tarball carries ${f}, which looks like a secret`)
  }

  // what the installed CLI imports must be what `npm install -g` installs: `dependencies`, and the
  // optional ones it installs when they build (imported lazily, with an error naming what to install)
  const deps = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})])
  const used = new Set<string>()
  for (const f of files.filter((x) => x.endsWith('.js') || x.endsWith('.cjs'))) {
    for (const spec of importsIn(readFileSync(join(root, f), 'utf8'))) {
      const name = packageOf(spec)
      if (name === undefined) continue
      used.add(name)
      if (!deps.has(name))
        problems.push(`${f} imports ${spec}, and ${name} is not in dependencies: an installed sshca would not find it`)
    }
  }
  for (const d of deps)
    if (!used.has(d))
      problems.push(`dependencies lists ${d}, and nothing in the tarball imports it: make it a devDependency`)
  return problems
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const problems = checkPackage()
  if (problems.length) {
    process.stderr.write(
      `check-package: the package is not ready to publish:\n${problems.map((p) => `  - ${p}`).join('\n')}\n`,
    )
    process.exit(1)
  }
  process.stdout.write('check-package: the tarball has what an installed sshca needs, and no more\n')
}
