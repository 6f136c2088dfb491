/** oclif's command_not_found hook: an unknown command is a usage error like any other (exit 2, --json aware). */
import type {Hook, Interfaces} from '@oclif/core'
import {errorJson, errorText, exitCodeFor} from './errors.ts'
import {unknownCommand} from './usage.ts'
import {jsonText} from '../util/text.ts'

const hook: Hook<'command_not_found'> = async function (opts) {
  reportUnknownCommand(opts.id, opts.config, opts.argv ?? [])
}

/** `id` is no command: ERR_USAGE with the nearest command, on stderr or (--json in `argv`) stdout. */
export function reportUnknownCommand(
  id: string,
  config: Pick<Interfaces.Config, 'commandIDs' | 'bin'>,
  argv: readonly string[],
): void {
  const err = unknownCommand(id, config.commandIDs, config.bin)
  if (argv.includes('--json')) process.stdout.write(jsonText(errorJson(err)))
  else process.stderr.write(errorText(err))
  process.exitCode = exitCodeFor(err)
}

export default hook
