import {Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {renderClientConfig} from '../cli/render.ts'
import {caKeys, configureClient, configureHost, SSHD_DIR, SYSTEMD_DIR} from '../client/setup/config.ts'
import {sshcaHome} from '../client/home/home.ts'

export default class Config extends BaseCommand {
  static override summary =
    "Trust the CA's host certificates (known_hosts, revocation list, ssh_config), or print/write what a server needs."
  static override description = `Without --host, for the context's host pattern (the CA's ssh.hostPattern; --pattern narrows it,
and is required when the CA names no hosts), writes three things, each atomically:
"@cert-authority <pattern> <host CA key>" in ~/.ssh/known_hosts (or --known-hosts), one marked block per
CA replaced in place, every other byte kept, the previous file saved as known_hosts.sshca-backup. The
CA's key revocation list, fetched over the pinned TLS into $SSHCA_HOME/contexts/NAME (sshca login
refreshes it too; a CA without one is noted, not fatal). $SSHCA_HOME/ssh_config, one block per context
("Match final host <pattern>" with RevokedHostKeys, so ssh refuses a host certificate the CA revoked,
and UserKnownHostsFile when --known-hosts is not ssh's default; then a "Match … exec" section running
sshca login --ensure --quiet --context NAME, so the first ssh to such a host signs you in when no valid
certificate is at hand, before it connects, and ControlMaster keeps working), with one "Include"
of it at the top of ~/.ssh/config (previous file saved as config.sshca-backup); --no-ssh-config leaves
ssh_config alone, --no-auto-login leaves out the exec. --identity-token-file makes that login use a
token file something else keeps fresh (a machine's workload identity).
Without --pattern, the pattern you accepted last stays: the one config wrote, else the CA's as bootstrap
showed it. A CA that changes its pattern since is not followed (a narrowing is): the change is said, with
the --pattern that adopts it. A pattern matching hosts in any domain ("*") is written only when given with
--pattern (else ERR_TRUST_HOST_PATTERN, exit 4), at a terminal as in CI.
Contexts whose patterns overlap are warned about. --dry-run prints the change to each file (as diff -u) and writes nothing (with --host: the files).

--roots prints the user CA keys (for sshd's TrustedUserCAKeys); --host --roots the host CA keys.
--host writes the user CA key file, the CA's current KRL, the sshd snippet (sshd_config.d/50-sshca.conf:
TrustedUserCAKeys, RevokedKeys, HostCertificate for each host key) and systemd units: sshca-krl.timer
(hourly KRL, independent of everything else) and sshca-renew@KEY.timer (daily renewal, one per host
key). The units run node and sshca by their real paths; --host refuses (ERR_UNSAFE_PATH, naming the
path) when root would run anything a non-root user can change.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --dry-run --pattern "*.prod.example.com"',
    '<%= config.bin %> <%= command.id %> --no-ssh-config',
    '<%= config.bin %> <%= command.id %> --no-auto-login                     # RevokedHostKeys only; sign in yourself',
    '<%= config.bin %> <%= command.id %> --identity-token-file /var/run/secrets/tokens/sshca   # a machine: ssh logs in with this token',
    '<%= config.bin %> <%= command.id %> --roots > /etc/ssh/sshca_user_ca.pub',
    'sudo <%= config.bin %> <%= command.id %> --host',
    '<%= config.bin %> <%= command.id %> --host --dry-run',
  ]

  static override flags = {
    context: contextFlag,
    roots: Flags.boolean({description: 'print the CA public keys (user keys; with --host, host keys)'}),
    host: Flags.boolean({description: 'configure this machine as an SSH server'}),
    'dry-run': Flags.boolean({
      description: 'print what would change (a diff; with --host, the files) and write nothing',
    }),
    pattern: Flags.string({
      description:
        "narrow the CA's host pattern (an OpenSSH pattern list; required when the CA names no hosts, and to adopt a pattern the CA changed or one matching every host)",
    }),
    'known-hosts': Flags.string({
      description:
        'the known_hosts file to edit (default ~/.ssh/known_hosts); the block leaves the file config wrote it to before',
    }),
    'ssh-config': Flags.boolean({
      description: 'manage $SSHCA_HOME/ssh_config and its Include in ~/.ssh/config (--no-ssh-config: leave them alone)',
      default: true,
      allowNo: true,
    }),
    'auto-login': Flags.boolean({
      description:
        'in ssh_config, sign in (sshca login --ensure) when ssh needs a certificate (--no-auto-login: never)',
      default: true,
      allowNo: true,
    }),
    'identity-token-file': Flags.string({
      description:
        'the token file that automatic login uses instead of signing in as a person (only you may read it: chmod 600)',
    }),
    'sshd-dir': Flags.string({description: "with --host: sshd's directory", default: SSHD_DIR}),
    'systemd-dir': Flags.string({
      description: 'with --host: where the systemd units go',
      default: SYSTEMD_DIR,
    }),
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
      const r = await configureHost(home, {
        ...ctx,
        sshdDir: flags['sshd-dir'],
        systemdDir: flags['systemd-dir'],
        dryRun: flags['dry-run'],
      })
      for (const f of r.files) {
        const body = typeof f.content === 'string' ? f.content : `(an OpenSSH KRL, ${f.content.length} bytes)\n`
        this.out(r.written ? `wrote ${f.path}\n` : `# ${f.path}\n${body}\n`)
      }
      for (const k of r.skipped) this.out(`skipped ${k.key}: ${k.reason}\n`)
      this.out(`The units run: ${r.command}\nNext:\n${r.next.map((n) => `  ${n}\n`).join('')}`)
      for (const w of r.warnings) this.warning(w)
      return {
        ...r,
        files: r.files.map((f) => ({
          ...f,
          content: typeof f.content === 'string' ? f.content : f.content.toString('base64'),
        })),
      }
    }
    const r = await configureClient(home, {
      ...ctx,
      ...(flags.pattern ? {pattern: flags.pattern} : {}),
      ...(flags['known-hosts'] ? {file: flags['known-hosts']} : {}),
      sshConfig: flags['ssh-config'],
      autoLogin: flags['auto-login'],
      ...(flags['identity-token-file'] ? {identityTokenFile: flags['identity-token-file']} : {}),
      dryRun: flags['dry-run'],
    })
    this.out(renderClientConfig(r, flags['dry-run']))
    for (const w of r.warnings) this.warning(w)
    return r
  }
}
