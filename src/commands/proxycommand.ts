import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {runProxy} from '../cli/proxy-run.ts'

export default class ProxyCommand extends BaseCommand {
  static override enableJsonFlag = false
  static override summary = "For ssh's ProxyCommand: sign in if needed, then carry the connection to HOST:PORT."
  static override description = `step's proxycommand, for setups that want it: ProxyCommand sshca proxycommand %r %h %p. The
context is the one whose host pattern matches HOST (else the current one, or --context): the pattern as
you accepted it (config's, else the CA's as bootstrap showed it), never a later change of the CA's. When no valid
certificate of it is at hand, it signs in first (login --ensure; the URL and prompts go to the terminal,
never to stdout, which is ssh's transport), then pipes standard input and output to HOST:PORT. No --json:
standard output is the SSH connection.

The caveat: ssh runs a ProxyCommand only when it opens a TCP connection, so with ControlMaster the login
check happens only when a master starts, and every byte of that master passes through this process; it
cannot be combined with ProxyJump. The managed ssh_config of sshca config (Match exec) has neither
limit and is the default; use this when your ssh_config is managed elsewhere.`

  static override examples = [
    'ssh -o "ProxyCommand <%= config.bin %> proxycommand %r %h %p" alice@web1.corp.example.com   # or ProxyCommand in ~/.ssh/config',
    '<%= config.bin %> <%= command.id %> alice web1.corp.example.com 22 --context corp',
  ]

  static override args = {
    user: Args.string({
      description: "the remote user (ssh's %r): warned about when the certificate does not name it",
      required: true,
    }),
    host: Args.string({description: "the host to connect to (ssh's %h)", required: true}),
    port: Args.string({description: "its port (ssh's %p)", required: true}),
  }

  static override flags = {
    context: contextFlag,
    'identity-token-file': Flags.string({description: 'sign in with this ID token file when needed (machines)'}),
    timeout: Flags.integer({description: 'seconds to wait for a sign-in', default: 300, min: 1}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ProxyCommand)
    await runProxy({
      user: args.user,
      host: args.host,
      port: args.port,
      context: flags.context,
      identityTokenFile: flags['identity-token-file'],
      timeout: flags.timeout,
    })
  }
}
