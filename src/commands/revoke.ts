import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {sshcaHome} from '../client/home/home.ts'
import {revokeOwn} from '../client/host/possession.ts'
import {SshcaError} from '../errors.ts'

/** RFC 5280 reason codes, as step's --reasonCode takes them (number or name). */
const REASONS = [
  'unspecified',
  'keycompromise',
  'cacompromise',
  'affiliationchanged',
  'superseded',
  'cessationofoperation',
  'certificatehold',
  '',
  'removefromcrl',
  'privilegewithdrawn',
  'aacompromise',
]

export default class Revoke extends BaseCommand {
  static override summary = 'Revoke your own certificate, proving you hold its key (from the agent or files).'
  static override description = `step's ssh revoke, for the holder of a certificate: a 5-minute JWT signed by the certificate's key
(through the ssh-agent for the certificate sshca login put there, or --sshpop-cert/--sshpop-key files for
a host or --no-agent certificate) asks the CA to revoke it; its serial goes into the CA's KRL, and a
certificate from the agent is removed from it. Without SERIAL the context's only current certificate in
the agent is revoked. Operators revoke anyone's with sshca ca revoke.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --reason "laptop left unlocked"',
    '<%= config.bin %> <%= command.id %> 3997477584487736496 --reasonCode KeyCompromise',
    'sudo <%= config.bin %> <%= command.id %> --sshpop-cert /etc/ssh/ssh_host_ed25519_key-cert.pub --sshpop-key /etc/ssh/ssh_host_ed25519_key --json',
  ]

  static override args = {
    serial: Args.string({
      description: 'the serial of the certificate to revoke (default: the only current one in the agent)',
    }),
  }
  static override flags = {
    context: contextFlag,
    'sshpop-cert': Flags.string({
      description: 'the certificate file (with --sshpop-key), instead of the agent',
      dependsOn: ['sshpop-key'],
    }),
    'sshpop-key': Flags.string({description: 'its private key file', dependsOn: ['sshpop-cert']}),
    reason: Flags.string({description: "why, in words (kept in the CA's revocation record and audit log)"}),
    reasonCode: Flags.string({
      description: 'an RFC 5280 reason: 0-10 or a name (KeyCompromise, Superseded, CessationOfOperation …)',
      default: '0',
    }),
  }

  async run() {
    const {args, flags} = await this.parse(Revoke)
    const code = /^\d+$/.test(flags.reasonCode)
      ? Number(flags.reasonCode)
      : REASONS.indexOf(flags.reasonCode.toLowerCase())
    if (code < 0 || code > 10 || code === 7)
      throw new SshcaError('ERR_USAGE', `--reasonCode ${flags.reasonCode} is not an RFC 5280 reason`, {
        hint: 'a number 0-10 (not 7) or a name such as KeyCompromise',
      })
    const r = await revokeOwn(
      sshcaHome(),
      {
        ...(flags.context ? {context: flags.context} : {}),
        ...(args.serial ? {serial: args.serial} : {}),
        ...(flags['sshpop-cert'] ? {certFile: flags['sshpop-cert']} : {}),
        ...(flags['sshpop-key'] ? {keyFile: flags['sshpop-key']} : {}),
        ...(flags.reason ? {reason: flags.reason} : {}),
        reasonCode: code,
      },
      {agent: {}},
    )
    this.out(
      `SSH certificate with serial ${r.serial} (${r.keyId}) has been revoked${r.removedFromAgent ? ' and removed from the ssh-agent' : ''}.\n`,
    )
    return r
  }
}
