/** `ProxyCommand sshca proxycommand %r %h %p` on the fast path (src/cli/fast.ts): once per connection ssh opens. */
import {runFast} from './fast-run.ts'
import {runProxy} from './proxy-run.ts'

/** `argv`: the whole argument list, the command's name first. */
export const tryFastPath = (argv: readonly string[]): Promise<boolean> =>
  runFast(
    {
      options: {context: {type: 'string'}, 'identity-token-file': {type: 'string'}},
      positionals: 3,
      noJson: true,
      accepts: (v) =>
        [v.context, v['identity-token-file']].every(
          (s) => s === undefined || (typeof s === 'string' && s !== '' && !s.startsWith('-')),
        ),
      run: async (v, args) =>
        runProxy({
          user: args[0]!,
          host: args[1]!,
          port: args[2]!,
          context: v.context as string | undefined,
          identityTokenFile: v['identity-token-file'] as string | undefined,
        }),
    },
    argv.slice(1),
  )
