import {Args} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {contextRemove} from '../../client/setup/contexts.ts'
import {sshcaHome} from '../../client/home/home.ts'
import {defaultTokenStore} from '../../client/home/token-store.ts'

export default class ContextRemove extends BaseCommand {
  static override summary =
    'Forget a bootstrapped CA: its trust, ssh_config block, KRL, certificates in the agent and saved sign-in.'
  static override description = `Undoes bootstrap, config and login for one context, in an order that never leaves ssh worse off: the
CA's certificates leave the ssh-agent and its refresh tokens are forgotten (a failure there leaves the
context as it was); then the @cert-authority block leaves known_hosts (backed up) so ssh stops trusting
the CA's host certificates; its block leaves the managed ssh_config; then its KRL file goes (ssh refuses
every host when RevokedHostKeys names a missing file); its folder is removed. When it was the current
context, none is current afterwards (sshca context use NAME).`

  static override examples = [
    '<%= config.bin %> <%= command.id %> old-lab',
    '<%= config.bin %> <%= command.id %> old-lab --json',
  ]
  static override args = {name: Args.string({description: 'the context to remove', required: true})}

  async run() {
    const {args} = await this.parse(ContextRemove)
    const home = sshcaHome()
    const r = await contextRemove(home, args.name, {agent: {}, tokenStore: () => defaultTokenStore(home)})
    const lines = [`Removed the context "${r.context}" (${r.directory}).`]
    if (r.knownHosts)
      lines.push(
        `${r.knownHosts.file}: its @cert-authority block is gone${r.knownHosts.backup ? ` (previous file: ${r.knownHosts.backup})` : ''}.`,
      )
    if (r.sshConfig) lines.push(`${r.sshConfig.file}: its block is gone, then its revocation list.`)
    lines.push(
      r.agent
        ? `The ssh-agent was not reachable (${r.agent}); its certificates, if any, stay until they expire.`
        : `Removed ${r.certificates.length} certificate(s) from the ssh-agent.`,
    )
    if (r.forgottenRefreshTokens) lines.push(`Forgot ${r.forgottenRefreshTokens} saved sign-in(s).`)
    if (r.wasCurrent) lines.push('It was the current context: pick another with sshca context use NAME.')
    this.out(`${lines.join('\n')}\n`)
    return r
  }
}
