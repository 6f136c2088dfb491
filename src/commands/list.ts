import {Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {runList, type ListOutput} from '../cli/list.ts'

export default class List extends BaseCommand {
  static override summary = 'Show the certificates in your ssh-agent and when they expire.'
  static override description = `Lists every OpenSSH certificate the ssh-agent on SSH_AUTH_SOCK holds: user or host, key ID,
principals, validity and the time left. Plain keys are counted but not listed. An empty agent is not an
error. --raw prints the certificates as \`ssh-add -L\` does.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --raw > ~/.ssh/id_sshca-cert.pub',
    "<%= config.bin %> <%= command.id %> --json | jq '.certificates[] | {keyId, secondsLeft}'",
  ]

  static override flags = {
    raw: Flags.boolean({description: 'print the certificates as authorized_keys lines (like ssh-add -L)'}),
  }

  async run(): Promise<ListOutput> {
    const {flags} = await this.parse(List)
    const {result, text} = await runList({raw: flags.raw})
    this.out(text)
    return result
  }
}
