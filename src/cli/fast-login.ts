/**
 * `sshca login` on the fast path (src/cli/fast.ts): with a token file (CI), or --ensure (ssh's Match
 * exec, before every connection: it must be quick). Anything interactive (browser, device flow, a
 * prompt) goes to oclif.
 */
import {runFast} from './fast-run.ts'
import {runLogin} from './login-run.ts'

/** `argv`: the whole argument list, the command's name first. */
export const tryFastPath = (argv: readonly string[]): Promise<boolean> =>
  runFast(
    {
      options: {
        'identity-token-file': {type: 'string'},
        context: {type: 'string'},
        provisioner: {type: 'string'},
        kty: {type: 'string'},
        force: {type: 'boolean'},
        'no-agent': {type: 'boolean'},
        out: {type: 'string'},
        json: {type: 'boolean'},
        ensure: {type: 'boolean'},
        quiet: {type: 'boolean', short: 'q'},
      },
      accepts: (v) =>
        (typeof v['identity-token-file'] === 'string' || v.ensure === true) &&
        (v.kty === undefined || v.kty === 'ed25519' || v.kty === 'ecdsa') &&
        (v['no-agent'] === true) === (typeof v.out === 'string') &&
        [v.context, v.provisioner, v.out, v['identity-token-file']].every(
          (s) => s === undefined || (typeof s === 'string' && s !== '' && (s === '-' || !s.startsWith('-'))),
        ),
      run: async (v) =>
        runLogin({
          identityTokenFile: v['identity-token-file'] as string | undefined,
          context: v.context as string | undefined,
          provisioner: v.provisioner as string | undefined,
          kty: (v.kty as 'ed25519' | 'ecdsa' | undefined) ?? 'ed25519',
          force: v.force === true,
          out: v.out as string | undefined,
          timeout: 300,
          ensure: v.ensure === true,
          quiet: v.quiet === true,
        }),
    },
    argv.slice(1),
  )
