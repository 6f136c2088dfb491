#!/usr/bin/env node
// Development entry point: compiles what changed (tsc --incremental), bundles the fast path, then runs like bin/run.cjs.
import {execFileSync} from 'node:child_process'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
execFileSync(
  process.execPath,
  [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--incremental'],
  {stdio: 'inherit'},
)
// and the fast path's bundles, which bin/run.cjs loads for list and login
execFileSync(process.execPath, [join(root, 'scripts/bundle-fast.ts')], {stdio: 'inherit'})
await import('./run.cjs')
