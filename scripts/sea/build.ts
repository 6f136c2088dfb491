/**
 * `npm run build:sea`: sshca as one executable for this platform, for machines without Node.js
 * (servers, CI images), with Node.js's single-executable applications:
 *   1. esbuild bundles scripts/sea/main.ts (and through it src/, the commands, the dependencies) into
 *      one CommonJS file; the native keyring module stays out (see main.ts);
 *   2. `node --experimental-sea-config` turns it into a blob;
 *   3. postject injects the blob into a copy of the Node.js binary that runs this script (the
 *      project's pinned Node.js 24), flipping the SEA fuse.
 * Output: build/sea/sshca (build/sea/sshca.exe on Windows). On macOS the copy is re-signed ad hoc.
 */
import {execFileSync, spawnSync} from 'node:child_process'
import {chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {dirname, join, relative} from 'node:path'
import {fileURLToPath} from 'node:url'
import {build, type Plugin} from 'esbuild'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const OUT = join(ROOT, 'build', 'sea')
const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'
const exe = join(OUT, process.platform === 'win32' ? 'sshca.exe' : 'sshca')

/** `sshca-sea:commands`: every command of the manifest, imported statically, the not-found hook and the help class. */
const commandsModule: Plugin = {
  name: 'sshca-sea-commands',
  setup(b) {
    b.onResolve({filter: /^sshca-sea:commands$/}, () => ({path: 'commands', namespace: 'sshca-sea'}))
    b.onLoad({filter: /.*/, namespace: 'sshca-sea'}, () => {
      const manifest = JSON.parse(readFileSync(join(ROOT, 'oclif.manifest.json'), 'utf8')) as {
        commands: Record<string, {relativePath: string[]}>
      }
      const ids = Object.keys(manifest.commands).sort()
      const src = (rel: string[]): string => join(ROOT, 'src', ...rel.slice(1)).replace(/\.js$/, '.ts')
      const lines = ids.map((id, i) => `import c${i} from ${JSON.stringify(src(manifest.commands[id]!.relativePath))}`)
      lines.push(`import notFound from ${JSON.stringify(join(ROOT, 'src', 'cli', 'not-found.ts'))}`)
      lines.push(`import Help from ${JSON.stringify(join(ROOT, 'src', 'cli', 'help.ts'))}`)
      lines.push(`export const COMMANDS = {${ids.map((id, i) => `${JSON.stringify(id)}: c${i}`).join(', ')}}`)
      lines.push('export {notFound, Help}')
      return {contents: lines.join('\n'), loader: 'ts', resolveDir: ROOT}
    })
  },
}

const started = Date.now()
rmSync(OUT, {recursive: true, force: true})
mkdirSync(OUT, {recursive: true})
const bundle = join(OUT, 'sshca.cjs')
const result = await build({
  entryPoints: [join(ROOT, 'scripts', 'sea', 'main.ts')],
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: `node${process.versions.node.split('.')[0]}`,
  outfile: bundle,
  plugins: [commandsModule],
  // native or optional modules the bundle cannot carry or does not need; each import is guarded
  // where it is made. typescript: oclif's optional tsconfig reader (9 MB), never used by a build.
  // pkcs11js: native (CA keys in an HSM); the executable's CA says ERR_KEY_STORE if asked for one
  external: ['@napi-rs/keyring', 'pg-native', 'typescript', 'pkcs11js'],
  // ES modules' import.meta.url, in a CommonJS bundle: the executable's own path (nothing is read beside it)
  define: {'import.meta.url': '__sshcaSeaUrl'},
  banner: {js: 'const __sshcaSeaUrl = require("node:url").pathToFileURL(process.execPath).href;'},
  legalComments: 'inline',
  logLevel: 'warning',
  metafile: true,
})
writeFileSync(join(OUT, 'meta.json'), JSON.stringify(result.metafile))

const config = join(OUT, 'sea-config.json')
const blob = join(OUT, 'sshca.blob')
writeFileSync(
  config,
  JSON.stringify({main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true}, null, 2),
)
execFileSync(process.execPath, ['--experimental-sea-config', config], {stdio: ['ignore', 'ignore', 'pipe']})

copyFileSync(process.execPath, exe)
chmodSync(exe, 0o755)
if (process.platform === 'darwin') execFileSync('codesign', ['--remove-signature', exe])
const postject = join(ROOT, 'node_modules', 'postject', 'dist', 'cli.js')
const injected = spawnSync(
  process.execPath,
  [
    postject,
    exe,
    'NODE_SEA_BLOB',
    blob,
    '--sentinel-fuse',
    FUSE,
    ...(process.platform === 'darwin' ? ['--macho-segment-name', 'NODE_SEA'] : []),
  ],
  {encoding: 'utf8'},
)
// its output (progress, and LIEF's warnings about ELF note sections it does not name) matters only when it fails
if (injected.status !== 0)
  throw new Error(`postject failed (${injected.status ?? injected.signal}):\n${injected.stdout}${injected.stderr}`)
if (process.platform === 'darwin') execFileSync('codesign', ['--sign', '-', exe])

const mb = (p: string): string => `${(statSync(p).size / 1024 / 1024).toFixed(1)} MB`
process.stdout.write(
  `build:sea: ${relative(ROOT, exe)} (${mb(exe)}; bundle ${mb(bundle)}; Node.js ${process.version}, ${process.platform}-${process.arch}) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
)
