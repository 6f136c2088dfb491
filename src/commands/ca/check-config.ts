import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag} from '../../cli/flags.ts'

export default class CaCheckConfig extends BaseCommand {
  static override summary = 'Validate ca.yaml and its policy, and warn about risky rules.'
  static override description = `Parses ca.yaml as \`ca serve\` does and exits non-zero (status 3) naming each invalid field.
Warns, without failing (unless --strict), about risky rules: a CI rule that pins no repository, a rule
that matches on repository alone, an email domain without email_verified, principals rendered from
claims the user chooses (preferred_username, name …) or with step's lossy sanitizing, an email's local
part with its domain left open or one template for two domains (alice@ of each gets alice), reserved
accounts such as root granted literally, rules one token could match together (such a token is denied),
and extensions granted where they are not needed. \`ca serve\` reports the same warnings at start and reload.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml',
    '<%= config.bin %> <%= command.id %> --config ca.yaml --strict --json   # in CI: warnings fail the check',
  ]

  static override flags = {
    config: caConfigFlag(),
    strict: Flags.boolean({description: 'treat warnings as errors (exit 3)'}),
  }

  async run() {
    const {flags} = await this.parse(CaCheckConfig)
    const {configError, loadConfig} = await import('../../ca/config/config.ts')
    const {config, warnings} = await loadConfig(flags.config)
    if (flags.strict && warnings.length > 0)
      throw configError(
        warnings.map((w) => `warning: ${w}`),
        config.path,
      )
    const result = {
      valid: true,
      config: config.path,
      provisioners: config.provisioners.map((p) => ({
        name: p.name,
        issuer: p.issuer,
        audience: p.audience,
        rules: p.rules.map((r) => r.name),
      })),
      warnings,
    }
    const rules = result.provisioners.reduce((n, p) => n + p.rules.length, 0)
    this.out(
      `${config.path} is valid: ${result.provisioners.length} provisioner(s), ${rules} rule(s)${config.disabled ? ', issuance DISABLED' : ''}.\n`,
    )
    for (const w of warnings) this.out(`warning: ${w}\n`)
    return result
  }
}
