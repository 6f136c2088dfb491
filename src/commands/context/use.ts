import {Args} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {contextUse} from '../../client/setup/contexts.ts'
import {sshcaHome} from '../../client/home/home.ts'

export default class ContextUse extends BaseCommand {
  static override summary = 'Make a bootstrapped CA the current context.'
  static override examples = ['<%= config.bin %> <%= command.id %> staging']
  static override args = {name: Args.string({description: 'the context to use', required: true})}

  async run() {
    const {args} = await this.parse(ContextUse)
    const r = await contextUse(sshcaHome(), args.name)
    this.out(
      `Now using "${r.current.name}" (${r.current.caUrl})${r.previous && r.previous !== r.current.name ? `, was "${r.previous}"` : ''}.\n`,
    )
    return r
  }
}
