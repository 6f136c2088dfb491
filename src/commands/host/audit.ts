import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {EXIT} from '../../cli/exit-codes.ts'
import {contextFlag} from '../../cli/flags.ts'
import {renderHostAudit} from '../../cli/render-safety.ts'

export default class HostAudit extends BaseCommand {
  static override summary =
    'On an SSH server: list every way in that does not go through the CA; exit 10 while any remain.'
  static override description = `For tracking the migration off authorized_keys across a fleet. Reads sshd's effective configuration
(sshd -T -f --sshd-config) and reports: AuthorizedKeysFile, PasswordAuthentication,
KbdInteractiveAuthentication (with PAM), AuthorizedKeysCommand, Hostbased and GSSAPI authentication; for
every account in --passwd, each authorized_keys file sshd would read and every key in it (a
cert-authority line for a CA sshd already trusts is not counted); host keys without a current host
certificate; whether sshd trusts a user CA at all, and reads sshca's TrustedUserCAKeys and RevokedKeys
(another file read first wins); and, with a client context (sshca bootstrap), what
sshca config --host would create or change. Writes nothing. Exit 0 when every way in goes through the
CA, 10 while any other remains (--json lists them under findings). Match blocks are not evaluated:
sshd -T shows the settings for a connection none applies to. Run as root (sshd -T reads the host keys).`

  static override examples = [
    'sudo <%= config.bin %> <%= command.id %>',
    'sudo <%= config.bin %> <%= command.id %> --json | jq -r ".findings[].message"',
  ]

  static override flags = {
    'sshd-config': Flags.string({description: "sshd's configuration file", default: '/etc/ssh/sshd_config'}),
    sshd: Flags.string({description: 'the sshd binary (default: /usr/sbin/sshd or where it is found)'}),
    passwd: Flags.string({description: 'the accounts file', default: '/etc/passwd'}),
    context: contextFlag,
    'sshd-dir': Flags.string({description: "as for sshca config --host: sshd's directory", default: '/etc/ssh'}),
    'systemd-dir': Flags.string({
      description: 'as for sshca config --host: where the systemd units go',
      default: '/etc/systemd/system',
    }),
  }

  async run() {
    const {flags} = await this.parse(HostAudit)
    const {auditHost} = await import('../../client/host/host-audit.ts')
    const {sshcaHome} = await import('../../client/home/home.ts')
    const r = await auditHost({
      sshdConfig: flags['sshd-config'],
      passwd: flags.passwd,
      ...(flags.sshd ? {sshd: flags.sshd} : {}),
      home: sshcaHome(),
      ...(flags.context ? {context: flags.context} : {}),
      sshdDir: flags['sshd-dir'],
      systemdDir: flags['systemd-dir'],
    })
    this.out(renderHostAudit(r))
    if (!r.clean) process.exitCode = EXIT.FINDINGS
    return r
  }
}
