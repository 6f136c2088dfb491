import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag} from '../../cli/flags.ts'
import {renderStatus} from '../../cli/render-safety.ts'

export default class CaStatus extends BaseCommand {
  static override summary =
    'Is the CA issuing or stopped (since when, why), and until when do the certificates it issued work.'
  static override description = `Read from the store and ca.yaml on the CA box, as every replica sees them. --json for monitoring:
issuing (false while stopped), stop.since and stop.reason, lastValidBefore (after it nothing signed by
this CA works; revoked certificates count, since a host without the current KRL accepts them),
nothingValid, the number of certificates valid now per type, when the store was restored, and the
intermediate's expiry (renew it with sshca ca intermediate before then).`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml',
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml --json | jq .issuing',
  ]

  static override flags = {
    config: caConfigFlag(),
  }

  async run() {
    const {flags} = await this.parse(CaStatus)
    const {issuanceStatus} = await import('../../ca/safety.ts')
    const r = await issuanceStatus({configPath: flags.config})
    this.out(renderStatus(r))
    return r
  }
}
