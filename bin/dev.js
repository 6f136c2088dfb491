#!/usr/bin/env node
// Development entry point: compiles what changed (tsc --incremental), then runs like bin/run.js.
import {execFileSync} from 'node:child_process'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--incremental'], {stdio: 'inherit'})
await import('./run.js')
