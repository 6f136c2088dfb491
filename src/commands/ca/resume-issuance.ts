import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag} from '../../cli/flags.ts'
import {renderResume} from '../../cli/render-safety.ts'

export default class CaResumeIssuance extends BaseCommand {
  static override summary = 'Lift the emergency stop: CAs serving from this store sign again.'
  static override description = `Sets disabled: false in ca.yaml, then lifts the store's stop; every replica re-reads both within a
second. Recorded as issuance_resumed in the audit log, with how long issuance was stopped and why.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml --reason "keys rotated, old ones revoked"',
  ]

  static override flags = {
    reason: Flags.string({description: 'why issuing is safe again, for the audit log (one line)', required: true}),
    config: caConfigFlag(),
  }

  async run() {
    const {flags} = await this.parse(CaResumeIssuance)
    const {resumeIssuance} = await import('../../ca/safety.ts')
    const r = await resumeIssuance({configPath: flags.config, reason: flags.reason})
    this.out(renderResume(r))
    return r
  }
}
