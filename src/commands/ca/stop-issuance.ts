import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag} from '../../cli/flags.ts'
import {renderStop} from '../../cli/render-safety.ts'

export default class CaStopIssuance extends BaseCommand {
  static override summary =
    'Emergency stop: every CA serving from this store refuses to sign, and says until when its certificates work.'
  static override description = `Writes the stop to the store, which every replica reads each second (503 issuance_stopped on every
signing route, renewals and rekeys included; revocation and the KRL keep working), and sets
disabled: true in ca.yaml (a CA started from this directory on another store is stopped too).
Editing ca.yaml back does not resume: only sshca ca resume-issuance lifts the stop.
Prints the last moment any certificate this CA issued is valid: after it, nothing signed by this CA
works. Recorded as issuance_stopped in the audit log.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml --reason "user CA key may be compromised"',
    '<%= config.bin %> ca status --config /etc/sshca/ca.yaml --json',
  ]

  static override flags = {
    reason: Flags.string({description: 'why, for the audit log (one line)', required: true}),
    config: caConfigFlag(),
  }

  async run() {
    const {flags} = await this.parse(CaStopIssuance)
    const {stopIssuance} = await import('../../ca/safety.ts')
    const r = await stopIssuance({configPath: flags.config, reason: flags.reason})
    this.out(renderStop(r))
    return r
  }
}
