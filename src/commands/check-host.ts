import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {sshcaHome} from '../client/home.ts'
import {checkHost} from '../client/possession.ts'

export default class CheckHost extends BaseCommand {
  static override summary = 'Does the CA have a current host certificate for HOST? Prints true or false; exit 0 or 1.'
  static override description = `step's ssh check-host: POST /ssh/check-host. Exit 0 and "true" when a host certificate of the CA that
is current and not revoked names HOST, exit 1 and "false" otherwise (--quiet: the exit code only).`

  static override examples = ['<%= config.bin %> <%= command.id %> web1.example.com', 'if <%= config.bin %> <%= command.id %> --quiet "$host"; then ssh "$host"; fi', '<%= config.bin %> <%= command.id %> web1.example.com --json']
  static override args = {host: Args.string({description: 'the host name to look for', required: true})}
  static override flags = {context: contextFlag, quiet: Flags.boolean({char: 'q', description: 'print nothing; only the exit code answers'})}

  async run() {
    const {args, flags} = await this.parse(CheckHost)
    const r = await checkHost(sshcaHome(), {...(flags.context ? {context: flags.context} : {}), host: args.host})
    if (!flags.quiet) this.out(`${r.exists}\n`)
    if (!r.exists) process.exitCode = 1
    return r
  }
}
