/**
 * `npm run fuzz`: the fuzz properties of test/fuzz/ for longer than CI runs them, with a fresh seed
 * (printed first, so any failure can be replayed) or a given one.
 *
 *   npm run fuzz                                  5 minutes in all, a random seed
 *   npm run fuzz -- --minutes 10                  (or --seconds N) shared equally by the properties
 *   npm run fuzz -- --runs 100000                 a run count per property instead (a cap with a time)
 *   npm run fuzz -- --grep 'private key'          only the properties whose title contains this
 *   npm run fuzz -- --seed 123 --path 4:1:0 --grep 'title'   replay one counterexample
 *
 * A failure prints fast-check's seed, path and shrunk counterexample, and the command that replays it.
 */
import {spawnSync} from 'node:child_process'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {parseArgs} from 'node:util'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const mocha = join(root, 'node_modules', 'mocha', 'bin', 'mocha.js')
const SPEC = 'test/fuzz/**/*.test.ts'

const {values} = parseArgs({
  options: {
    minutes: {type: 'string'},
    seconds: {type: 'string'},
    runs: {type: 'string'},
    seed: {type: 'string'},
    path: {type: 'string'},
    grep: {type: 'string'},
    help: {type: 'boolean', short: 'h'},
  },
})
if (values.help) {
  console.log('usage: npm run fuzz -- [--minutes N | --seconds N] [--runs N] [--seed S] [--path P] [--grep TITLE]')
  process.exit(0)
}

const number = (name: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`--${name} ${v}: expected a positive number`)
    process.exit(2)
  }
  return n
}

// --grep takes a piece of a title as written (titles hold parentheses and arrows), not a regex
const grep = values.grep ? ['--grep', values.grep.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')] : []
const seed = values.seed ?? String((Math.random() * 0x7fff_ffff) | 0)
const runs = number('runs', values.runs)
let total = number('seconds', values.seconds) ?? (values.minutes ? number('minutes', values.minutes)! * 60 : undefined)
if (total === undefined && runs === undefined && values.path === undefined) total = 5 * 60

// how many properties share the time: mocha lists them without running anything
const listed = spawnSync(process.execPath, [mocha, '--dry-run', '--reporter', 'json', ...grep, SPEC], {
  cwd: root,
  encoding: 'utf8',
  maxBuffer: 64 * 1024 * 1024,
})
if (listed.status !== 0) {
  process.stderr.write(listed.stderr)
  process.exit(listed.status ?? 1)
}
const count = (JSON.parse(listed.stdout) as {tests: {title: string}[]}).tests.length
if (count === 0) {
  console.error(`no fuzz property matches ${values.grep}`)
  process.exit(2)
}
const each = total === undefined ? undefined : Math.max(1, Math.floor(total / count))

const env: NodeJS.ProcessEnv = {...process.env, SSHCA_FUZZ_SEED: seed, SSHCA_FUZZ_REPORT: '1'}
if (each !== undefined) env.SSHCA_FUZZ_SECONDS = String(each)
if (runs !== undefined) env.SSHCA_FUZZ_RUNS = String(runs)
if (values.path !== undefined) env.SSHCA_FUZZ_PATH = values.path

const budget =
  [each !== undefined ? `${each} s` : undefined, runs !== undefined ? `at most ${runs} runs` : undefined]
    .filter(Boolean)
    .join(', ') || 'the CI run count'
console.log(
  `fuzz: seed ${seed}, ${count} properties, ${budget} each${values.path ? `, replaying path ${values.path}` : ''}`,
)
console.log(
  `      replay this run: npm run fuzz -- --seed ${seed}${values.seconds || values.minutes ? ` --seconds ${total}` : ''}${runs ? ` --runs ${runs}` : ''}${values.grep ? ` --grep ${JSON.stringify(values.grep)}` : ''}`,
)
const r = spawnSync(process.execPath, [mocha, '--timeout', '0', '--reporter', 'spec', ...grep, SPEC], {
  cwd: root,
  env,
  stdio: 'inherit',
})
process.exit(r.status ?? 1)
