/**
 * `npm run bench -- replicas`: HTTPS POST /ssh/sign throughput (16 keep-alive connections, a unique
 * ES256 token per request, autocannon) for
 *   SQLite, 1 replica  vs  PostgreSQL, 1 replica            (what the shared store costs)
 *   PostgreSQL, 1 replica  vs  3 replicas, through HAProxy   (what replicas buy)
 * PostgreSQL is Debian's server in a temp dir with fsync on and synchronous_commit on (as the store
 * sets it): a certificate is answered after its record is on disk, as with SQLite here.
 * The four are measured in alternating rounds (A B C D, A B C D, …) so that load from elsewhere on
 * the box falls on all of them; each figure is the median, with the range across rounds.
 * Caveat: this box has 2 cores shared by the load generator, PostgreSQL, HAProxy and every replica;
 * three replicas on 2 cores cannot triple anything: the figure shows the cost of the balancer and the
 * coordination, and that the throughput holds, not how replicas on separate machines scale.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {randomUUID} from 'node:crypto'
import {cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import autocannon from 'autocannon'
import {initCa} from '../src/ca/init.ts'
import {generatePrivateKey} from '../src/ssh/private-key.ts'
import {writePolicy} from '../test/helpers/ca.ts'
import {startGithubIssuer} from '../test/helpers/github-issuer.ts'
import {startHaproxy, type Haproxy} from '../test/helpers/haproxy.ts'
import {postgresBinDir, startPostgres} from '../test/helpers/postgres.ts'
import {stopAll} from '../test/helpers/proc.ts'
import {removeTempDirs} from '../test/helpers/tmp.ts'
import {median, print} from './lib.ts'

const PASSWORD = 'benchmark password, not secret'
const ROUNDS = Number(process.env.SSHCA_BENCH_ROUNDS ?? 3)
const AMOUNT = Number(process.env.SSHCA_BENCH_AMOUNT ?? 2000)

interface Server {
  url: string
  port: number
  child: ChildProcess
}

async function serve(config: string, pw: string): Promise<Server> {
  const child = spawn(
    process.execPath,
    ['bin/run.cjs', 'ca', 'serve', '--config', config, '--password-file', pw, '--address', '127.0.0.1:0', '--json'],
    {stdio: ['ignore', 'pipe', 'inherit']},
  )
  let out = ''
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  for (let i = 0; i < 2400 && !out.includes('"url"'); i++) {
    if (child.exitCode !== null) throw new Error(`ca serve exited ${child.exitCode}`)
    await sleep(25)
  }
  const {url} = JSON.parse(out) as {url: string}
  return {url, port: Number(new URL(url).port), child}
}

export async function benchReplicas(): Promise<void> {
  if (!postgresBinDir()) {
    console.log('\nReplicas: skipped (no PostgreSQL server binaries: npm run test:deps installs them)')
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'sshca-bench-replicas-'))
  const gh = await startGithubIssuer('sshca-ci', 'ES256')
  const servers: Server[] = []
  try {
    const pg = await startPostgres({fsync: true})
    const pw = join(dir, 'pw')
    writeFileSync(pw, `${PASSWORD}\n`, {mode: 0o600})
    const init = await initCa({dir: join(dir, 'ca'), dnsNames: ['127.0.0.1'], password: PASSWORD})
    const caFile = join(init.dir, 'certs', 'root_ca.crt')
    const policy = (db: Record<string, unknown>) => ({
      audit: {file: 'audit.log'},
      db,
      limits: {rate: false},
      provisioners: [
        {
          name: 'ci',
          type: 'oidc',
          issuer: gh.issuer,
          audience: 'sshca-ci',
          maxTtl: '15m',
          rules: [
            {
              name: 'deploy',
              match: {repository: 'acme/app', ref: 'refs/heads/main'},
              certificate: {principals: ['deploy'], ttl: '10m', keyId: 'gha:${repository}:${run_id}'},
            },
          ],
        },
      ],
    })
    // one copy of the CA directory per box
    const box = async (name: string, db: Record<string, unknown>): Promise<string> => {
      const d = join(dir, name)
      cpSync(init.dir, d, {recursive: true})
      await writePolicy(join(d, 'ca.yaml'), policy(db))
      return join(d, 'ca.yaml')
    }
    const sqlite = await serve(await box('sqlite', {type: 'sqlite', path: 'db/sshca.sqlite'}), pw)
    servers.push(sqlite)
    const pgDb = pg.db({pool: 10})
    const pgServers = await Promise.all(['r1', 'r2', 'r3'].map(async (n) => serve(await box(n, pgDb), pw)))
    servers.push(...pgServers)
    const one: Haproxy = await startHaproxy({caFile, servers: [{name: 'r1', port: pgServers[0]!.port}]})
    const three: Haproxy = await startHaproxy({
      caFile,
      servers: pgServers.map((s, i) => ({name: `r${i + 1}`, port: s.port})),
    })
    for (const lb of [one, three]) {
      for (let i = 0; i < 200 && Object.values(await lb.states()).some((s) => s !== 'UP'); i++) await sleep(50)
    }

    const ca = readFileSync(caFile)
    const publicKey = generatePrivateKey('ed25519').publicKey.blob.toString('base64')
    const tokens = async (n: number): Promise<string[]> =>
      Promise.all(Array.from({length: n}, () => gh.mint({jti: randomUUID()})))
    const run = async (url: string, n: number) => {
      const list = await tokens(n)
      let next = 0
      const t0 = performance.now()
      const result = await autocannon({
        url: `${url}/ssh/sign`,
        connections: 16,
        pipelining: 1,
        amount: n,
        method: 'POST',
        headers: {'content-type': 'application/json'},
        ...({tls: {ca}} as object),
        requests: [
          {setupRequest: (req: autocannon.Request) => ({...req, body: JSON.stringify({publicKey, ott: list[next++]})})},
        ],
      })
      // autocannon's own duration is whole seconds: too coarse for runs of a few seconds
      return {...result, seconds: (performance.now() - t0) / 1000}
    }
    const configs = [
      {name: 'SQLite, 1 replica', url: sqlite.url},
      {name: 'PostgreSQL, 1 replica', url: pgServers[0]!.url},
      {name: 'PostgreSQL, 1 replica via HAProxy', url: one.url},
      {name: 'PostgreSQL, 3 replicas via HAProxy', url: three.url},
    ]
    for (const c of configs) await run(c.url, 500) // warm-up: JIT, JWKS, TLS sessions, pools
    const results = new Map<string, {rate: number; p50: number; p99: number; bad: number}[]>()
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of configs) {
        const r = await run(c.url, AMOUNT)
        const list = results.get(c.name) ?? []
        list.push({rate: r['2xx'] / r.seconds, p50: r.latency.p50, p99: r.latency.p99, bad: r.non2xx + r.errors})
        results.set(c.name, list)
      }
    }
    const summary = (name: string) => {
      const rs = results.get(name)!
      const rates = rs.map((r) => r.rate)
      return {
        rate: median(rates),
        min: Math.min(...rates),
        max: Math.max(...rates),
        p50: median(rs.map((r) => r.p50)),
        p99: median(rs.map((r) => r.p99)),
        bad: rs.reduce((n, r) => n + r.bad, 0),
      }
    }
    const rows = configs.map((c) => {
      const s = summary(c.name)
      const spread = ((s.max - s.min) / s.rate) * 100
      return {
        name: c.name,
        value: `${s.rate.toFixed(0)} certificates/s (rounds ${s.min.toFixed(0)}–${s.max.toFixed(0)}, spread ${spread.toFixed(0)}%), p50 ${s.p50} ms, p99 ${s.p99} ms, ${s.bad} not 201`,
      }
    })
    const ratio = (a: string, b: string) => summary(a).rate / summary(b).rate
    rows.push({
      name: 'PostgreSQL / SQLite (1 replica)',
      value: `${ratio('PostgreSQL, 1 replica', 'SQLite, 1 replica').toFixed(2)}×`,
    })
    rows.push({
      name: '3 replicas / 1 replica (HAProxy)',
      value: `${ratio('PostgreSQL, 3 replicas via HAProxy', 'PostgreSQL, 1 replica via HAProxy').toFixed(2)}× — 2 cores shared by everything: replicas on their own machines would add their cores`,
    })
    print(
      `Replicas (HTTPS POST /ssh/sign, ES256 tokens, 16 connections, ${ROUNDS} alternating rounds of ${AMOUNT}; PostgreSQL fsync + synchronous_commit on)`,
      rows,
    )
    await one.stop()
    await three.stop()
  } finally {
    for (const s of servers) s.child.kill('SIGTERM')
    await gh.stop()
    await stopAll()
    removeTempDirs()
    rmSync(dir, {recursive: true, force: true})
  }
}
