/** oclif's command_not_found hook: an unknown command is a usage error like any other (exit 2, --json aware). */
import type {Hook} from '@oclif/core'
import {errorJson, errorText, exitCodeFor} from './errors.ts'
import {unknownCommand} from './usage.ts'
import {jsonText} from '../util/text.ts'

const hook: Hook<'command_not_found'> = async function (opts) {
  const err = unknownCommand(opts.id, opts.config.commandIDs, opts.config.bin)
  if ((opts.argv ?? []).includes('--json')) process.stdout.write(jsonText(errorJson(err)))
  else process.stderr.write(errorText(err))
  process.exitCode = exitCodeFor(err)
}

export default hook
