import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag} from '../../cli/flags.ts'
import {obtainPassword} from '../../cli/password.ts'
import {renderBackup} from '../../cli/render-safety.ts'

export default class CaBackup extends BaseCommand {
  static override summary =
    'Write one encrypted archive of the CA: sealed keys, certificates, ca.yaml and a snapshot of its store.'
  static override description = `Runs next to a serving CA. The archive holds the CA directory's keys (still sealed with the CA
password), certificates, SSH CA public keys and ca.yaml, and for SQLite a consistent snapshot of the
store taken online (SQLite's backup API in one step: one read transaction, never blocking the CA), with a manifest of sizes
and SHA-256s; all of it sealed with a key derived from the backup password (scrypt + AES-256-GCM).
For PostgreSQL the store is not in the archive: back it up with pg_dump at the same time (the command
says what else must go with it). --out is a new file, or a directory that receives
sshca-backup-<UTC time>.sshca. The manifest (every file's SHA-256) is signed with a key only the CA
password opens, so the backup password alone cannot make an archive that restores: the command needs
both passwords. Recorded as ca_backup_created in the audit log.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml --out /var/backups/sshca/ --password-file /etc/sshca/backup-password --ca-password-file /etc/sshca/password',
    '<%= config.bin %> ca restore /var/backups/sshca/sshca-backup-20260101T030000Z.sshca --dir /tmp/drill --dry-run --password-file /etc/sshca/backup-password --ca-password-file /etc/sshca/password',
  ]

  static override flags = {
    config: caConfigFlag(),
    out: Flags.string({
      description: 'a new file, or an existing directory (the file is named after the time)',
      required: true,
    }),
    'password-file': Flags.string({
      description: 'file whose first line is the backup password (12+ characters; else asked on the terminal)',
    }),
    'ca-password-file': Flags.string({
      description:
        "file whose first line is the CA password, which signs the archive's manifest (else asked on the terminal)",
    }),
  }

  async run() {
    const {flags} = await this.parse(CaBackup)
    const password = await obtainPassword({file: flags['password-file'], confirm: true, label: 'Backup password'})
    const caPassword = await obtainPassword({file: flags['ca-password-file'], flag: '--ca-password-file'})
    const {backupCa} = await import('../../ca/backup.ts')
    const r = await backupCa({configPath: flags.config, out: flags.out, password, caPassword})
    this.out(renderBackup(r))
    return r
  }
}
