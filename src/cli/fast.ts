/**
 * The start-up fast path. `sshca list` and `sshca login --identity-token-file` run many times a day
 * (the second in every CI job), and @oclif/core alone takes longer to import than either command.
 * bin/run.js asks this module first; it takes only argument lists it fully understands (strict
 * parseArgs, values checked) and returns false for everything else (help, unknown flags, usage
 * errors, other commands), which oclif then handles. Both paths run the same code after parsing;
 * test/integration/cli-fast-path.test.ts checks that they print the same.
 */
import {parseArgs, type ParseArgsConfig} from 'node:util'
import {errorJson, errorText, exitCodeFor, toSshcaError} from './errors.ts'

type Values = Record<string, string | boolean | undefined>

interface FastCommand {
  options: NonNullable<ParseArgsConfig['options']>
  /** How many positional arguments it takes (exactly); none when absent. */
  positionals?: number
  /** No --json: its stdout is not a document (proxycommand's is ssh's transport). */
  noJson?: boolean
  /** False when oclif should take these arguments (it then reports any usage error itself). */
  accepts(v: Values): boolean
  run(v: Values, args: string[]): Promise<{result: unknown; text: string}>
}

const COMMANDS: Record<string, FastCommand> = {
  list: {
    options: {raw: {type: 'boolean'}, json: {type: 'boolean'}},
    accepts: () => true,
    run: async (v) => (await import('./list.ts')).runList({raw: v.raw === true}),
  },
  // with a token file (CI), or --ensure (ssh's Match exec, before every connection: it must be quick)
  login: {
    options: {
      'identity-token-file': {type: 'string'},
      context: {type: 'string'},
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
      [v.context, v.out, v['identity-token-file']].every((s) => s === undefined || (typeof s === 'string' && s !== '' && (s === '-' || !s.startsWith('-')))),
    run: async (v) =>
      (await import('./login-run.ts')).runLogin({
        identityTokenFile: v['identity-token-file'] as string | undefined,
        context: v.context as string | undefined,
        kty: (v.kty as 'ed25519' | 'ecdsa' | undefined) ?? 'ed25519',
        force: v.force === true,
        out: v.out as string | undefined,
        timeout: 300,
        ensure: v.ensure === true,
        quiet: v.quiet === true,
      }),
  },
  // ProxyCommand sshca proxycommand %r %h %p: once per connection ssh opens
  proxycommand: {
    options: {context: {type: 'string'}, 'identity-token-file': {type: 'string'}},
    positionals: 3,
    noJson: true,
    accepts: (v) => [v.context, v['identity-token-file']].every((s) => s === undefined || (typeof s === 'string' && s !== '' && !s.startsWith('-'))),
    run: async (v, args) => (await import('./proxy-run.ts')).runProxy({user: args[0]!, host: args[1]!, port: args[2]!, context: v.context as string | undefined, identityTokenFile: v['identity-token-file'] as string | undefined}),
  },
}

/** `--version`, alone or with `--json`. */
export const isVersionRequest = (argv: readonly string[]): boolean =>
  argv.includes('--version') && argv.length <= 2 && argv.every((a) => a === '--version' || a === '--json')

export async function tryFastPath(argv: readonly string[]): Promise<boolean> {
  // --version is always answered here: oclif's would print neither how sshca was installed nor how to upgrade it
  if (isVersionRequest(argv)) {
    const {versionInfo, renderVersion} = await import('./version.ts')
    const v = await versionInfo()
    process.stdout.write(argv.includes('--json') ? `${JSON.stringify(v, null, 2)}\n` : renderVersion(v))
    return true
  }
  if (process.env.SSHCA_NO_FAST_PATH) return false
  const cmd = COMMANDS[argv[0] ?? '']
  if (!cmd) return false
  let values: Values
  let positionals: string[]
  try {
    const parsed = parseArgs({args: argv.slice(1), options: cmd.options, strict: true, allowPositionals: cmd.positionals !== undefined})
    values = parsed.values as Values
    positionals = parsed.positionals
  } catch {
    return false
  }
  if (positionals.length !== (cmd.positionals ?? 0) || !cmd.accepts(values)) return false
  const json = values.json === true && !cmd.noJson
  try {
    const {result, text} = await cmd.run(values, positionals)
    process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : text)
  } catch (err) {
    const e = toSshcaError(err)
    if (json) process.stdout.write(`${JSON.stringify(errorJson(e), null, 2)}\n`)
    else process.stderr.write(errorText(e))
    process.exitCode = exitCodeFor(e)
  }
  return true
}
