import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'

export default class CaCheckConfig extends BaseCommand {
  static override summary = 'Validate ca.yaml and its policy, and warn about risky rules.'
  static override description = `Parses ca.yaml as \`ca serve\` does and exits non-zero (status 3) naming each invalid field.
Warns, without failing, about rules that match on repository alone, rules one token could match
together (such a token is denied), and extensions granted where they are not needed.`

  static override examples = ['<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml', '<%= config.bin %> <%= command.id %> --config ca.yaml --json']

  static override flags = {
    config: Flags.string({description: 'path of ca.yaml', default: '.sshca-ca/ca.yaml'}),
  }

  async run() {
    const {flags} = await this.parse(CaCheckConfig)
    const {loadConfig} = await import('../../ca/config.ts')
    const {config, warnings} = await loadConfig(flags.config)
    const result = {
      valid: true,
      config: config.path,
      provisioners: config.provisioners.map((p) => ({name: p.name, issuer: p.issuer, audience: p.audience, rules: p.rules.map((r) => r.name)})),
      warnings,
    }
    const rules = result.provisioners.reduce((n, p) => n + p.rules.length, 0)
    this.out(`${config.path} is valid: ${result.provisioners.length} provisioner(s), ${rules} rule(s)${config.disabled ? ', issuance DISABLED' : ''}.\n`)
    for (const w of warnings) this.out(`warning: ${w}\n`)
    return result
  }
}
