import {Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {caKeys, configureHost, configureKnownHosts} from '../client/config.ts'
import {sshcaHome} from '../client/home.ts'

export default class Config extends BaseCommand {
  static override summary = 'Trust the CA\'s host certificates in known_hosts, or print/write what a server needs.'
  static override description = `Without flags: writes "@cert-authority <pattern> <host CA key>" into ~/.ssh/known_hosts inside one
marked block per CA, replaced in place (idempotent, atomic, every other byte kept, the previous file
saved as known_hosts.sshca-backup). The pattern comes from the CA (default *); --pattern overrides it.

--roots prints the user CA keys (for sshd's TrustedUserCAKeys); --host --roots the host CA keys.
--host writes the sshd snippet (sshd_config.d/50-sshca.conf: TrustedUserCAKeys, HostCertificate) and
the user CA key file. --dry-run prints instead of writing.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --dry-run --pattern "*.example.com"',
    '<%= config.bin %> <%= command.id %> --roots > /etc/ssh/sshca_user_ca.pub',
    'sudo <%= config.bin %> <%= command.id %> --host',
    '<%= config.bin %> <%= command.id %> --host --dry-run',
  ]

  static override flags = {
    context: contextFlag,
    roots: Flags.boolean({description: 'print the CA public keys (user keys; with --host, host keys)'}),
    host: Flags.boolean({description: 'configure this machine as an SSH server'}),
    'dry-run': Flags.boolean({description: 'print what would be written'}),
    pattern: Flags.string({description: 'known_hosts host pattern for the @cert-authority line (default: the CA\'s, else *)'}),
    'known-hosts': Flags.string({description: 'the known_hosts file to edit (default ~/.ssh/known_hosts)'}),
    'sshd-dir': Flags.string({description: 'with --host: sshd\'s directory', default: '/etc/ssh'}),
  }

  async run() {
    const {flags} = await this.parse(Config)
    const home = sshcaHome()
    const ctx = flags.context ? {context: flags.context} : {}
    if (flags.roots) {
      const r = await caKeys(home, {...ctx, host: flags.host})
      this.out(r.keys.map((k) => `${k}\n`).join(''))
      return r
    }
    if (flags.host) {
      const r = await configureHost(home, {...ctx, sshdDir: flags['sshd-dir'], dryRun: flags['dry-run']})
      for (const f of r.files) this.out(r.written ? `wrote ${f.path}\n` : `# ${f.path}\n${f.content}\n`)
      if (r.written) this.out(`Next:\n${r.next.map((n) => `  ${n}\n`).join('')}`)
      return r
    }
    const r = await configureKnownHosts(home, {...ctx, ...(flags.pattern ? {pattern: flags.pattern} : {}), ...(flags['known-hosts'] ? {file: flags['known-hosts']} : {}), dryRun: flags['dry-run']})
    if (flags['dry-run']) this.out(r.block)
    else if (!r.changed) this.out(`${r.file} already trusts the host CA of "${r.context}" for ${r.pattern}.\n`)
    else this.out(`${r.file}: hosts matching ${r.pattern} are now verified by the host CA of "${r.context}"${r.backup ? ` (previous file: ${r.backup})` : ''}.\n`)
    return r
  }
}
