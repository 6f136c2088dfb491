import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag} from '../../cli/flags.ts'
import {renderRevocations} from '../../cli/render-ca.ts'

export default class CaRevocations extends BaseCommand {
  static override summary = 'List the revocations in force (on the CA box).'
  static override description =
    "Every revocation in the CA's store with its id (for `sshca ca unrevoke`), what it revokes, why and since when."
  static override examples = [
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml',
    '<%= config.bin %> <%= command.id %> --config ca.yaml --json',
  ]
  static override flags = {config: caConfigFlag()}

  async run() {
    const {flags} = await this.parse(CaRevocations)
    const {revocations} = await import('../../ca/admin.ts')
    const r = await revocations({configPath: flags.config})
    this.out(renderRevocations(r.revocations))
    return r
  }
}
