import {Args} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag} from '../../cli/flags.ts'

export default class CaUnrevoke extends BaseCommand {
  static override summary = 'Undo one revocation by its id (on the CA box).'
  static override description = `Removes the revocation from the CA's store (audited). Certificates it covered are accepted again by
hosts once they fetch the next KRL; a key ID or key may be issued certificates again at once. The
revocations \`sshca ca revoke\` added for what was renewed or rekeyed from a revoked host certificate
are removed with it.
List revocations and their ids with \`sshca ca revocations\`.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> 0b0f6c4e-6c41-4a57-9d8c-5f3e2d7c9b21 --config /etc/sshca/ca.yaml',
  ]
  static override args = {
    id: Args.string({description: 'the revocation id (sshca ca revocations)', required: true, ignoreStdin: true}),
  }
  static override flags = {config: caConfigFlag()}

  async run() {
    const {args, flags} = await this.parse(CaUnrevoke)
    const {unrevoke} = await import('../../ca/admin.ts')
    const r = await unrevoke({configPath: flags.config, id: args.id})
    this.out(
      `Removed revocation ${r.id} (${r.serial !== null ? `serial ${r.serial}` : r.keyFingerprint !== null ? `key ${r.keyFingerprint}` : `key ID "${r.keyId}"`}, revoked ${r.revokedAt}: ${r.reason}).\n` +
        (r.descendants.length > 0
          ? `With it, the revocations of the ${r.descendants.length} certificate(s) renewed or rekeyed from it: serial ${r.descendants.join(', ')}.\n`
          : '') +
        'Hosts accept it again after their next `sshca krl`.\n',
    )
    return r
  }
}
