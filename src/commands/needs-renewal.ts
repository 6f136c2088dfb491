import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {shortDuration} from '../cli/format.ts'
import {needsRenewal, type NeedsRenewalResult} from '../client/host/cert-tools.ts'

export default class NeedsRenewal extends BaseCommand {
  static override summary = 'Exit 0 when an SSH certificate needs renewing, 1 when it does not (for scripts).'
  static override description = `step's needs-renewal. By default a certificate needs renewal when a third or less of its validity is
left (what sshca renew and its daily timer use; step's 66%). --expires-in 75% when that share of its
validity has passed, --expires-in 2h when it ends within that time. An expired certificate always needs
renewal; one valid forever never does.

Exit codes: 0 needs renewal, 1 does not, 2 no such file or not a certificate (and usage errors), other
codes as in the table in the README. --json prints the verdict and keeps the exit code.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> /etc/ssh/ssh_host_ed25519_key-cert.pub && sudo sshca renew --force /etc/ssh/ssh_host_ed25519_key-cert.pub /etc/ssh/ssh_host_ed25519_key',
    '<%= config.bin %> <%= command.id %> ./id_ecdsa-cert.pub --expires-in 1h',
    '<%= config.bin %> <%= command.id %> ./id_ecdsa-cert.pub --expires-in 75% --json',
  ]

  static override args = {cert: Args.string({description: 'the certificate file (…-cert.pub)', required: true})}
  static override flags = {
    'expires-in': Flags.string({
      description: 'a share of the validity (75%) or a time left (90s, 15m, 8h, 30d) below which it needs renewal',
    }),
    verbose: Flags.boolean({
      char: 'v',
      description: 'say the verdict in words (step prints only when renewal is needed)',
    }),
  }

  async run(): Promise<NeedsRenewalResult> {
    const {args, flags} = await this.parse(NeedsRenewal)
    const r = await needsRenewal(args.cert, flags['expires-in'] ? {expiresIn: flags['expires-in']} : {})
    if (flags.verbose) {
      const left =
        r.secondsLeft === null
          ? 'it never expires'
          : r.secondsLeft <= 0
            ? `it expired ${shortDuration(-r.secondsLeft)} ago`
            : `${shortDuration(r.secondsLeft)} left, ${r.percentUsed}% used`
      this.out(`${r.needsRenewal ? 'certificate needs renewal' : 'certificate does not need renewal'} (${left})\n`)
    }
    if (!r.needsRenewal) process.exitCode = 1
    return r
  }
}
