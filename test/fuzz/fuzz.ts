/**
 * How the fuzz properties run. In `npm test` (CI): a fixed seed and a small run count per property,
 * so the suite is deterministic and cheap. Under `npm run fuzz` (scripts/fuzz.ts sets the variables):
 * a random or given seed, each property for SSHCA_FUZZ_SECONDS and/or SSHCA_FUZZ_RUNS.
 *
 *   SSHCA_FUZZ_SEED      seed for every property (default: fixed in CI, random under `npm run fuzz`)
 *   SSHCA_FUZZ_RUNS      runs per property (a cap when SSHCA_FUZZ_SECONDS is set too)
 *   SSHCA_FUZZ_SECONDS   time budget per property
 *   SSHCA_FUZZ_PATH      fast-check's counterexample path: replays one failing case directly
 *   SSHCA_FUZZ_REPORT    1: print each property's run count at exit (always on under `npm run fuzz`)
 */
import fc from 'fast-check'

/** The seed CI runs with. Changing it changes which inputs CI tries: do it on purpose only. */
export const CI_SEED = 0x5e_ca_f0_22

const env = process.env
const num = (name: string): number | undefined => {
  const v = env[name]
  if (v === undefined || v === '') return undefined
  const n = Number(v)
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}=${v} is not a non-negative number`)
  return n
}

const RUNS = num('SSHCA_FUZZ_RUNS')
const SECONDS = num('SSHCA_FUZZ_SECONDS')
/** True under `npm run fuzz`: longer runs and a fresh seed. */
export const LONG = RUNS !== undefined || SECONDS !== undefined
export const SEED = num('SSHCA_FUZZ_SEED') ?? (LONG ? (Math.random() * 0x7fff_ffff) | 0 : CI_SEED)
const PATH = env.SSHCA_FUZZ_PATH || undefined
const REPORT = LONG || env.SSHCA_FUZZ_REPORT === '1'

/** fast-check parameters for a property that makes `ciRuns` runs in CI. */
export function parameters(ciRuns: number): fc.Parameters<unknown> {
  const base: fc.Parameters<unknown> = {seed: SEED, ...(PATH ? {path: PATH, endOnFailure: true} : {})}
  if (!LONG) return {...base, numRuns: ciRuns}
  return {
    ...base,
    numRuns: RUNS ?? Number.MAX_SAFE_INTEGER,
    ...(SECONDS !== undefined ? {interruptAfterTimeLimit: SECONDS * 1000, markInterruptAsFailure: false} : {}),
  }
}

/** The mocha timeout a property needs: generous in CI (shared machines), budget + margin when long. */
export function timeoutMs(ciMs = 60_000): number {
  if (!LONG) return ciMs
  return SECONDS !== undefined ? SECONDS * 1000 + 120_000 : 0
}

const tally: {title: string; runs: number; ms: number}[] = []

/**
 * One property as one mocha test. The failure message is fast-check's (seed, path, shrunk
 * counterexample) plus how to replay it.
 */
export function property<Ts extends [unknown, ...unknown[]]>(
  title: string,
  ciRuns: number,
  prop: fc.IRawProperty<Ts>,
): void {
  it(title, async function () {
    this.timeout(timeoutMs())
    const started = performance.now()
    const details = await fc.check(prop, parameters(ciRuns) as fc.Parameters<Ts>)
    tally.push({title, runs: details.numRuns, ms: performance.now() - started})
    if (details.failed) {
      const replay = `replay: npm run fuzz -- --seed ${details.seed} --path ${details.counterexamplePath ?? ''} --grep ${JSON.stringify(title)}`
      const cause = details.errorInstance as Error | undefined
      throw new Error(`${fc.defaultReportMessage(details)}\nGot: ${cause?.stack ?? String(cause)}\n${replay}`, {cause})
    }
  })
}

if (REPORT) {
  process.on('exit', () => {
    if (tally.length === 0) return
    const total = tally.reduce((s, t) => s + t.runs, 0)
    const lines = tally.map(
      (t) => `  ${String(t.runs).padStart(9)}  ${(t.ms / 1000).toFixed(1).padStart(7)} s  ${t.title}`,
    )
    process.stderr.write(`\nfuzz seed ${SEED}: ${total} runs in ${tally.length} properties\n${lines.join('\n')}\n`)
  })
}

/** Runs `fn` and fails the property when it takes longer than `ms` (a hang or a quadratic blow-up). */
export function bounded<T>(ms: number, what: string, fn: () => T): T {
  const t0 = performance.now()
  const out = fn()
  const took = performance.now() - t0
  if (took > ms) throw new Error(`${what} took ${took.toFixed(0)} ms (limit ${ms} ms)`)
  return out
}
