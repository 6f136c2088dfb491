/** Runs the built CLI (bin/run.cjs → dist/) as a user would, on the Node that runs the tests. */
import {existsSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {run, type RunResult} from './proc.ts'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const BIN = join(ROOT, 'bin', 'run.cjs')

export interface CliOptions {
  env?: NodeJS.ProcessEnv
  input?: string
  timeoutMs?: number
  cwd?: string
}

export function sshca(args: readonly string[], opts: CliOptions = {}): Promise<RunResult> {
  if (!existsSync(join(ROOT, 'dist', 'fast', 'list.cjs')))
    throw new Error('dist/ is missing: run `npm run build` first (npm test does)')
  return run(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: {...process.env, NO_COLOR: '1', ...opts.env},
    ...(opts.input === undefined ? {} : {input: opts.input}),
    timeoutMs: opts.timeoutMs ?? 60_000,
  })
}
