import {BaseCommand} from '../../cli/base.ts'
import {table} from '../../cli/format.ts'
import {contextList} from '../../client/setup/contexts.ts'
import {sshcaHome} from '../../client/home/home.ts'

export default class ContextList extends BaseCommand {
  static override summary = 'List the CAs bootstrapped on this machine, the current one marked.'
  static override description = `Each context is a CA bootstrapped with sshca bootstrap (its pinned root, URL and SSH keys) in
$SSHCA_HOME/contexts/NAME. The current one (*) is what commands use without --context; the SSH column
says whether the managed ssh_config has its block (sshca config).`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    "<%= config.bin %> <%= command.id %> --json | jq -r '.contexts[].name'",
  ]

  async run() {
    await this.parse(ContextList)
    const r = await contextList(sshcaHome())
    if (r.contexts.length === 0)
      this.out(`No contexts in ${r.home}. Run sshca bootstrap --ca-url URL --fingerprint SHA256 first.\n`)
    else
      this.out(
        table([
          ['', 'NAME', 'CA URL', 'HOSTS', 'SSH'],
          ...r.contexts.map((c) => [
            c.current ? '*' : '',
            c.name,
            c.caUrl,
            c.configuredPattern ?? c.hostPattern,
            c.sshConfig ? (c.agentless ? 'files' : 'yes') : 'no',
          ]),
        ]),
      )
    return r
  }
}
