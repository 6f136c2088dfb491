import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag, caPasswordFileFlag} from '../../cli/flags.ts'
import {obtainPassword} from '../../cli/password.ts'

export default class CaIntermediate extends BaseCommand {
  static override summary =
    'Issue a new X.509 intermediate under the same root (clients keep their pinned fingerprint).'
  static override description = `For when the intermediate nears its end (sshca ca status shows when) or its key is in doubt. Signs
a new intermediate with the root key — from --root-key (an offline root, brought back for this) or the
CA directory — and issues the API's TLS certificate from it. The root key must be the key of this CA's
root certificate; any other is refused before anything is written. Clients pin the root, so their
contexts keep working; a running CA (each replica) serves the new chain within seconds. Recorded as
intermediate_issued in the audit log.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml --root-key /media/usb/root_ca.key --password-file /root/ca-password',
  ]

  static override flags = {
    config: caConfigFlag(),
    'root-key': Flags.string({
      description: "the offline root key file (from ca init --offline-root); default: the CA directory's",
    }),
    days: Flags.integer({
      description: 'validity of the new intermediate in days (never beyond the root)',
      default: 3649,
      min: 30,
      max: 3650,
    }),
    'password-file': caPasswordFileFlag(),
  }

  async run() {
    const {flags} = await this.parse(CaIntermediate)
    const password = await obtainPassword({file: flags['password-file']})
    const {issueIntermediate} = await import('../../ca/intermediate.ts')
    const r = await issueIntermediate({
      configPath: flags.config,
      password,
      validDays: flags.days,
      ...(flags['root-key'] ? {rootKeyFile: flags['root-key']} : {}),
    })
    this.out(`New intermediate ${r.intermediate.fingerprint}, valid until ${r.intermediate.notAfter}
  under the root     ${r.rootFingerprint} (unchanged: clients keep working)
  replaces           ${r.previous.fingerprint} (valid until ${r.previous.notAfter})
  TLS certificate    ${r.tls.names.join(', ')}, valid until ${r.tls.notAfter}

Next:
${r.next.map((n) => `  ${n}`).join('\n')}
`)
    return r
  }
}
