import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {reloadSshdIfOwed, renewHostCert} from '../client/host/host.ts'
import {sshcaHome} from '../client/home/home.ts'

export default class Renew extends BaseCommand {
  static override summary = 'Renew a host certificate by proving possession of its key.'
  static override description = `Signs a short-lived proof with KEY (the host's private key) carrying CERT, and asks the CA for a new
certificate with the same principals and a new serial; writes it over CERT atomically. Without --force it
renews only when less than a third of the validity is left, and exits 0 either way saying which, so a
daily timer is enough (sshca config --host installs one). With --reload-sshd (what that timer runs), a
renewal is followed by sshd -t and, if sshd accepts its configuration, a reload so that sshd presents
the new certificate; a configuration sshd rejects is not reloaded (ERR_SSHD_CONFIG, exit 9), since a
reload would stop sshd, and a reload missed stays owed: every later run retries it. A renewal whose
answer was lost (the CA issued, this host never heard) gets that same certificate at the next run.
Expired or revoked certificates, and one renewed twice since, cannot be renewed: enroll the host again.`

  static override examples = [
    'sudo <%= config.bin %> <%= command.id %> /etc/ssh/ssh_host_ed25519_key-cert.pub /etc/ssh/ssh_host_ed25519_key',
    'sudo <%= config.bin %> <%= command.id %> /etc/ssh/ssh_host_ed25519_key-cert.pub /etc/ssh/ssh_host_ed25519_key --force',
    'sudo <%= config.bin %> <%= command.id %> --reload-sshd /etc/ssh/ssh_host_ed25519_key-cert.pub /etc/ssh/ssh_host_ed25519_key',
  ]

  static override args = {
    cert: Args.string({description: 'the host certificate file', required: true, ignoreStdin: true}),
    key: Args.string({description: 'the host private key file', required: true, ignoreStdin: true}),
  }

  static override flags = {
    context: contextFlag,
    force: Flags.boolean({description: 'renew now, however much validity is left'}),
    'reload-sshd': Flags.boolean({
      description:
        'after a renewal, reload sshd to present the new certificate, once sshd -t accepts its configuration (the renewal timer does)',
    }),
  }

  async run() {
    const {args, flags} = await this.parse(Renew)
    const r = await renewHostCert(sshcaHome(), {
      ...(flags.context ? {context: flags.context} : {}),
      certFile: args.cert,
      keyFile: args.key,
      force: flags.force,
    })
    // after a renewal, or while one is owed: a daily reload for nothing would risk sshd for nothing
    const sshd = flags['reload-sshd'] ? await reloadSshdIfOwed(sshcaHome(), r.renewed) : undefined
    const reload = sshd?.reloaded
      ? ' sshd reloaded: it presents it now.'
      : sshd
        ? ` ${sshd.note!.charAt(0).toUpperCase()}${sshd.note!.slice(1)}.`
        : ' Reload sshd to present it.'
    this.out(
      r.renewed
        ? `Renewed ${r.certificate} (${r.reason}): serial ${r.serial}, valid until ${r.validBefore}.${reload}\n`
        : `Not renewed: ${r.reason}. Valid until ${r.validBefore}.${sshd ? ` A reload owed since an earlier renewal:${reload}` : ''}\n`,
    )
    return {...r, ...(sshd ? {sshd} : {})}
  }
}
