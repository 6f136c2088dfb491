import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag} from '../../cli/flags.ts'
import {renderMarkRestored} from '../../cli/render-safety.ts'

export default class CaMarkRestored extends BaseCommand {
  static override summary = 'Mark the store restored from an older copy: tokens issued before now are refused.'
  static override description = `Run it after bringing the store back by other means than sshca ca restore: pg_restore of a dump,
a file system or VM snapshot. Tokens spent after that copy was taken are not in it and would sign
again; once the store is marked, every CA serving from it (every replica, within a second) refuses
any token issued before now, as the first start after sshca ca restore does. Run it before the CAs
serve again. Recorded as ca_restored in the audit log.

The mark is this machine's clock and never moves back: run it where the clock is right (a mark ahead
refuses every token until then). A clock behind the store's newest certificate is refused.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml --reason "pg_restore of the 02:00 dump"',
  ]

  static override flags = {
    reason: Flags.string({description: 'what was restored, for the audit log (one line)', required: true}),
    config: caConfigFlag(),
  }

  async run() {
    const {flags} = await this.parse(CaMarkRestored)
    const {markStoreRestored} = await import('../../ca/safety.ts')
    const r = await markStoreRestored({configPath: flags.config, reason: flags.reason})
    this.out(renderMarkRestored(r))
    return r
  }
}
