import {Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {broadEntries} from '../ssh/host-pattern.ts'
import {bootstrap} from '../client/setup/bootstrap.ts'
import {sshcaHome} from '../client/home/home.ts'

export default class Bootstrap extends BaseCommand {
  static override summary = 'Trust a CA, given its URL and the SHA-256 fingerprint of its root.'
  static override description = `Fetches the CA's root without trusting TLS, checks that its SHA-256 equals --fingerprint (case, ":" and
"-" ignored; compared in constant time), then calls the CA again trusting that root alone and stores the
root, the URL and the CA's SSH keys under $SSHCA_HOME (default ~/.sshca) as a context, made current.
Every later call to this CA trusts that root and nothing else. A mismatch or an unreachable CA writes
nothing. Replacing a context's root needs --force.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --ca-url https://ca.example.com:9000 --fingerprint 3f7a…c9',
    '<%= config.bin %> <%= command.id %> --ca-url https://10.0.0.5:9000 --fingerprint 3F:7A:…:C9 --context staging',
  ]

  static override flags = {
    'ca-url': Flags.string({description: "the CA's URL (https)", required: true}),
    fingerprint: Flags.string({
      description: "SHA-256 of the CA's root certificate (printed by `sshca ca init`)",
      required: true,
    }),
    context: Flags.string({description: 'name for this CA (default: its host name)'}),
    force: Flags.boolean({description: 'replace the root of an existing context'}),
  }

  async run() {
    const {flags} = await this.parse(Bootstrap)
    const r = await bootstrap(sshcaHome(), {
      caUrl: flags['ca-url'],
      fingerprint: flags.fingerprint,
      ...(flags.context ? {context: flags.context} : {}),
      force: flags.force,
    })
    const none = r.hostPattern === '!*'
    this.out(
      `Trusting the CA "${r.context}" at ${r.caUrl}\n  root ${r.rootSubject} (SHA-256 ${r.rootFingerprint})\n  ${r.userCaKeys.length} user CA key(s), ${r.hostCaKeys.length} host CA key(s)\n` +
        `  host pattern ${none ? '!* (the CA names no hosts: sshca config will ask for --pattern)' : `${r.hostPattern} (the hosts whose host certificates this CA vouches for)`}\n` +
        `"${r.context}" is now the current context.\n` +
        `Next, on a laptop: sshca config${none || broadEntries(r.hostPattern).length > 0 ? ' --pattern "*.your-domain"' : ''}   (trust its host certificates), then: sshca login\n` +
        `      on a server: sudo sshca certificate --host --sign --token-file FILE HOSTNAME /etc/ssh/ssh_host_ed25519_key.pub, then: sudo sshca config --host\n`,
    )
    for (const w of r.warnings) this.warning(w)
    return r
  }
}
