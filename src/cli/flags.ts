/**
 * Flags several commands share, defined once: the client's context, where ca.yaml is, the CA password
 * file, and durations (parsed where the flag is read, so a command gets seconds and a bad value is
 * ERR_USAGE before it runs).
 */
import {Flags} from '@oclif/core'
import {SshcaError} from '../errors.ts'
import {parseDuration} from '../util/duration.ts'

export const contextFlag = Flags.string({
  description: 'the bootstrapped CA to use (default: the current one)',
  helpGroup: 'GLOBAL',
})

/** `--config`: the CA's ca.yaml (commands that open a CA). */
export const caConfigFlag = Flags.custom<string>({description: 'path of ca.yaml', default: '.sshca-ca/ca.yaml'})

/** `--password-file`: the CA password's file (a 0600 file, 12+ characters on its first line). */
export const caPasswordFileFlag = Flags.custom<string>({
  description: 'file whose first line is the CA password (else asked on the terminal)',
})

/** A duration flag (`90s`, `15m`, `8h`, `30d`, `1h30m`), in seconds. */
export const durationFlag = Flags.custom<number>({
  helpValue: '<duration>',
  async parse(input, _ctx, opts) {
    const seconds = parseDuration(input)
    if (seconds === undefined)
      throw new SshcaError('ERR_USAGE', `--${opts.name} "${input}" is not a duration (90s, 15m, 8h, 30d)`)
    return seconds
  },
})
