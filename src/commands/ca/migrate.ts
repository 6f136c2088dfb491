import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag} from '../../cli/flags.ts'

export default class CaMigrate extends BaseCommand {
  static override summary = "Apply the store's pending schema migrations (SQLite or PostgreSQL)."
  static override description = `\`ca serve\` applies pending migrations itself at start, under a lock that replicas starting
together share. Operators who change schemas separately (a database role without DDL rights for the
CA, a change window) set db.autoMigrate: false and run this first: it applies what is pending in one
transaction and says from which version to which. Running it again applies nothing.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml',
    '<%= config.bin %> <%= command.id %> --config ca.yaml --json',
  ]
  static override flags = {config: caConfigFlag()}

  async run() {
    const {flags} = await this.parse(CaMigrate)
    const {migrate} = await import('../../ca/admin.ts')
    const r = await migrate({configPath: flags.config})
    this.out(
      r.applied === 0
        ? `The ${r.backend} store is at schema version ${r.to}; nothing to apply.\n`
        : `Migrated the ${r.backend} store from schema version ${r.from} to ${r.to}.\n`,
    )
    return r
  }
}
