/**
 * Part of `npm run build`, after tsc: bundles the fast path's entries (src/cli/fast-list.ts,
 * fast-login.ts, fast-proxycommand.ts, compiled in dist/cli/) into dist/fast/, which bin/run.js loads. Node then
 * reads a few files for `sshca list` instead of a graph of ~20 modules, each resolved, read and
 * linked on every run. The code is tsc's output, unminified; packages stay in node_modules
 * (imported where the code imports them), and modules the commands import lazily stay lazy
 * (chunks of their own).
 */
import {rmSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {build} from 'esbuild'

// paths from the repository's root, wherever this runs from (npm run build, bin/dev.js)
const root = fileURLToPath(new URL('..', import.meta.url))
rmSync(join(root, 'dist/fast'), {recursive: true, force: true})
// one build per command: chunks shared by the two would make each load more files
for (const name of ['list', 'login', 'proxycommand']) {
  await build({
    absWorkingDir: root,
    entryPoints: {[name]: `./dist/cli/fast-${name}.js`},
    outdir: 'dist/fast',
    chunkNames: `${name}-[hash]`,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node22',
    packages: 'external',
    sourcemap: 'linked',
    logLevel: 'warning',
  })
}
