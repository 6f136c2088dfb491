import {BaseCommand} from '../../cli/base.ts'
import {contextCurrent} from '../../client/setup/contexts.ts'
import {sshcaHome} from '../../client/home/home.ts'

export default class ContextCurrent extends BaseCommand {
  static override summary = 'Print the current context: the CA commands use without --context.'
  static override examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']

  async run() {
    await this.parse(ContextCurrent)
    const c = await contextCurrent(sshcaHome())
    this.out(`${c.name}\t${c.caUrl}\n`)
    return c
  }
}
