/**
 * `npm run soak -- --minutes N [--rate R] [--token-ttl S]`: a real `sshca ca serve` under a steady
 * signing load with unique tokens (open loop: R requests per second whatever the answers take).
 * Each minute: requests, errors, p99, the server's RSS and live heap (after a full GC, through
 * bench/soak-probe.ts), open file descriptors, SQLite file sizes and row counts; at the end the slope
 * of each after warm-up. Targets (issue 9 §5): memory flat (< 10% growth after warm-up), fds flat,
 * 0 errors, the spent-token table bounded (purged as tokens expire).
 *
 * `npm run soak -- --overload [--minutes N]`: measures the rate the CA sustains (16 connections,
 * closed loop, 15 s), then offers 4× that rate open loop over up to 512 connections, and reports the
 * status codes, errors and the latency of the accepted requests. One load generator on the CA's own
 * cores cannot offer 4× what the CA sustains there (it spends as much CPU per request as the CA):
 * `--ca-cpus 0 --generator-cpus 1` pins each to its own CPUs (taskset), as a generator on another
 * machine would be; the CA then sizes itself for the CPUs it has.
 */
import {spawnSync} from 'node:child_process'
import {once} from 'node:events'
import {mkdtempSync, readdirSync, readFileSync, rmSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {monitorEventLoopDelay} from 'node:perf_hooks'
import {DatabaseSync} from 'node:sqlite'
import {setTimeout as sleep} from 'node:timers/promises'
import {parseArgs} from 'node:util'
import {Pool} from 'undici'
import {LeanPool, type LeanError} from './lean-client.ts'
import {PURGE_EVERY_MS} from '../src/ca/server.ts'
import {generatePrivateKey} from '../src/ssh/private-key.ts'
import {startGithubIssuer, type GithubIssuer} from '../test/helpers/github-issuer.ts'
import {benchCaDir, startCaServer} from './ca.ts'
import {percentile} from './lib.ts'

const {values: args} = parseArgs({
  options: {
    minutes: {type: 'string'},
    rate: {type: 'string', default: '200'},
    'token-ttl': {type: 'string', default: '60'},
    overload: {type: 'boolean', default: false},
    // --overload: offer this many requests a second instead of 4× the calibrated rate (which varies by a
    // third from run to run): the same load for two builds or limits compared in turns
    offer: {type: 'string'},
    // the CA's load-shedding limits, to try others than the defaults (ca.yaml's limits.*)
    'max-in-flight': {type: 'string'},
    'max-event-loop-delay': {type: 'string'},
    // CPU lists for taskset(1): the CA on some cores, this load generator on the others
    'ca-cpus': {type: 'string'},
    'generator-cpus': {type: 'string'},
    // ca serve --workers N (default: one per core the CA may use)
    workers: {type: 'string'},
  },
})
const minutes = Number(args.minutes ?? (args.overload ? 1 : 10))
// the overload mints every token before it starts (minting competes with the CA for the cores): they
// must outlive the run
const tokenTtl = args.overload ? Math.max(Number(args['token-ttl']), minutes * 60 + 120) : Number(args['token-ttl'])
const LEEWAY = 60 // the CA keeps a spent token id until exp + 60 s

/** Tokens minted ahead of use (ES256: cheap to mint, so the load generator stays light). */
class Minter {
  // taken from `head` on: Array.shift on the overload's 400,000 tokens copies them all each time, and
  // was a third of the load generator's CPU
  private readonly buffer: string[] = []
  private head = 0
  private running = true
  private readonly gh: GithubIssuer
  private readonly target: () => number
  starved = 0
  constructor(gh: GithubIssuer, target: () => number) {
    this.gh = gh
    this.target = target
    void this.loop()
  }
  private async loop(): Promise<void> {
    while (this.running) {
      if (this.size >= this.target()) {
        await sleep(10)
        continue
      }
      const now = Math.floor(Date.now() / 1000)
      this.buffer.push(...(await Promise.all(Array.from({length: 100}, () => this.gh.mint({}, {exp: now + tokenTtl})))))
    }
  }
  private get size(): number {
    return this.buffer.length - this.head
  }
  take(): string | undefined {
    if (this.head === this.buffer.length) {
      this.starved++
      return undefined
    }
    const t = this.buffer[this.head++]
    if (this.head >= 65_536) {
      this.buffer.splice(0, this.head)
      this.head = 0
    }
    return t
  }
  async ready(n: number): Promise<void> {
    while (this.size < n) await sleep(20)
  }
  stop(): void {
    this.running = false
  }
}

interface Window {
  status: Map<number, number>
  errors: Map<string, number>
  latencies: number[]
}
const newWindow = (): Window => ({status: new Map(), errors: new Map(), latencies: []})
const bump = <K>(m: Map<K, number>, k: K): void => void m.set(k, (m.get(k) ?? 0) + 1)
const total = (m: Map<unknown, number>): number => [...m.values()].reduce((a, b) => a + b, 0)
const mb = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MB`

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sshca-soak-'))
  const gh = await startGithubIssuer('sshca-ci', 'ES256')
  const {init, passwordFile} = await benchCaDir(dir, gh.issuer, 'full', {
    metrics: true,
    limits: {
      ...(args['max-in-flight'] ? {maxInFlight: Number(args['max-in-flight'])} : {}),
      ...(args['max-event-loop-delay'] ? {maxEventLoopDelay: Number(args['max-event-loop-delay'])} : {}),
    },
  })
  const {url, server, metrics} = await startCaServer(
    init.config,
    passwordFile,
    [
      '--expose-gc',
      '--import',
      join(import.meta.dirname, 'soak-probe.ts'),
      // SSHCA_BENCH_PROFILE=DIR: a CPU profile of each of the CA's threads there (as npm run bench -- ca)
      ...(process.env.SSHCA_BENCH_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.SSHCA_BENCH_PROFILE}`] : []),
    ],
    ['ignore', 'pipe', 'inherit', 'ipc'],
    args['ca-cpus'] ? ['taskset', '-c', args['ca-cpus']] : [],
    args.workers ? ['--workers', args.workers] : [],
  )
  const pid = server.pid!
  // every thread this process has now (main, libuv's pool, V8's); threads started later inherit it
  if (args['generator-cpus']) {
    const r = spawnSync('taskset', ['-a', '-p', '-c', args['generator-cpus'], String(process.pid)], {encoding: 'utf8'})
    if (r.status !== 0) throw new Error(`taskset failed: ${r.stderr}`)
  }
  if (args['ca-cpus'] || args['generator-cpus'])
    console.log(
      `CPUs: the CA on ${args['ca-cpus'] ?? 'any'}, this load generator on ${args['generator-cpus'] ?? 'any'}`,
    )
  const ca = readFileSync(join(init.dir, 'certs', 'root_ca.crt'))
  const subject = generatePrivateKey('ed25519').publicKey.blob.toString('base64')
  const dbFile = join(init.dir, 'db', 'sshca.sqlite')
  let rate = Number(args.rate)
  // tokens kept ready: 3 s of load; set to a fixed stock while calibrating, so minting does not compete
  let stock: number | undefined
  const minter = new Minter(gh, () => stock ?? Math.max(2000, rate * 3))
  let pool: Pool | undefined
  let lean: LeanPool | undefined
  const cleanup = async (): Promise<void> => {
    minter.stop()
    if (server.exitCode === null) {
      server.kill('SIGTERM')
      await Promise.race([once(server, 'exit'), sleep(10_000).then(() => server.kill('SIGKILL'))])
    }
    await pool?.destroy()
    lean?.close()
    await gh.stop()
    rmSync(dir, {recursive: true, force: true})
  }
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))

  let inFlight = 0
  let maxInFlight = 0
  // an open-loop generator with a connection pool queues what it cannot send, and that queue would count
  // as the CA's latency: a request finds a free connection or is not sent (and counted as not sent)
  let connections = Infinity
  let notSent = 0
  /** undici for the soak; the overload's lean client (bench/lean-client.ts) costs the generator less per request. */
  const post = async (p: Pool | LeanPool, body: string): Promise<number> => {
    if (p instanceof LeanPool) return p.post('/ssh/sign', body)
    const res = await p.request({
      path: '/ssh/sign',
      method: 'POST',
      headers: {'content-type': 'application/json'},
      body,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    })
    await res.body.dump()
    return res.statusCode
  }
  const send = (p: Pool | LeanPool, w: () => Window): void => {
    if (inFlight >= connections) return void notSent++
    const ott = minter.take()
    if (ott === undefined) return
    const t0 = performance.now()
    inFlight++
    maxInFlight = Math.max(maxInFlight, inFlight)
    post(p, JSON.stringify({publicKey: subject, ott}))
      .then((status) => {
        const win = w()
        bump(win.status, status)
        if (status === 201) win.latencies.push(performance.now() - t0)
      })
      .catch((err: LeanError) => bump(w().errors, err.code ?? err.message))
      .finally(() => inFlight--)
  }

  /** Offers `perSecond` requests each second for `ms`, open loop; calls `tick` every `everyMs`. */
  const drive = async (
    p: Pool | LeanPool,
    perSecond: number,
    ms: number,
    everyMs: number,
    tick: (w: Window, i: number) => Promise<void>,
  ): Promise<void> => {
    let w = newWindow()
    const start = performance.now()
    let sent = 0
    let next = everyMs
    let i = 0
    // reports run beside the load, one after the other, so probing never pauses the requests
    let reports = Promise.resolve()
    while (performance.now() - start < ms) {
      const due = Math.floor(((performance.now() - start) / 1000) * perSecond)
      for (; sent < due; sent++) send(p, () => w)
      if (performance.now() - start >= next) {
        const done = w
        const n = ++i
        w = newWindow()
        reports = reports.then(() => tick(done, n))
        next += everyMs
      }
      await sleep(5)
    }
    // let what is in flight land in the last window
    while (inFlight > 0) await sleep(20)
    await reports
    await tick(w, i + 1)
  }

  try {
    if (args.overload) await overload()
    else await soak()
  } finally {
    await cleanup()
  }

  async function probe(): Promise<{
    rss: number
    heapUsed: number
    external: number
    fds: number
    db: number
    wal: number
    shm: number
    spent: number
    certs: number
  }> {
    server.send('probe')
    const [m] = (await Promise.race([once(server, 'message'), sleep(15_000).then(() => [undefined])])) as [
      {rss: number; heapUsed: number; external: number} | undefined,
    ]
    if (!m) throw new Error('the server did not answer the probe')
    const size = (f: string): number => {
      try {
        return statSync(f).size
      } catch {
        return 0
      }
    }
    const db = new DatabaseSync(dbFile, {readOnly: true})
    const count = (t: string): number => Number((db.prepare(`SELECT count(*) AS n FROM ${t}`).get() as {n: number}).n)
    const spent = count('used_tokens')
    const certs = count('certificates')
    db.close()
    return {
      rss: m.rss,
      heapUsed: m.heapUsed,
      external: m.external,
      fds: readdirSync(`/proc/${pid}/fd`).length,
      db: size(dbFile),
      wal: size(`${dbFile}-wal`),
      shm: size(`${dbFile}-shm`),
      spent,
      certs,
    }
  }

  /** The CA's latency histogram of signing requests answered 201: cumulative counts by bucket bound (s). */
  async function signLatency(): Promise<Map<number, number>> {
    const out = new Map<number, number>()
    if (!metrics) return out
    const text = await (await fetch(metrics)).text()
    for (const m of text.matchAll(/^sshca_http_request_duration_seconds_bucket\{([^}]*)\} (\d+)$/gm)) {
      const labels = m[1]!
      if (!labels.includes('route="/ssh/sign"') || !labels.includes('status="201"')) continue
      const le = /le="([^"]+)"/.exec(labels)![1]!
      const bound = le === '+Inf' ? Infinity : Number(le)
      out.set(bound, (out.get(bound) ?? 0) + Number(m[2]))
    }
    return out
  }

  async function soak(): Promise<void> {
    pool = new Pool(url, {connections: 16, connect: {ca}})
    const bound = Math.ceil(rate * (tokenTtl + LEEWAY + PURGE_EVERY_MS / 1000))
    console.log(
      `soak: ${minutes} min at ${rate} certificates/s (open loop, 16 connections), tokens valid ${tokenTtl} s, SQLite durability full; server pid ${pid}`,
    )
    console.log(
      `spent-token table bound: rate × (token lifetime + ${LEEWAY} s leeway + ${PURGE_EVERY_MS / 1000} s purge interval) ≈ ${bound}`,
    )
    await minter.ready(rate * 2)
    const samples: (Awaited<ReturnType<typeof probe>> & {minute: number})[] = []
    let requests = 0
    let errors = 0
    await drive(pool, rate, minutes * 60_000, 60_000, async (w, minute) => {
      const ok = w.status.get(201) ?? 0
      const bad = total(w.status) - ok + total(w.errors)
      requests += total(w.status) + total(w.errors)
      errors += bad
      const s = {...(await probe()), minute}
      samples.push(s)
      const codes = [...w.status]
        .map(([c, n]) => `${c}×${n}`)
        .concat([...w.errors].map(([e, n]) => `${e}×${n}`))
        .join(' ')
      console.log(
        `min ${String(minute).padStart(2)}: ${codes || 'no answers'}  p99 ${w.latencies.length ? percentile(w.latencies, 99).toFixed(0) : '-'} ms | ` +
          `rss ${mb(s.rss)} heap ${mb(s.heapUsed)} ext ${mb(s.external)} fds ${s.fds} | db ${mb(s.db)} wal ${mb(s.wal)} shm ${(s.shm / 1024).toFixed(0)} KB | spent tokens ${s.spent} certificates ${s.certs}`,
      )
    })
    // warm-up: until the spent-token table can have reached its plateau (the first tokens expire and
    // are purged), plus a minute; the working set is not steady before
    const warm = Math.ceil((tokenTtl + LEEWAY + PURGE_EVERY_MS / 1000) / 60) + 1
    const after = samples.filter((s) => s.minute > warm && s.minute <= minutes)
    if (minutes < warm + 2)
      console.log(`\n(warm-up lasts ${warm} minutes at these settings: run at least ${warm + 2} minutes for slopes)`)
    else console.log(`\nafter warm-up (minutes ${warm + 1}–${minutes}): first → last, slope per minute (least squares)`)
    const line = (
      name: string,
      pick: (s: (typeof samples)[number]) => number,
      fmt: (n: number) => string,
      limit?: number,
    ): boolean => {
      if (after.length < 2) return true
      const first = pick(after[0]!)
      const last = pick(after.at(-1)!)
      const growth = first === 0 ? 0 : ((last - first) / first) * 100
      const ok = limit === undefined || growth < limit
      console.log(
        `  ${name.padEnd(14)} ${fmt(first)} → ${fmt(last)}  slope ${fmt(
          slope(
            after.map((s) => s.minute),
            after.map(pick),
          ),
        )}/min  growth ${growth.toFixed(1)}%${limit === undefined ? '' : ok ? `  ✓ (< ${limit}%)` : `  ✗ (target < ${limit}%)`}`,
      )
      return ok
    }
    line('rss', (s) => s.rss, mb, 10)
    line('live heap', (s) => s.heapUsed, mb, 10)
    line('external', (s) => s.external, mb)
    line(
      'fds',
      (s) => s.fds,
      (n) => n.toFixed(1),
      10,
    )
    line('db file', (s) => s.db, mb)
    line('wal file', (s) => s.wal, mb)
    line(
      'spent tokens',
      (s) => s.spent,
      (n) => n.toFixed(0),
    )
    line(
      'certificates',
      (s) => s.certs,
      (n) => n.toFixed(0),
    )
    const maxSpent = Math.max(...samples.map((s) => s.spent))
    console.log(
      `  spent tokens at most ${maxSpent} (bound ≈ ${bound}) ${maxSpent <= bound * 1.2 ? '✓ bounded' : '✗ above the bound'}`,
    )
    console.log(
      `  requests ${requests}, errors/non-201 ${errors} ${errors === 0 ? '✓' : '✗'}; load generator starved of tokens ${minter.starved} times`,
    )
  }

  async function overload(): Promise<void> {
    // the sustainable rate: 16 connections, closed loop, as the benchmark
    const calib = new Pool(url, {connections: 16, connect: {ca}})
    stock = 40_000
    await minter.ready(stock)
    stock = 0 // no minting while measuring
    let done = 0
    let stop = false
    const calibCodes = new Map<number, number>()
    const worker = async (): Promise<void> => {
      while (!stop) {
        const ott = minter.take()
        if (!ott) {
          await sleep(5)
          continue
        }
        const res = await calib.request({
          path: '/ssh/sign',
          method: 'POST',
          headers: {'content-type': 'application/json'},
          body: JSON.stringify({publicKey: subject, ott}),
        })
        await res.body.dump()
        bump(calibCodes, res.statusCode)
        if (res.statusCode === 201) done++
      }
    }
    const workers = Array.from({length: 16}, worker)
    await sleep(3000) // warm-up: JIT, JWKS, TLS
    const d0 = done
    const t0 = performance.now()
    await sleep(15_000)
    const sustainable = ((done - d0) * 1000) / (performance.now() - t0)
    stop = true
    await Promise.all(workers)
    console.log(
      `calibration: ${
        [...calibCodes]
          .sort()
          .map(([c, n]) => `${c} × ${n}`)
          .join(', ') || 'no answers'
      }`,
    )
    await calib.close()
    if (minter.starved > 0)
      console.log(
        `(the calibration ran out of pre-minted tokens ${minter.starved} times: the sustainable rate is at least what it shows)`,
      )
    stock = undefined
    const before = await probe()
    rate = args.offer ? Number(args.offer) : Math.round(sustainable * 4)
    console.log(
      `overload: sustainable ${sustainable.toFixed(0)} certificates/s (16 connections, closed loop, 15 s); offering ${rate}/s (${(rate / sustainable).toFixed(1)}×${args.offer ? ', --offer' : ''}) open loop for ${minutes} min over up to 512 connections`,
    )
    lean = new LeanPool(url, {ca})
    connections = 512
    // every token the run needs, minted now: the generator then only sends
    stock = Math.ceil(rate * minutes * 60 * 1.02) + 100
    await minter.ready(stock)
    stock = 0
    // the connections are opened just before the clock starts (the CA closes one that sends nothing for
    // limits.headersTimeout): this measures signing requests at 4×, not a storm of 512 handshakes (which
    // showed as a p99 of seconds in the first ten)
    await lean.warm(connections)
    const generatorLag = monitorEventLoopDelay({resolution: 5})
    generatorLag.enable()
    const caLatency0 = await signLatency()
    const all = newWindow()
    const offered0 = minter.starved
    await drive(lean, rate, minutes * 60_000, 10_000, async (w, i) => {
      for (const [c, n] of w.status) all.status.set(c, (all.status.get(c) ?? 0) + n)
      for (const [e, n] of w.errors) all.errors.set(e, (all.errors.get(e) ?? 0) + n)
      all.latencies.push(...w.latencies)
      const codes = [...w.status]
        .map(([c, n]) => `${c}×${n}`)
        .concat([...w.errors].map(([e, n]) => `${e}×${n}`))
        .join(' ')
      console.log(
        `  ${String(i * 10).padStart(4)} s: ${codes || 'no answers'}  p99 of 201s ${w.latencies.length ? percentile(w.latencies, 99).toFixed(0) : '-'} ms  in flight ${inFlight}`,
      )
    })
    generatorLag.disable()
    const caLatency = bucketDiff(await signLatency(), caLatency0)
    const after = await probe()
    const answered = total(all.status) + total(all.errors)
    console.log('\noverload summary')
    console.log(
      `  offered ${answered} requests (${(answered / (minutes * 60)).toFixed(0)}/s of ${rate}/s asked; the load generator lacked a token ${minter.starved - offered0} times)`,
    )
    console.log(
      `  status codes: ${
        [...all.status]
          .sort()
          .map(([c, n]) => `${c} × ${n}`)
          .join(', ') || 'none'
      }; errors: ${[...all.errors].map(([e, n]) => `${e} × ${n}`).join(', ') || 'none'}`,
    )
    if (notSent > 0) console.log(`  not sent: ${notSent} (all ${connections} connections were waiting for an answer)`)
    if (all.latencies.length)
      console.log(
        `  accepted (201), as the load generator saw them: p50 ${percentile(all.latencies, 50).toFixed(0)} ms, p99 ${percentile(all.latencies, 99).toFixed(0)} ms, max ${all.latencies.reduce((a, b) => Math.max(a, b), 0).toFixed(0)} ms (target p99 < 100 ms)`,
      )
    const p99 = bucketQuantile(caLatency, 0.99)
    console.log(
      `  accepted (201), as the CA timed them (its sshca_http_request_duration_seconds, request read → answer sent): p99 ≤ ${p99 === undefined ? '-' : `${(p99 * 1000).toFixed(0)} ms`} (the bucket's upper bound) of ${caLatency.get(Infinity) ?? 0}`,
    )
    console.log(
      `  the load generator's own event loop (it shares the cores): p99 delay ${(generatorLag.percentile(99) / 1e6).toFixed(0)} ms, max ${(generatorLag.max / 1e6).toFixed(0)} ms — a request it sends late, or reads late, looks slow`,
    )
    console.log(
      `  most requests in flight at once: ${maxInFlight}; server rss ${mb(before.rss)} → ${mb(after.rss)}, fds ${before.fds} → ${after.fds}`,
    )
  }
}

function bucketDiff(a: Map<number, number>, b: Map<number, number>): Map<number, number> {
  return new Map([...a].map(([k, v]) => [k, v - (b.get(k) ?? 0)]))
}

/** The upper bound of the bucket holding quantile q of a cumulative histogram; undefined when empty. */
function bucketQuantile(h: Map<number, number>, q: number): number | undefined {
  const n = h.get(Infinity) ?? 0
  if (n === 0) return undefined
  for (const [bound, count] of [...h].sort((x, y) => x[0] - y[0])) if (count >= q * n) return bound
  return Infinity
}

/** Least-squares slope of ys over xs. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let num = 0
  let den = 0
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my)
    den += (xs[i]! - mx) ** 2
  }
  return den === 0 ? 0 : num / den
}

await main()
