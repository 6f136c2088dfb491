/**
 * The fast path's machinery (src/cli/fast.ts): strict parsing of one command's arguments, its run,
 * and the same output and exit codes as the oclif command's.
 */
import {parseArgs, type ParseArgsConfig} from 'node:util'
import {jsonText, terminalText} from '../util/text.ts'
import {errorJson, errorText, exitCodeFor, toSshcaError} from './errors.ts'

export type Values = Record<string, string | boolean | undefined>

export interface FastCommand {
  options: NonNullable<ParseArgsConfig['options']>
  /** How many positional arguments it takes (exactly); none when absent. */
  positionals?: number
  /** No --json: its stdout is not a document (proxycommand's is ssh's transport). */
  noJson?: boolean
  /** False when oclif should take these arguments (it then reports any usage error itself). */
  accepts(v: Values): boolean
  run(v: Values, args: string[]): Promise<{result: unknown; text: string}>
}

/** Runs `cmd` with `args` (the arguments after the command's name); false: oclif is to take them. */
export async function runFast(cmd: FastCommand, args: readonly string[]): Promise<boolean> {
  if (process.env.SSHCA_NO_FAST_PATH) return false
  let values: Values
  let positionals: string[]
  try {
    const parsed = parseArgs({
      args: [...args],
      options: cmd.options,
      strict: true,
      allowPositionals: cmd.positionals !== undefined,
    })
    values = parsed.values as Values
    positionals = parsed.positionals
  } catch {
    return false
  }
  if (positionals.length !== (cmd.positionals ?? 0) || !cmd.accepts(values)) return false
  const json = values.json === true && !cmd.noJson
  try {
    const {result, text} = await cmd.run(values, positionals)
    process.stdout.write(json ? jsonText(result) : terminalText(text))
  } catch (err) {
    const e = toSshcaError(err)
    if (json) process.stdout.write(jsonText(errorJson(e)))
    else process.stderr.write(errorText(e))
    process.exitCode = exitCodeFor(e)
  }
  return true
}
