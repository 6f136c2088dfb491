/**
 * `npm run bench -- vs-step`: sshca against smallstep's step-ca on this machine, side by side.
 *
 * The same workload for both: one GitHub-Actions-shaped issuer (RS256 tokens, as GitHub signs them),
 * the same unique tokens in every round (each CA spends each token once), ed25519 SSH CA keys,
 * `POST /ssh/sign` over HTTPS from 16 keep-alive connections, logs to files, and equal durability:
 * sshca's SQLite at its default (ca.yaml db.durability: full, an fsync per group commit) and
 * step-ca's badger, which syncs every write (SyncWrites). Rounds alternate between the servers,
 * all started once, so a neighbour's load on a shared machine hits each of them alike; the ratios
 * are taken within a round, then their median across rounds.
 *
 * Needs the step-ca binary that scripts/build-step.sh builds into .cache/interop/bin (or
 * SSHCA_STEP_BIN=dir holding step-ca and step); without it, says how to build it.
 * SSHCA_BENCH_ROUNDS (default 5), SSHCA_BENCH_REQUESTS per round and server (default 6000),
 * SSHCA_BENCH_WORKERS (default "1,2": the sshca servers, by --workers), SSHCA_BENCH_WARMUP requests per
 * server before the rounds (default 1000; sshca reaches its rate after ~20,000). SSHCA_BENCH_GENERATOR: `lean`
 * (default: bench/lean-client.ts, a TLS write and a read a request) or `autocannon` (the generator of
 * the figures before 27 November 2026, which spends 40–65 µs a request on the cores the CAs share).
 * SSHCA_BENCH_CA_CPUS=0 SSHCA_BENCH_GENERATOR_CPUS=1 pin the CAs to some CPUs and this process (the
 * load generator) to others (taskset): each CA then has its cores to itself, and the rate is the CA's,
 * not what the generator leaves it.
 */
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {availableParallelism, loadavg, tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import autocannon from 'autocannon'
import {Agent, request} from 'undici'
import {initCa} from '../src/ca/init.ts'
import {generatePrivateKey} from '../src/ssh/private-key.ts'
import {writePolicy} from '../test/helpers/ca.ts'
import {startGithubIssuer} from '../test/helpers/github-issuer.ts'
import {LeanPool} from './lean-client.ts'
import {median, print} from './lib.ts'

const PASSWORD = 'benchmark password, not secret'
const STEP_BIN = resolve(process.env.SSHCA_STEP_BIN ?? '.cache/interop/bin')
const ROUNDS = Number(process.env.SSHCA_BENCH_ROUNDS ?? 5)
const REQUESTS = Number(process.env.SSHCA_BENCH_REQUESTS ?? 6000)
const WORKERS = (process.env.SSHCA_BENCH_WORKERS ?? '1,2').split(',').map(Number)
const WARMUP = Number(process.env.SSHCA_BENCH_WARMUP ?? 1000)
const AUDIENCE = 'sshca-ci'
const cpus = availableParallelism()
const CA_CPUS = process.env.SSHCA_BENCH_CA_CPUS
const GENERATOR_CPUS = process.env.SSHCA_BENCH_GENERATOR_CPUS
const GENERATOR = process.env.SSHCA_BENCH_GENERATOR ?? 'lean'
if (GENERATOR !== 'lean' && GENERATOR !== 'autocannon')
  throw new Error(`SSHCA_BENCH_GENERATOR is lean or autocannon, not ${GENERATOR}`)
const CONNECTIONS = 16

/** `cmd args`, under `taskset -c CA_CPUS` when the CAs are pinned (taskset execs it: the same pid). */
const onCaCpus = (cmd: string, args: string[]): [string, string[]] =>
  CA_CPUS ? ['taskset', ['-c', CA_CPUS, cmd, ...args]] : [cmd, args]

interface Server {
  name: string
  url: string
  pid: number
  ca: Buffer
  /** The request body for a key and a token. */
  body(publicKey: string, ott: string): string
  stop(): Promise<void>
}

interface Sample {
  rate: number
  p50: number
  p99: number
  cpuUs: number
  /** The CPU of the process's main thread per certificate: for sshca, the part more workers do not spread. */
  mainUs: number
  /** This process's CPU per request: the load generator, which shares the cores unless pinned. */
  generatorUs: number
  /**
   * The share of the machine's CPU time left idle during the round (/proc/stat): near 0, the CA was
   * bound by the cores; well above, by one of its threads (one worker) or by waiting.
   */
  idle: number
  ok: number
  total: number
  errors: number
}

export async function benchVsStep(): Promise<void> {
  if (!existsSync(join(STEP_BIN, 'step-ca')) || !existsSync(join(STEP_BIN, 'step'))) {
    console.log(`\nsshca vs step-ca: skipped, no step-ca in ${STEP_BIN}.
  Build it (Debian bookworm packages only, offline; about a minute): bash scripts/build-step.sh
  (or SSHCA_STEP_BIN=DIR with step-ca and step in DIR), then: npm run bench -- vs-step`)
    return
  }
  // both or neither: a child inherits this process's CPUs, so the CAs would share the generator's
  if (Boolean(CA_CPUS) !== Boolean(GENERATOR_CPUS))
    throw new Error('set both SSHCA_BENCH_CA_CPUS and SSHCA_BENCH_GENERATOR_CPUS, or neither')
  if (GENERATOR_CPUS) {
    // every thread of this process: the load generator, the issuer, undici
    const r = spawnSync('taskset', ['-a', '-p', '-c', GENERATOR_CPUS, String(process.pid)], {encoding: 'utf8'})
    if (r.status !== 0) throw new Error(`taskset failed: ${r.error?.message ?? r.stderr}`)
  }
  const loadStart = loadavg()[0]!.toFixed(2)
  const dir = mkdtempSync(join(tmpdir(), 'sshca-bench-vs-step-'))
  const gh = await startGithubIssuer(AUDIENCE, 'RS256')
  const servers: Server[] = []
  try {
    for (const n of WORKERS) servers.push(await startSshca(join(dir, `sshca-w${n}`), gh.issuer, n))
    servers.push(await startStepCa(join(dir, 'step-ca'), gh.issuer))
    const publicKey = generatePrivateKey('ed25519').publicKey.blob.toString('base64')
    // step-ca derives the principals from the email claim; sshca's rule ignores it
    const mint = (n: number): Promise<string[]> =>
      Promise.all(Array.from({length: n}, () => gh.mint({email: 'deploy@example.com'})))
    // warm-up: JIT, JWKS fetches, TLS sessions, the databases' first pages (SSHCA_BENCH_WARMUP, see CONTRIBUTING.md)
    const warm = await mint(WARMUP)
    for (const s of servers) await load(s, publicKey, warm)
    const samples = new Map<string, Sample[]>(servers.map((s) => [s.name, []]))
    for (let round = 0; round < ROUNDS; round++) {
      const tokens = await mint(REQUESTS)
      // alternate the order: whoever goes first in one round goes last in the next
      const order = round % 2 === 0 ? servers : [...servers].reverse()
      for (const s of order) samples.get(s.name)!.push(await load(s, publicKey, tokens))
      process.stderr.write(
        `round ${round + 1}/${ROUNDS}: ${order.map((s) => `${s.name} ${samples.get(s.name)!.at(-1)!.rate.toFixed(0)}/s (${samples.get(s.name)!.at(-1)!.cpuUs.toFixed(0)} µs a certificate, ${(samples.get(s.name)!.at(-1)!.idle * 100).toFixed(0)}% idle)`).join(', ')}\n`,
      )
    }
    report(servers, samples, loadStart)
  } finally {
    for (const s of servers) await s.stop()
    await gh.stop()
    rmSync(dir, {recursive: true, force: true})
  }
}

function report(servers: Server[], samples: Map<string, Sample[]>, loadStart: string): void {
  const step = samples.get('step-ca')!
  const rows = []
  for (const s of servers) {
    const xs = samples.get(s.name)!
    const m = (f: (x: Sample) => number): number => median(xs.map(f))
    const bad = xs.reduce((a, x) => a + x.errors + (x.total - x.ok), 0)
    rows.push({
      name: s.name,
      value: `${m((x) => x.rate).toFixed(0)} certificates/s, p50 ${m((x) => x.p50)} ms, p99 ${m((x) => x.p99)} ms, server CPU ${m((x) => x.cpuUs).toFixed(0)} µs/certificate (the load generator's ${m((x) => x.generatorUs).toFixed(0)} µs; the machine ${(m((x) => x.idle) * 100).toFixed(0)}% idle)${s.name === 'step-ca' ? '' : ` (main thread ${m((x) => x.mainUs).toFixed(0)} µs: at most ${(1e6 / m((x) => x.mainUs)).toFixed(0)}/s with any number of workers)`}, ${bad} errors or non-201 in ${xs.reduce((a, x) => a + x.total, 0)}`,
    })
  }
  for (const s of servers) {
    if (s.name === 'step-ca') continue
    const xs = samples.get(s.name)!
    const rate = median(xs.map((x, i) => x.rate / step[i]!.rate))
    const p99 = median(xs.map((x, i) => x.p99 / step[i]!.p99))
    // CPU per certificate moves least with the neighbours' load: what the rate would be on idle cores
    const cpu = median(xs.map((x, i) => step[i]!.cpuUs / x.cpuUs))
    rows.push({
      name: `${s.name} / step-ca`,
      value: `rate ${rate.toFixed(2)}×, p99 ${p99.toFixed(2)}×, step-ca spends ${cpu.toFixed(2)}× the CPU per certificate (medians of the ${xs.length} rounds' ratios; rate each round: ${xs.map((x, i) => (x.rate / step[i]!.rate).toFixed(2)).join(' ')})`,
      target: 'rate ≥ 2×, p99 ≤ 1×',
      ok: rate >= 2 && p99 <= 1,
    })
  }
  print(
    `sshca vs step-ca (RS256 tokens, ed25519 CA keys, durable stores, ${CONNECTIONS} connections (${GENERATOR}), ${REQUESTS} unique tokens a round, ${samples.get('step-ca')!.length} alternating rounds; ${cpus} cores${CA_CPUS ? `, the CAs on CPUs ${CA_CPUS} and the load generator on ${GENERATOR_CPUS}` : ''}, load average ${loadStart} → ${loadavg()[0]!.toFixed(2)})`,
    rows,
  )
}

/** Sends every token once over CONNECTIONS keep-alive connections; the server's CPU time from /proc. */
async function load(s: Server, publicKey: string, tokens: string[]): Promise<Sample> {
  return GENERATOR === 'lean' ? loadLean(s, publicKey, tokens) : loadAutocannon(s, publicKey, tokens)
}

/** The same load from bench/lean-client.ts: a TLS write and a read a request, its latency timed here. */
async function loadLean(s: Server, publicKey: string, tokens: string[]): Promise<Sample> {
  const pool = new LeanPool(s.url, {ca: s.ca})
  await pool.warm(CONNECTIONS)
  const latencies: number[] = []
  let next = 0
  let ok = 0
  let errors = 0
  const cpu0 = processCpuMs(s.pid)
  const main0 = processCpuMs(s.pid, s.pid)
  const generator0 = process.cpuUsage()
  const machine0 = machineCpu()
  const t0 = performance.now()
  await Promise.all(
    Array.from({length: CONNECTIONS}, async () => {
      while (next < tokens.length) {
        const body = s.body(publicKey, tokens[next++]!)
        const sent = performance.now()
        try {
          if ((await pool.post('/ssh/sign', body)) === 201) ok++
        } catch {
          errors++
        }
        latencies.push(performance.now() - sent)
      }
    }),
  )
  const elapsed = performance.now() - t0
  const idle = idleSince(machine0)
  const total = latencies.length
  const cpuUs = ((processCpuMs(s.pid) - cpu0) * 1000) / total
  const mainUs = ((processCpuMs(s.pid, s.pid) - main0) * 1000) / total
  const generator = process.cpuUsage(generator0)
  pool.close()
  latencies.sort((a, b) => a - b)
  const at = (p: number): number => Math.round(latencies[Math.min(total - 1, Math.floor((p / 100) * total))]!)
  return {
    rate: (total * 1000) / elapsed,
    p50: at(50),
    p99: at(99),
    cpuUs,
    mainUs,
    generatorUs: (generator.user + generator.system) / total,
    idle,
    ok,
    total,
    errors,
  }
}

async function loadAutocannon(s: Server, publicKey: string, tokens: string[]): Promise<Sample> {
  let next = 0
  let last = 0
  const cpu0 = processCpuMs(s.pid)
  const main0 = processCpuMs(s.pid, s.pid)
  const generator0 = process.cpuUsage()
  const machine0 = machineCpu()
  const t0 = performance.now()
  // autocannon ends a fixed-amount run on its one-second tick: the rate comes from the last response's time
  const r = await new Promise<autocannon.Result>((resolve, reject) => {
    const run = autocannon(
      {
        url: `${s.url}/ssh/sign`,
        connections: CONNECTIONS,
        pipelining: 1,
        amount: tokens.length,
        method: 'POST',
        headers: {'content-type': 'application/json'},
        // autocannon passes `tls` to tls.connect; its typings do not list it
        ...({tls: {ca: s.ca}} as object),
        requests: [{setupRequest: (req: autocannon.Request) => ({...req, body: s.body(publicKey, tokens[next++]!)})}],
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    )
    run.on('response', () => (last = performance.now()))
  })
  const idle = idleSince(machine0)
  const cpuUs = ((processCpuMs(s.pid) - cpu0) * 1000) / r.requests.total
  const mainUs = ((processCpuMs(s.pid, s.pid) - main0) * 1000) / r.requests.total
  const generator = process.cpuUsage(generator0)
  const generatorUs = (generator.user + generator.system) / r.requests.total
  return {
    rate: (r.requests.total * 1000) / (last - t0),
    p50: r.latency.p50,
    p99: r.latency.p99,
    cpuUs,
    mainUs,
    generatorUs,
    idle,
    ok: r['2xx'],
    total: r.requests.total,
    errors: r.errors,
  }
}

/** The machine's CPU times so far (/proc/stat's first line): idle, and all. */
function machineCpu(): {idle: number; all: number} {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  return {idle: f[3]! + f[4]!, all: f.reduce((a, b) => a + b, 0)}
}

const idleSince = (m: {idle: number; all: number}): number => {
  const now = machineCpu()
  return (now.idle - m.idle) / Math.max(1, now.all - m.all)
}

/** utime + stime of every thread of a process (or of its thread `tid`), ms. */
function processCpuMs(pid: number, tid?: number): number {
  const f = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8')
    .split(') ')[1]!
    .split(' ')
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100
}

async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1')
  await new Promise((r) => s.once('listening', r))
  const port = (s.address() as {port: number}).port
  await new Promise((r) => s.close(r))
  return port
}

async function waitFor(what: string, child: ChildProcess, ready: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 1200; i++) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`)
    if (await ready()) return
    await sleep(50)
  }
  throw new Error(`${what} did not start`)
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGTERM')
  await Promise.race([new Promise((r) => child.once('exit', r)), sleep(10_000).then(() => child.kill('SIGKILL'))])
}

/** `sshca ca serve --workers N`: the CI rule of bench/ca.ts, audit to a file, the default (durable) store. */
export async function startSshca(dir: string, issuer: string, workers: number): Promise<Server> {
  const init = await initCa({dir: join(dir, 'ca'), dnsNames: ['127.0.0.1'], password: PASSWORD})
  await writePolicy(init.config, {
    audit: {file: join(dir, 'audit.log')},
    // the rate limit stays on (its cost is part of the figure), with room for the benchmark's one address
    limits: {rate: {max: 1_000_000_000, window: '1m'}},
    provisioners: [
      {
        name: 'ci',
        type: 'oidc',
        issuer,
        audience: AUDIENCE,
        maxTtl: '15m',
        rules: [
          {
            name: 'deploy',
            match: {repository: 'acme/app', ref: 'refs/heads/main', event_name: ['push', 'workflow_dispatch']},
            certificate: {
              principals: ['deploy'],
              ttl: '10m',
              keyId: 'gha:${repository}:${run_id}',
              forceCommand: '/usr/local/bin/deploy.sh',
              sourceAddress: ['10.0.0.0/8'],
            },
          },
        ],
      },
    ],
  })
  const pw = join(dir, 'pw')
  writeFileSync(pw, `${PASSWORD}\n`, {mode: 0o600})
  const child = spawn(
    ...onCaCpus(process.execPath, [
      'bin/run.cjs',
      'ca',
      'serve',
      '--config',
      init.config,
      '--password-file',
      pw,
      '--address',
      '127.0.0.1:0',
      '--workers',
      String(workers),
      '--json',
    ]),
    {stdio: ['ignore', 'pipe', 'inherit']},
  )
  let out = ''
  child.stdout!.on('data', (d) => (out += d))
  let url = ''
  await waitFor('sshca ca serve', child, () => {
    try {
      url = (JSON.parse(out) as {url: string}).url
      return true
    } catch {
      return false
    }
  })
  return {
    name: `sshca --workers ${workers}`,
    url,
    pid: child.pid!,
    ca: readFileSync(join(init.dir, 'certs', 'root_ca.crt')),
    body: (publicKey, ott) => JSON.stringify({publicKey, ott}),
    stop: () => stopChild(child),
  }
}

/**
 * step-ca from `step ca init --ssh`, with ed25519 SSH CA keys (as sshca's) and an OIDC provisioner
 * for the issuer (client id = the tokens' audience); badger (its default database, SyncWrites on).
 */
async function startStepCa(dir: string, issuer: string): Promise<Server> {
  mkdirSync(dir, {recursive: true})
  const env = {...process.env, STEPPATH: join(dir, 'step')}
  const pw = join(dir, 'pw')
  writeFileSync(pw, `${PASSWORD}\n`, {mode: 0o600})
  const port = await freePort()
  const step = (...args: string[]): void => {
    const r = spawnSync(join(STEP_BIN, 'step'), args, {env, encoding: 'utf8'})
    if (r.status !== 0) throw new Error(`step ${args.join(' ')}: ${r.stderr}`)
  }
  step(
    'ca',
    'init',
    '--name',
    'bench',
    '--dns',
    '127.0.0.1',
    '--address',
    `127.0.0.1:${port}`,
    '--provisioner',
    'admin',
    '--password-file',
    pw,
    '--provisioner-password-file',
    pw,
    '--ssh',
  )
  const stepDir = join(dir, 'step')
  for (const k of ['user', 'host']) {
    rmSync(join(stepDir, 'secrets', `ssh_${k}_ca_key`), {force: true})
    rmSync(join(stepDir, 'certs', `ssh_${k}_ca_key.pub`), {force: true})
    step(
      'crypto',
      'keypair',
      join(stepDir, 'certs', `ssh_${k}_ca_key.pub`),
      join(stepDir, 'secrets', `ssh_${k}_ca_key`),
      '--kty',
      'OKP',
      '--crv',
      'Ed25519',
      '--password-file',
      pw,
    )
  }
  const caJson = join(stepDir, 'config', 'ca.json')
  const config = JSON.parse(readFileSync(caJson, 'utf8')) as {authority: {provisioners: unknown[]}; db: {type: string}}
  config.authority.provisioners.push({
    type: 'OIDC',
    name: 'ci',
    clientID: AUDIENCE,
    clientSecret: '',
    configurationEndpoint: `${issuer}/.well-known/openid-configuration`,
    claims: {enableSSHCA: true},
  })
  writeFileSync(caJson, JSON.stringify(config, null, 2))
  const log = join(dir, 'step-ca.log')
  const child = spawn(
    ...onCaCpus('sh', [
      '-c',
      `exec "$0" "$1" --password-file "$2" 2>>"$3" >>"$3"`,
      join(STEP_BIN, 'step-ca'),
      caJson,
      pw,
      log,
    ]),
    {env, stdio: 'ignore'},
  )
  const ca = readFileSync(join(stepDir, 'certs', 'root_ca.crt'))
  const url = `https://127.0.0.1:${port}`
  const dispatcher = new Agent({connect: {ca}})
  await waitFor('step-ca', child, async () => {
    try {
      const res = await request(`${url}/health`, {dispatcher})
      await res.body.dump()
      return res.statusCode === 200
    } catch {
      return false
    }
  })
  return {
    name: 'step-ca',
    url,
    pid: child.pid!,
    ca,
    body: (publicKey, ott) => JSON.stringify({publicKey, ott, certType: 'user'}),
    stop: async () => {
      await dispatcher.close()
      await stopChild(child)
    },
  }
}
