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
--host writes the user CA key file, the CA's current KRL, the sshd snippet (sshd_config.d/50-sshca.conf:
TrustedUserCAKeys, RevokedKeys, HostCertificate for each host key) and a systemd service + daily timer
that renew the host certificates and refresh the KRL. --dry-run prints instead of writing.`

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
    'systemd-dir': Flags.string({description: 'with --host: where the renewal service and timer go', default: '/etc/systemd/system'}),
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
      const r = await configureHost(home, {...ctx, sshdDir: flags['sshd-dir'], systemdDir: flags['systemd-dir'], dryRun: flags['dry-run']})
      for (const f of r.files) {
        const body = typeof f.content === 'string' ? f.content : `(an OpenSSH KRL, ${f.content.length} bytes)\n`
        this.out(r.written ? `wrote ${f.path}\n` : `# ${f.path}\n${body}\n`)
      }
      this.out(`Next:\n${r.next.map((n) => `  ${n}\n`).join('')}`)
      return {...r, files: r.files.map((f) => ({...f, content: typeof f.content === 'string' ? f.content : f.content.toString('base64')}))}
    }
    const r = await configureKnownHosts(home, {...ctx, ...(flags.pattern ? {pattern: flags.pattern} : {}), ...(flags['known-hosts'] ? {file: flags['known-hosts']} : {}), dryRun: flags['dry-run']})
    if (flags['dry-run']) this.out(r.block)
    else if (!r.changed) this.out(`${r.file} already trusts the host CA of "${r.context}" for ${r.pattern}.\n`)
    else this.out(`${r.file}: hosts matching ${r.pattern} are now verified by the host CA of "${r.context}"${r.backup ? ` (previous file: ${r.backup})` : ''}.\n`)
    return r
  }
}
