import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {sshcaHome} from '../client/home/home.ts'
import {status, type StatusCheck, type StatusResult} from '../client/setup/status.ts'
import {defaultTokenStore} from '../client/home/token-store.ts'

const MARK = {ok: '✓', warn: '!', fail: '✗'}
const LABEL: Record<keyof StatusResult['checks'], string> = {
  ca: 'CA',
  certificate: 'Certificate',
  refreshToken: 'Saved sign-in',
  sshConfig: 'ssh_config',
  krl: 'Revocation list',
}

export default class Status extends BaseCommand {
  static override summary =
    'Is this machine ready to ssh? The context, CA, certificate, saved sign-in, ssh_config and KRL, each with its fix.'
  static override description = `tsh status's role. For the current context (or --context): whether the CA answers over TLS pinned
to its root; the certificate in the agent (or the context's files) and its time left; whether a refresh
token is saved (keyring or file); whether the managed ssh_config block and its Include are installed;
how old the revocation list ssh reads is. Each line that needs attention names the command that fixes
it. Changes nothing. Exit 0 even when something needs fixing; --json's "ready" says whether all is well.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --context staging --json | jq .ready',
  ]
  static override flags = {context: contextFlag}

  async run(): Promise<StatusResult> {
    const {flags} = await this.parse(Status)
    const home = sshcaHome()
    const r = await status(home, flags.context ? {context: flags.context} : {}, {
      agent: {},
      tokenStore: () => defaultTokenStore(home),
    })
    const line = (name: keyof StatusResult['checks'], c: StatusCheck): string =>
      `${MARK[c.state]} ${LABEL[name].padEnd(16)}${c.detail}${c.fix ? `\n  ${''.padEnd(16)}→ ${c.fix}` : ''}\n`
    this.out(
      `Context "${r.context}" (${r.caUrl})${r.ready ? '' : ': needs attention'}\n${(Object.keys(r.checks) as (keyof StatusResult['checks'])[]).map((k) => line(k, r.checks[k])).join('')}`,
    )
    return r
  }
}
