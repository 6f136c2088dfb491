import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {obtainPassword} from '../../cli/password.ts'
import {renderRestore} from '../../cli/render-safety.ts'

export default class CaRestore extends BaseCommand {
  static override summary =
    'Restore a CA from a backup archive into a new directory (verified before anything is written).'
  static override description = `Reads the archive twice: first to authenticate every byte (a wrong password, an altered,
truncated or reordered archive is refused), check every file against the manifest, check the manifest's
signature with the CA password (the backup password alone cannot make an archive that restores), and
check that the root certificate, the SSH CA keys and ca.yaml agree with it — writing nothing; then into a staging
directory renamed to --dir. Never overwrites: --dir must be new or empty. The restored CA starts with
the same root fingerprint and SSH CA keys (and the same CA password).

A restore loses what happened after the snapshot: certificates issued, revocations made and tokens
spent since. Spent tokens could be replayed, so the restored CA refuses every token issued before its
first start (all of them expire within the token lifetime ceiling, at most a day for host enrollment
tokens). --dry-run verifies and prints the manifest only (a restore drill without a second CA).`

  static override examples = [
    '<%= config.bin %> <%= command.id %> /var/backups/sshca/sshca-backup-20260101T030000Z.sshca --dir /etc/sshca-restored --password-file /root/backup-password --ca-password-file /root/ca-password',
    '<%= config.bin %> <%= command.id %> backup.sshca --dir /tmp/check --dry-run',
  ]

  static override args = {
    archive: Args.string({description: 'the archive written by sshca ca backup', required: true}),
  }

  static override flags = {
    dir: Flags.string({description: 'directory for the restored CA (new or empty)', required: true}),
    'password-file': Flags.string({
      description: 'file whose first line is the backup password (else asked on the terminal)',
    }),
    'ca-password-file': Flags.string({
      description:
        "file whose first line is the CA password, which checks the archive's signature (else asked on the terminal)",
    }),
    unverified: Flags.boolean({
      description:
        'restore an archive made before sshca signed them, without the CA password: anyone with the backup password could have changed it',
    }),
    'dry-run': Flags.boolean({description: 'verify the archive and print what it holds; write nothing'}),
  }

  async run() {
    const {args, flags} = await this.parse(CaRestore)
    const password = await obtainPassword({file: flags['password-file'], label: 'Backup password'})
    // a signed archive is always checked: --unverified only lets an unsigned one through
    const caPassword =
      flags.unverified && !flags['ca-password-file']
        ? undefined
        : await obtainPassword({file: flags['ca-password-file'], flag: '--ca-password-file'})
    const {restoreCa} = await import('../../ca/backup.ts')
    const r = await restoreCa({
      archive: args.archive,
      dir: flags.dir,
      password,
      caPassword,
      unverified: flags.unverified,
      dryRun: flags['dry-run'],
    })
    this.out(renderRestore(r))
    return r
  }
}
