#!/usr/bin/env node
// sshca entry point. Daily commands take a path that skips importing @oclif/core (see src/cli/fast.ts).
import {enableCompileCache} from 'node:module'

enableCompileCache?.()
const argv = process.argv.slice(2)
const {tryFastPath} = await import('../dist/cli/fast.js')
if (!(await tryFastPath(argv))) {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
