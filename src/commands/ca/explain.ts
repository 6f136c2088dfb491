import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag} from '../../cli/flags.ts'
import {EXIT} from '../../cli/exit-codes.ts'
import {readInput} from '../../cli/io.ts'
import {SshcaError} from '../../errors.ts'

export default class CaExplain extends BaseCommand {
  static override summary = 'Show what the policy does with a token or a set of claims, rule by rule.'
  static override description = `For each rule of the token's provisioner: matched, or the first condition that failed; then the
certificate that would be issued, or why not. The provisioner is found from the claims' iss/aud (or
named with --provisioner). The token's signature is NOT checked: explain never contacts an issuer.
Exits 0 when a certificate would be issued, 7 when it would be denied.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --config ca.yaml --claims claims.json',
    '<%= config.bin %> <%= command.id %> --config ca.yaml --token "$ACTIONS_ID_TOKEN"',
    "echo '{\"repository\":\"acme/app\",\"ref\":\"refs/heads/main\",\"event_name\":\"push\",\"run_id\":\"1\"}' | <%= config.bin %> <%= command.id %> --config ca.yaml --claims - --provisioner ci",
  ]

  static override flags = {
    config: caConfigFlag(),
    claims: Flags.string({description: 'JSON file with the claims (- for standard input)', exactlyOne: ['claims', 'token']}),
    token: Flags.string({description: 'a JWT whose (unverified) claims to explain', exactlyOne: ['claims', 'token']}),
    provisioner: Flags.string({description: 'the provisioner to evaluate (default: routed by iss/aud)'}),
  }

  async run() {
    const {flags} = await this.parse(CaExplain)
    const {loadConfig} = await import('../../ca/config/config.ts')
    const {explain, claimsFromToken} = await import('../../ca/authority/explain.ts')
    const {config} = await loadConfig(flags.config)
    let claims: Record<string, unknown>
    if (flags.token) claims = claimsFromToken(flags.token)
    else {
      const text = await readInput(flags.claims!)
      try {
        claims = JSON.parse(text) as Record<string, unknown>
      } catch (err) {
        throw new SshcaError('ERR_INPUT', `--claims is not JSON: ${(err as Error).message}`)
      }
    }
    const r = explain(config, claims, flags.provisioner, Math.floor(Date.now() / 1000))
    let text = `Provisioner "${r.provisioner}" (${r.routedBy === 'flag' ? 'from --provisioner' : 'from the claims\' iss/aud'}); ${flags.token ? 'token signature NOT checked' : 'claims as given'}\n`
    for (const o of r.rules) text += `  ${o.matched ? '✓' : '✗'} ${o.rule}${o.matched ? ': matches' : `: ${o.failed}`}\n`
    if (r.decision.issued) {
      const c = r.decision.certificate
      text += `Would issue (rule "${r.decision.rule}"):\n  principals  ${c.principals.join(', ')}\n  key ID      ${c.keyId}\n  valid for   ${c.ttl} (starting 1 minute back)\n`
      for (const [k, v] of Object.entries(c.criticalOptions)) text += `  ${k.padEnd(11)} ${String(v)}\n`
      text += `  extensions  ${c.extensions.join(', ') || '(none)'}\n`
    } else {
      text += `Would DENY (${r.decision.reason}): ${r.decision.message}\n`
      process.exitCode = EXIT.DENIED
    }
    this.out(text)
    return r
  }
}
