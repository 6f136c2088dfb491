import {Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {fetchKrl} from '../client/host/host.ts'
import {sshcaHome} from '../client/home/home.ts'

export default class Krl extends BaseCommand {
  static override summary = "Fetch the CA's key revocation list (KRL) for sshd's RevokedKeys."
  static override description = `Downloads the OpenSSH KRL of every revoked serial and key ID over TLS pinned to the bootstrapped root,
checks that it parses (sshd refuses every public key when RevokedKeys is unreadable), and writes FILE
atomically. sshd reads it on each login: no reload needed. A CA that publishes no KRL (step-ca) is
said so and nothing is written; if FILE exists already, that is an error (the CA stopped publishing).
--user-ca-keys FILE keeps sshd's TrustedUserCAKeys file equal to the CA's published user CA keys as well
(how a CA key rotation reaches a server: both keys during the overlap, then only the new one);
\`sshca config --host\` puts it in the hourly unit.`

  static override examples = [
    'sudo <%= config.bin %> <%= command.id %> --out /etc/ssh/sshca_revoked_keys.krl',
    'sudo <%= config.bin %> <%= command.id %> --out /etc/ssh/sshca_revoked_keys.krl --user-ca-keys /etc/ssh/sshca_user_ca.pub',
    'ssh-keygen -Q -f /etc/ssh/sshca_revoked_keys.krl ~/.ssh/id_ed25519-cert.pub',
  ]

  static override flags = {
    context: contextFlag,
    out: Flags.string({description: 'where to write the KRL', required: true}),
    'user-ca-keys': Flags.string({
      description:
        "also keep this TrustedUserCAKeys file equal to the CA's published user CA keys (a key rotation reaches sshd this way)",
    }),
  }

  async run() {
    const {flags} = await this.parse(Krl)
    const r = await fetchKrl(sshcaHome(), {
      ...(flags.context ? {context: flags.context} : {}),
      out: flags.out,
      ...(flags['user-ca-keys'] ? {userCaKeys: flags['user-ca-keys']} : {}),
    })
    if (r.published)
      this.out(
        `Wrote ${r.file}: KRL version ${r.version}, ${r.revokedSerials} revoked serial(s), ${r.revokedKeyIds} revoked key ID(s).\n`,
      )
    else this.warning(r.note)
    if (r.userCaKeys)
      this.out(
        `${r.userCaKeys.changed ? 'Wrote' : 'Kept'} ${r.userCaKeys.file}: ${r.userCaKeys.keys} user CA key(s).\n`,
      )
    return r
  }
}
