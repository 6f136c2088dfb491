import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {sshcaHome} from '../client/home/home.ts'
import {logout} from '../client/login/logout.ts'
import {defaultTokenStore} from '../client/home/token-store.ts'

export default class Logout extends BaseCommand {
  static override summary =
    "Remove this CA's certificates (and their keys) from ssh-agent and forget the saved sign-in."
  static override description = `Removes from ssh-agent every certificate signed by the current CA's user CA key (or only those naming
IDENTITY as principal or key ID), with their keys, removes the key and certificate files of a context whose
agent could not hold certificates, and forgets the saved refresh tokens for it. --all does this for every
bootstrapped CA. Without an ssh-agent in reach it still forgets the refresh tokens and removes the files,
then fails with the agent's error, saying so.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> alice',
    '<%= config.bin %> <%= command.id %> --all',
  ]

  static override args = {
    identity: Args.string({description: 'only certificates for this principal or key ID', ignoreStdin: true}),
  }
  static override flags = {
    context: contextFlag,
    all: Flags.boolean({description: 'every bootstrapped CA, not only the current one', exclusive: ['context']}),
  }

  async run() {
    const {args, flags} = await this.parse(Logout)
    const home = sshcaHome()
    const r = await logout(
      {
        ...(flags.context ? {context: flags.context} : {}),
        ...(args.identity ? {identity: args.identity} : {}),
        all: flags.all,
      },
      {home, agent: {}, tokenStore: () => defaultTokenStore(home)},
    )
    this.out(
      r.removed.length === 0
        ? `No certificates from ${r.contexts.join(', ')} in the ssh-agent.\n`
        : `Removed ${r.removed.length} certificate(s): ${r.removed.map((x) => x.keyId).join(', ')}.\n`,
    )
    if (r.removedFiles.length > 0) this.out(`Removed ${r.removedFiles.join(' and ')}.\n`)
    if (r.forgottenRefreshTokens > 0)
      this.out(`Forgot ${r.forgottenRefreshTokens} saved sign-in(s); the next login opens the browser.\n`)
    return r
  }
}
