/**
 * Part of `npm run build`, after tsc: bundles the fast path's entries (src/cli/fast-list.ts,
 * fast-login.ts, fast-proxycommand.ts, compiled in dist/cli/) into one CommonJS file each in dist/fast/,
 * which bin/run.cjs loads with require(). Node then reads one file for `sshca list` instead of a graph of
 * ~20 modules, each resolved, read and linked on every run.
 *
 * CommonJS, not ES modules, because it measured faster (`npm run bench -- startup`, 2-core box: `sshca
 * list` 40 against 47 ms for the same code bundled as ES modules in chunks): the ES loader resolves and
 * links every chunk, and an ES import of a built-in module builds a facade that reads each of its exports,
 * loading every lazily loaded part of it (node:util's TextDecoder, node:fs's promises and streams).
 * require() returns the built-in as it is. Modules the commands import lazily are evaluated only when
 * imported (esbuild wraps each in a function); packages stay in node_modules and keep their `import()`.
 * The code is tsc's output, unminified.
 */
import {readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {build} from 'esbuild'

// paths from the repository's root, wherever this runs from (npm run build, bin/dev.js)
const root = fileURLToPath(new URL('..', import.meta.url))
rmSync(join(root, 'dist/fast'), {recursive: true, force: true})
for (const name of ['list', 'login', 'proxycommand']) {
  await build({
    absWorkingDir: root,
    entryPoints: [`./dist/cli/fast-${name}.js`],
    outfile: `dist/fast/${name}.cjs`,
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node22',
    packages: 'external',
    sourcemap: 'linked',
    // the code must not need import.meta (it has no meaning in CommonJS): fail the build, not the command
    logOverride: {'empty-import-meta': 'error'},
    logLevel: 'warning',
  })
  // bin/run.cjs compiles the bundle itself (to keep V8's code for the next start) as a script, where
  // import() would need an experimental option: each import() becomes a call of the loader's __load
  // (as long a name: the source map stays true)
  const file = join(root, `dist/fast/${name}.cjs`)
  const code = readFileSync(file, 'utf8').replaceAll('await import("', 'await __load("')
  const left = code.match(/\bimport\s*\(/)
  if (left)
    throw new Error(
      `dist/fast/${name}.cjs: an import() the loader would not see: ${code.slice(left.index, left.index! + 60)}`,
    )
  // ASCII only: one character beyond it (an arrow in a comment esbuild kept) makes V8 hold the whole
  // source as UTF-16, and `sshca list` took 1 ms longer (of the 7 it may spend beyond bare Node). esbuild
  // escapes strings and identifiers itself; what is left is in a comment: write it in ASCII in src/
  const wide = /[^\t\n\r\x20-\x7e]/.exec(code)
  if (wide) {
    const line = code.slice(0, wide.index).split('\n').length
    throw new Error(
      `dist/fast/${name}.cjs:${line}: ${JSON.stringify(wide[0])} is not printable ASCII (a comment kept in the bundle?): ${code.split('\n')[line - 1]!.trim()}`,
    )
  }
  writeFileSync(file, code)
}
