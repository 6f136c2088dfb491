import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {sshcaHome} from '../client/home/home.ts'
import {rekeyHost} from '../client/host/possession.ts'

export default class Rekey extends BaseCommand {
  static override summary = 'Replace a host key: a new key and a certificate for it, proven by the current one.'
  static override description = `step's ssh rekey, for host certificates. Generates a new key of the same type, proves possession of
the current key to the CA (a 5-minute JWT signed by it, carrying the certificate, as step's SSHPOP) and
gets a certificate with the same names for the new key; writes the key (0600), KEY.pub and the
certificate over the old ones, or to --out FILE, FILE.pub, FILE-cert.pub. Reload sshd afterwards. Until
the certificate is written the new key waits in KEY.rekey (FILE.rekey): a rekey whose answer was lost
asks again for that key, and gets the certificate the CA made for it. The old certificate stays valid
until it expires (as with step-ca): revoke it (sshca revoke --sshpop-cert OLD-CERT --sshpop-key OLD-KEY,
before replacing the files, or sshca ca revoke --key) if the old key may be compromised.`

  static override examples = [
    'sudo <%= config.bin %> <%= command.id %> /etc/ssh/ssh_host_ed25519_key-cert.pub /etc/ssh/ssh_host_ed25519_key && sudo systemctl reload ssh',
    '<%= config.bin %> <%= command.id %> host-cert.pub host-key --out new-host-key --json',
  ]

  static override args = {
    cert: Args.string({description: 'the current host certificate', required: true}),
    key: Args.string({description: 'its private key', required: true}),
  }
  static override flags = {
    context: contextFlag,
    out: Flags.string({
      description: 'write the new key to FILE (FILE.pub, FILE-cert.pub) instead of over KEY and CERT',
    }),
  }

  async run() {
    const {args, flags} = await this.parse(Rekey)
    const r = await rekeyHost(sshcaHome(), {
      ...(flags.context ? {context: flags.context} : {}),
      certFile: args.cert,
      keyFile: args.key,
      ...(flags.out ? {out: flags.out} : {}),
    })
    this.out(
      `New key ${r.keyFingerprint} in ${r.files.key} (and ${r.files.publicKey}), certificate serial ${r.serial} for ${r.principals.join(', ')} in ${r.files.certificate}, valid until ${r.validBefore}.\nThe previous certificate (serial ${r.previousSerial}) stays valid until it expires. Reload sshd to present the new key.\n`,
    )
    return r
  }
}
