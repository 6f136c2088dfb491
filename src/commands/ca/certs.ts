import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag} from '../../cli/flags.ts'
import {renderCerts} from '../../cli/render-ca.ts'
import {SshcaError} from '../../errors.ts'
import {parseDuration} from '../../util/duration.ts'

export default class CaCerts extends BaseCommand {
  static override summary = 'List the certificates this CA issued (on the CA box).'
  static override description = `The inventory in the CA's store, newest first: serial, type, key ID, principals, validity,
provisioner and rule, subject (the token's "sub"), key fingerprint and whether it is revoked.
Filters combine; --since takes a date (2026-11-01) or a duration back from now (7d, 12h).`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml --active',
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml --subject 248289761001 --since 30d --json',
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml --provisioner ci --key-id gha:acme/app:1234',
  ]

  static override flags = {
    subject: Flags.string({description: "only certificates issued to this identity (the token's sub)"}),
    'key-id': Flags.string({description: 'only certificates with this key ID'}),
    provisioner: Flags.string({
      description: 'only certificates from this provisioner (host-enrollment and host-renewal for hosts)',
    }),
    type: Flags.option({description: 'only user or host certificates', options: ['user', 'host'] as const})(),
    since: Flags.string({description: 'only certificates issued since a date or for a duration back (7d)'}),
    active: Flags.boolean({description: 'only certificates valid now'}),
    limit: Flags.integer({description: 'at most this many', default: 1000, min: 1}),
    config: caConfigFlag(),
  }

  async run() {
    const {flags} = await this.parse(CaCerts)
    let since: number | undefined
    if (flags.since !== undefined) {
      const back = parseDuration(flags.since)
      const date = Date.parse(flags.since)
      if (back !== undefined) since = Math.floor(Date.now() / 1000) - back
      else if (!Number.isNaN(date)) since = Math.floor(date / 1000)
      else
        throw new SshcaError('ERR_USAGE', `--since "${flags.since}" is neither a date (2026-11-01) nor a duration (7d)`)
    }
    const {certs} = await import('../../ca/admin.ts')
    const r = await certs({
      configPath: flags.config,
      query: {
        ...(flags.subject !== undefined ? {subject: flags.subject} : {}),
        ...(flags['key-id'] !== undefined ? {keyId: flags['key-id']} : {}),
        ...(flags.provisioner !== undefined ? {provisioner: flags.provisioner} : {}),
        ...(flags.type ? {certType: flags.type} : {}),
        ...(since !== undefined ? {since} : {}),
        active: flags.active,
        limit: flags.limit,
      },
    })
    this.out(renderCerts(r.certificates))
    return r
  }
}
