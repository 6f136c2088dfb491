import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag} from '../../cli/flags.ts'
import {EXIT} from '../../cli/exit-codes.ts'
import {readInput} from '../../cli/io.ts'
import {SshcaError} from '../../errors.ts'
import {renderWhatIf} from '../../cli/render-ca.ts'
import type {ReplayRecord} from '../../ca/authority/whatif.ts'
import {parseDuration} from '../../util/duration.ts'

export default class CaExplain extends BaseCommand {
  static override summary = 'Show what the policy does with a token or a set of claims, rule by rule.'
  static override description = `For each rule of the token's provisioner: matched, or the first condition that failed; then the
certificate that would be issued, or why not. The provisioner is found from the claims' iss/aud (or
named with --provisioner). The token's signature is NOT checked: explain never contacts an issuer.
Exits 0 when a certificate would be issued, 7 when it would be denied.

What-if: --since 7d replays the claims of the user certificates the CA issued in that time (kept in
its store, never the tokens) through the policy in --config (a new ca.yaml, say from a pull request);
--replay AUDIT.log replays the audit log's issuances and policy denials instead (--since then limits
it). It prints who would gain or lose principals, options, extensions or lifetime, and who would be
denied or newly let in; --json for a CI job reviewing policy changes. --ca-config names the running
CA's ca.yaml (its store) when --config is a copy elsewhere.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --config ca.yaml --claims claims.json',
    '<%= config.bin %> <%= command.id %> --config ca.yaml --token "$ACTIONS_ID_TOKEN"',
    'echo \'{"repository":"acme/app","ref":"refs/heads/main","event_name":"push","run_id":"1"}\' | <%= config.bin %> <%= command.id %> --config ca.yaml --claims - --provisioner ci',
    '<%= config.bin %> <%= command.id %> --config new-ca.yaml --ca-config /etc/sshca/ca.yaml --since 7d',
    '<%= config.bin %> <%= command.id %> --config pr/ca.yaml --replay /var/log/sshca/audit.log --since 30d --json',
  ]

  static override flags = {
    config: caConfigFlag(),
    claims: Flags.string({
      description: 'JSON file with the claims (- for standard input)',
      exclusive: ['token', 'replay', 'since'],
    }),
    token: Flags.string({
      description: 'a JWT whose (unverified) claims to explain',
      exclusive: ['claims', 'replay', 'since'],
    }),
    replay: Flags.string({
      description: 'what-if: replay the issuances and policy denials of this audit log through --config',
      exclusive: ['claims', 'token'],
    }),
    since: Flags.string({
      description: "what-if: replay requests since a date or for a duration back (7d); alone, from the CA's store",
      exclusive: ['claims', 'token'],
    }),
    'ca-config': Flags.string({
      description: "what-if with --since: the running CA's ca.yaml, whose store holds the claims (default: --config)",
    }),
    provisioner: Flags.string({description: 'the provisioner to evaluate (default: routed by iss/aud)'}),
  }

  async run() {
    const {flags} = await this.parse(CaExplain)
    if (flags.replay !== undefined || flags.since !== undefined) return this.whatIf(flags)
    if (flags.claims === undefined && flags.token === undefined)
      throw new SshcaError('ERR_USAGE', 'give --claims, --token, or for a what-if --since and/or --replay')
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
    let text = `Provisioner "${r.provisioner}" (${r.routedBy === 'flag' ? 'from --provisioner' : "from the claims' iss/aud"}); ${flags.token ? 'token signature NOT checked' : 'claims as given'}\n`
    for (const o of r.rules)
      text += `  ${o.matched ? '✓' : '✗'} ${o.rule}${o.matched ? ': matches' : `: ${o.failed}`}\n`
    if (r.decision.issued) {
      const c = r.decision.certificate
      text += `Would issue (rule "${r.decision.rule}"):\n  principals  ${c.principals.join(', ')}\n  key ID      ${c.keyId}\n  valid for   ${c.ttl} (starting 1 minute back)\n`
      for (const [k, v] of Object.entries(c.criticalOptions)) text += `  ${k.padEnd(11)} ${String(v)}\n`
      text += `  extensions  ${c.extensions.join(', ') || '(none)'}\n`
      const pf = r.decision.principalsFrom
      if (pf) {
        text += `  from claim "${pf.claim}":\n`
        for (const g of pf.granted) text += `    ✓ ${g.from}${g.from === g.principal ? '' : ` → ${g.principal}`}\n`
        const why = {
          not_allowed: 'not allowed',
          unsafe: 'outside the safe character set',
          reserved: 'reserved principal, never granted',
          not_text: 'not text',
        }
        for (const d of pf.dropped) text += `    ✗ ${d.value}: ${why[d.why]}\n`
      }
    } else {
      text += `Would DENY (${r.decision.reason}): ${r.decision.message}\n`
      process.exitCode = EXIT.DENIED
    }
    this.out(text)
    return r
  }

  private async whatIf(flags: {
    config: string
    replay?: string | undefined
    since?: string | undefined
    'ca-config'?: string | undefined
  }) {
    let since: number | undefined
    if (flags.since !== undefined) {
      const back = parseDuration(flags.since)
      const date = Date.parse(flags.since)
      if (back !== undefined) since = Math.floor(Date.now() / 1000) - back
      else if (!Number.isNaN(date)) since = Math.floor(date / 1000)
      else
        throw new SshcaError('ERR_USAGE', `--since "${flags.since}" is neither a date (2026-11-01) nor a duration (7d)`)
    }
    const {loadConfig} = await import('../../ca/config/config.ts')
    const {whatIf, recordsFromAudit} = await import('../../ca/authority/whatif.ts')
    const {config} = await loadConfig(flags.config)
    let source: {records: ReplayRecord[]; skipped: number}
    if (flags.replay !== undefined)
      source = recordsFromAudit(
        await readInput(flags.replay, {
          limit: 256 << 20,
          largeHint: 'replay a part of the log (grep or tail it into a file), or replay the store: --ca-config',
        }),
        since,
      )
    else {
      const {storeRecords} = await import('../../ca/whatif-store.ts')
      source = await storeRecords(flags['ca-config'] ?? flags.config, since!)
    }
    const report = whatIf(config, source.records, Math.floor(Date.now() / 1000))
    this.out(renderWhatIf(report, source.skipped))
    return {...report, skipped: source.skipped}
  }
}
