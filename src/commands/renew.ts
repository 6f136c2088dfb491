import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {renewHostCert} from '../client/host.ts'
import {sshcaHome} from '../client/home.ts'

export default class Renew extends BaseCommand {
  static override summary = 'Renew a host certificate by proving possession of its key.'
  static override description = `Signs a short-lived proof with KEY (the host's private key) carrying CERT, and asks the CA for a new
certificate with the same principals and a new serial; writes it over CERT atomically. Without --force it
renews only when less than a third of the validity is left, and exits 0 either way saying which, so a
daily timer is enough (sshca config --host installs one). Expired or revoked certificates cannot be
renewed: enroll the host again.`

  static override examples = [
    'sudo <%= config.bin %> <%= command.id %> /etc/ssh/ssh_host_ed25519_key-cert.pub /etc/ssh/ssh_host_ed25519_key',
    'sudo <%= config.bin %> <%= command.id %> /etc/ssh/ssh_host_ed25519_key-cert.pub /etc/ssh/ssh_host_ed25519_key --force',
  ]

  static override args = {
    cert: Args.string({description: 'the host certificate file', required: true, ignoreStdin: true}),
    key: Args.string({description: 'the host private key file', required: true, ignoreStdin: true}),
  }

  static override flags = {
    context: contextFlag,
    force: Flags.boolean({description: 'renew now, however much validity is left'}),
  }

  async run() {
    const {args, flags} = await this.parse(Renew)
    const r = await renewHostCert(sshcaHome(), {
      ...(flags.context ? {context: flags.context} : {}),
      certFile: args.cert,
      keyFile: args.key,
      force: flags.force,
    })
    this.out(
      r.renewed
        ? `Renewed ${r.certificate} (${r.reason}): serial ${r.serial}, valid until ${r.validBefore}. Reload sshd to present it.\n`
        : `Not renewed: ${r.reason}. Valid until ${r.validBefore}.\n`,
    )
    return r
  }
}
