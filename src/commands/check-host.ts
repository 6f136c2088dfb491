import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {loginSession} from '../cli/login-run.ts'
import {sshcaHome} from '../client/home/home.ts'
import {checkHost} from '../client/host/possession.ts'

export default class CheckHost extends BaseCommand {
  static override summary = 'Does the CA have a current host certificate for HOST? Prints true or false; exit 0 or 1.'
  static override description = `step's ssh check-host: POST /ssh/check-host. Exit 0 and "true" when a host certificate of the CA that
is current and not revoked names HOST, exit 1 and "false" otherwise (--quiet: the exit code only).
Asked without credentials first (step-ca answers so); sshca's CA answers only an identity its policy
would give a certificate, so on its 401 your saved sign-in (or a browser/device sign-in) is sent as a
bearer token; --identity-token-file sends that token at once.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> web1.example.com',
    'if <%= config.bin %> <%= command.id %> --quiet "$host"; then ssh "$host"; fi',
    '<%= config.bin %> <%= command.id %> web1.example.com --json',
  ]
  static override args = {host: Args.string({description: 'the host name to look for', required: true})}
  static override flags = {
    context: contextFlag,
    quiet: Flags.boolean({char: 'q', description: 'print nothing; only the exit code answers'}),
    provisioner: Flags.string({description: 'the CA provisioner to sign in with'}),
    console: Flags.boolean({description: 'sign in with a device code instead of a browser'}),
    'identity-token-file': Flags.string({
      description: 'an ID token (file, - for standard input) instead of signing in',
    }),
    timeout: Flags.integer({description: 'seconds to wait for a sign-in', default: 300, min: 1}),
  }

  async run() {
    const {args, flags} = await this.parse(CheckHost)
    const session = await loginSession({
      identityTokenFile: flags['identity-token-file'],
      console: flags.console,
      timeout: flags.timeout,
    })
    try {
      const r = await checkHost(
        sshcaHome(),
        {
          ...(flags.context ? {context: flags.context} : {}),
          ...(flags.provisioner ? {provisioner: flags.provisioner} : {}),
          console: flags.console,
          ...(session.identityToken !== undefined ? {identityToken: session.identityToken} : {}),
          host: args.host,
        },
        session.deps,
      )
      session.done()
      if (!flags.quiet) this.out(`${r.exists}\n`)
      if (!r.exists) process.exitCode = 1
      return r
    } finally {
      session.done()
    }
  }
}
