/**
 * `npm run mutate`: mutation testing with StrykerJS (stryker.config.mjs), then a per-file score table.
 *
 *   npm run mutate -- --help                             this usage
 *   npm run mutate                                       the files in TARGETS (slow: pick files instead)
 *   npm run mutate -- --mutate src/ssh/cert.ts           one file (repeat, or separate with commas)
 *   npm run mutate -- --mutate src/ssh/wire.ts:80-95     a line range
 *   npm run mutate -- --tests 'test/unit/ssh/*.test.ts'  only these test files
 *   npm run mutate -- --runner command --mutate src/client/setup/bootstrap.ts
 *   SSHCA_MUTATE=src/ssh/cert.ts npm run mutate          the same through the environment
 *
 * Anything else is passed on to `stryker run` (e.g. --incremental, --logLevel debug).
 * Score = (killed + timed out) ÷ (all mutants − those marked equivalent). Mutants that made the tests
 * crash (runtime/compile errors) count against it: a test setup Stryker cannot re-run is a bug here.
 */
import {spawnSync} from 'node:child_process'
import {existsSync, readFileSync, rmSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const REPORT = join(ROOT, 'reports', 'mutation', 'mutation.json')
const GOAL = 90

const USAGE = `npm run mutate -- [--mutate FILE[:LINES]]... [--tests GLOB]... [--runner mocha|command] [--concurrency 1|2] [stryker flags]

  npm run mutate -- --mutate src/ca/provisioner/oidc.ts --tests 'test/unit/ca/oidc*.test.ts'   one file, its tests
  npm run mutate -- --mutate src/ssh/wire.ts:80-95                                             a line range
  npm run mutate -- --runner command --mutate src/client/setup/bootstrap.ts                    code run by bin/run.cjs
  SSHCA_MUTATE=src/ssh/cert.ts npm run mutate                                                  the same by environment

Without --mutate every file in TARGETS (stryker.config.mjs) is mutated: hours. Pick one file at a time.
The per-file table is printed at the end; reports/mutation/mutation.html lists every mutant.
CONTRIBUTING.md ("Mutation testing") says when to run it; docs/mutation.md holds the scores.`

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(USAGE)
  process.exit(0)
}

const env: NodeJS.ProcessEnv = {...process.env}
const passOn: string[] = []
const add = (name: string, value: string) => (env[name] = env[name] ? `${env[name]},${value}` : value)
const args = process.argv.slice(2)
for (let i = 0; i < args.length; i++) {
  const a = args[i]!
  const [flag, inline] =
    a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined]
  const value = (): string => {
    const v = inline ?? args[++i]
    if (v === undefined) throw new Error(`${flag} needs a value`)
    return v
  }
  if (flag === '--mutate' || flag === '-m') add('SSHCA_MUTATE', value())
  else if (flag === '--tests') add('SSHCA_MUTATE_TESTS', value())
  else if (flag === '--runner') env.SSHCA_MUTATE_RUNNER = value()
  else if (flag === '--concurrency' || flag === '-c') env.SSHCA_MUTATE_CONCURRENCY = value()
  else passOn.push(a)
}
if (!env.SSHCA_MUTATE)
  console.error(
    'mutate: no --mutate given, so every file in TARGETS is mutated (hours). One file: npm run mutate -- --mutate FILE (--help for more)',
  )
const concurrency = Number(env.SSHCA_MUTATE_CONCURRENCY ?? 2)
if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 2) {
  console.error('--concurrency must be 1 or 2: the machines this runs on are shared and have few cores')
  process.exit(2)
}

function step(what: string, cmd: string, cmdArgs: string[]): void {
  console.error(`mutate: ${what}`)
  const r = spawnSync(cmd, cmdArgs, {cwd: ROOT, env, stdio: 'inherit'})
  if (r.status !== 0) {
    console.error(`mutate: ${what} failed (${r.error?.message ?? `exit ${r.status}`})`)
    process.exit(r.status ?? 1)
  }
}

const bin = (name: string): string => join(ROOT, 'node_modules', '.bin', name)
// @stryker-mutator/mocha-runner 10.0.0 cannot load mocha 12's .cjs cli helpers: patches/ fixes that
// until upstream does (stryker-js#6205). Applied here, not on install: the published package must not
// run patch-package on its users' machines.
step('applying patches/ (patch-package)', bin('patch-package'), ['--error-on-fail'])
// the CLI tests run dist/ inside Stryker's sandbox: it must be built from the sources being mutated,
// the fast path's bundles (dist/fast: list, login, proxycommand) too
if ((env.SSHCA_MUTATE_RUNNER ?? 'mocha') === 'mocha') {
  step('building dist/', bin('tsc'), ['-p', 'tsconfig.build.json'])
  step('bundling dist/fast/', process.execPath, [join(ROOT, 'scripts', 'bundle-fast.ts')])
}

rmSync(REPORT, {force: true})
const stryker = spawnSync(bin('stryker'), ['run', 'stryker.config.mjs', ...passOn], {cwd: ROOT, env, stdio: 'inherit'})

if (existsSync(REPORT)) printScores(JSON.parse(readFileSync(REPORT, 'utf8')) as Report)
process.exit(stryker.status ?? 1)

interface Report {
  files: Record<string, {mutants: {status: string}[]}>
}

function printScores(report: Report): void {
  const cols = ['file', 'mutants', 'killed', 'timeout', 'survived', 'no cov', 'errors', 'equivalent', 'score'] as const
  const rows: string[][] = []
  for (const [file, {mutants}] of Object.entries(report.files).sort(([a], [b]) => a.localeCompare(b))) {
    const n = (...statuses: string[]) => mutants.filter((m) => statuses.includes(m.status)).length
    const ignored = n('Ignored')
    const counted = mutants.length - ignored
    const detected = n('Killed', 'Timeout')
    const score = counted === 0 ? 100 : (100 * detected) / counted
    rows.push([
      file,
      String(mutants.length),
      String(n('Killed')),
      String(n('Timeout')),
      String(n('Survived')),
      String(n('NoCoverage')),
      String(n('RuntimeError', 'CompileError')),
      String(ignored),
      `${(Math.floor(score * 10) / 10).toFixed(1)}%${score < GOAL ? ' < goal' : ''}`,
    ])
  }
  const width = cols.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(width[i]!) : c.padStart(width[i]!))).join(' | ')} |`
  console.log(`\nMutation score per file = (killed + timeout) ÷ (mutants − equivalent); goal ${GOAL}%\n`)
  console.log(line(cols))
  console.log(`|${width.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`)
  for (const r of rows) console.log(line(r))
}
