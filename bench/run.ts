/**
 * `npm run bench [-- name…]`: prints the numbers the issues set targets for. Targets are reported,
 * never asserted: timing belongs here, not in tests.
 */
import {availableParallelism, loadavg} from 'node:os'
import {benchCa} from './ca.ts'
import {benchHsm} from './hsm.ts'
import {benchLogin} from './login.ts'
import {benchReplicas} from './replicas.ts'
import {benchSigning} from './ssh.ts'
import {benchStartup} from './startup.ts'
import {benchVsStep} from './vs-step.ts'

const benches: Record<string, () => Promise<void>> = {
  sign: benchSigning,
  startup: benchStartup,
  ca: benchCa,
  login: benchLogin,
  replicas: benchReplicas,
  'vs-step': benchVsStep,
  hsm: benchHsm,
}

const only = process.argv.slice(2)
// counted before a benchmark pins this process to some of them (vs-step, SSHCA_BENCH_GENERATOR_CPUS)
const cores = availableParallelism()
for (const [name, fn] of Object.entries(benches)) {
  if (only.length > 0 && !only.includes(name)) continue
  const before = loadavg()[0]!.toFixed(2)
  await fn()
  // on a shared machine the neighbours' load is part of every figure: say what it was
  console.log(`  (${name}: load average ${before} → ${loadavg()[0]!.toFixed(2)} on ${cores} cores)`)
}
