/**
 * The start-up fast path: `sshca list` runs many times a day, and @oclif/core alone takes longer to
 * import than the whole command. bin/run.js asks this module first; it handles only argument lists it
 * fully understands and returns false for everything else (help, unknown flags, other commands),
 * which then go to oclif. test/integration/cli-fast-path.test.ts checks both paths print the same.
 */
import {errorJson, errorText, exitCodeFor, toSshcaError} from './errors.ts'

const LIST_FLAGS = new Set(['--raw', '--json'])

export async function tryFastPath(argv: readonly string[]): Promise<boolean> {
  if (process.env.SSHCA_NO_FAST_PATH) return false
  if (argv[0] !== 'list' || !argv.slice(1).every((a) => LIST_FLAGS.has(a))) return false
  const json = argv.includes('--json')
  try {
    const {runList} = await import('./list.ts')
    const {result, text} = await runList({raw: argv.includes('--raw')})
    process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : text)
  } catch (err) {
    const e = toSshcaError(err)
    if (json) process.stdout.write(`${JSON.stringify(errorJson(e), null, 2)}\n`)
    else process.stderr.write(errorText(e))
    process.exitCode = exitCodeFor(e)
  }
  return true
}
