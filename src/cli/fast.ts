/**
 * The start-up fast path. `sshca list`, `sshca login --identity-token-file` (every CI job),
 * `sshca login --ensure` (ssh's Match exec, before every connection), `sshca proxycommand` (once per
 * connection ssh opens) and `sshca --version` run many times a day, and @oclif/core alone takes
 * longer to import than any of them. Each command has an entry module of its own (fast-list.ts,
 * fast-login.ts, fast-proxycommand.ts, on fast-run.ts) that `npm run build` bundles into dist/fast/
 * (scripts/bundle-fast.ts), so that Node reads a few files instead of a module graph: bin/run.cjs
 * loads that bundle by the command's name, anything else comes here (the single executable's
 * scripts/sea/main.ts always does). An entry takes only argument lists it fully understands (strict
 * parseArgs, values checked) and returns false for everything else (help, unknown flags, usage
 * errors), which oclif then handles. Both paths run the same code after parsing;
 * test/integration/cli-fast-path.test.ts checks that they print the same.
 */
import {jsonText, terminalText} from '../util/text.ts'

/** `--version`, alone or with `--json`. */
export const isVersionRequest = (argv: readonly string[]): boolean =>
  argv.includes('--version') && argv.length <= 2 && argv.every((a) => a === '--version' || a === '--json')

/** The commands with an entry; each entry's tryFastPath takes the whole argument list, as this one. */
const ENTRIES: Record<string, () => Promise<{tryFastPath(argv: readonly string[]): Promise<boolean>}>> = {
  list: () => import('./fast-list.ts'),
  login: () => import('./fast-login.ts'),
  proxycommand: () => import('./fast-proxycommand.ts'),
}

export async function tryFastPath(argv: readonly string[]): Promise<boolean> {
  // --version is always answered here: oclif's would print neither how sshca was installed nor how to upgrade it
  if (isVersionRequest(argv)) {
    const {versionInfo, renderVersion} = await import('./version.ts')
    const v = await versionInfo()
    process.stdout.write(argv.includes('--json') ? jsonText(v) : terminalText(renderVersion(v)))
    return true
  }
  const name = argv[0] ?? ''
  if (!Object.hasOwn(ENTRIES, name)) return false
  return (await ENTRIES[name]!()).tryFastPath(argv)
}
