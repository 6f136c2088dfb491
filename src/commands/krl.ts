import {Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {fetchKrl} from '../client/host.ts'
import {sshcaHome} from '../client/home.ts'

export default class Krl extends BaseCommand {
  static override summary = 'Fetch the CA\'s key revocation list (KRL) for sshd\'s RevokedKeys.'
  static override description = `Downloads the OpenSSH KRL of every revoked serial and key ID over TLS pinned to the bootstrapped root,
checks that it parses (sshd refuses every public key when RevokedKeys is unreadable), and writes FILE
atomically. sshd reads it on each login: no reload needed. A CA that publishes no KRL (step-ca) is
said so and nothing is written; if FILE exists already, that is an error (the CA stopped publishing).`

  static override examples = ['sudo <%= config.bin %> <%= command.id %> --out /etc/ssh/sshca_revoked_keys.krl', 'ssh-keygen -Q -f /etc/ssh/sshca_revoked_keys.krl ~/.ssh/id_ed25519-cert.pub']

  static override flags = {context: contextFlag, out: Flags.string({description: 'where to write the KRL', required: true})}

  async run() {
    const {flags} = await this.parse(Krl)
    const r = await fetchKrl(sshcaHome(), {...(flags.context ? {context: flags.context} : {}), out: flags.out})
    if (r.published) this.out(`Wrote ${r.file}: KRL version ${r.version}, ${r.revokedSerials} revoked serial(s), ${r.revokedKeyIds} revoked key ID(s).\n`)
    else this.warning(r.note)
    return r
  }
}
