import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag} from '../../cli/flags.ts'
import {table} from '../../cli/format.ts'

export default class CaHosts extends BaseCommand {
  static override summary = 'List the hosts with a current (valid, unrevoked) host certificate.'
  static override description =
    "Reads the CA's store: principals, serial and expiry of every host certificate that is valid now and not revoked."
  static override examples = [
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml',
    '<%= config.bin %> <%= command.id %> --config ca.yaml --json',
  ]
  static override flags = {config: caConfigFlag()}

  async run() {
    const {flags} = await this.parse(CaHosts)
    const {hosts} = await import('../../ca/admin.ts')
    const r = await hosts({configPath: flags.config})
    this.out(
      r.hosts.length === 0
        ? 'No host has a current certificate.\n'
        : table([
            ['PRINCIPALS', 'SERIAL', 'KEY ID', 'VALID UNTIL'],
            ...r.hosts.map((h) => [h.principals.join(','), h.serial, h.keyId, h.validBefore]),
          ]),
    )
    return r
  }
}
