/**
 * The signing core: (c) the in-process pipeline (verify + match + sign + record + audit) and
 * (d) HTTPS POST /ssh/sign through a real `sshca ca serve` process, 16 keep-alive connections,
 * a unique token per request (autocannon), with p50/p99 latency.
 */
import {spawn, type ChildProcess, type StdioOptions} from 'node:child_process'
import {randomUUID} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import autocannon from 'autocannon'
import {createAuditLog} from '../src/ca/observe/audit.ts'
import {initCa} from '../src/ca/init.ts'
import {loadConfig} from '../src/ca/config/config.ts'
import {loadMaterial} from '../src/ca/keys/material.ts'
import {TokenVerifier} from '../src/ca/provisioner/oidc.ts'
import type {CaRuntime} from '../src/ca/authority/runtime.ts'
import {signUserCertificate} from '../src/ca/authority/sign.ts'
import {openStore} from '../src/ca/store/open.ts'
import {generatePrivateKey} from '../src/ssh/private-key.ts'
import {startGithubIssuer} from '../test/helpers/github-issuer.ts'
import {writePolicy} from '../test/helpers/ca.ts'
import {print} from './lib.ts'

const PASSWORD = 'benchmark password, not secret'
/** SSHCA_BENCH_DURABILITY=normal measures the opt-out (no fsync per commit); the default is the CA's default. */
const DURABILITY = process.env.SSHCA_BENCH_DURABILITY === 'normal' ? 'normal' : 'full'

export async function benchCa(): Promise<void> {
  // RS256 first: GitHub Actions, Google, Okta and Azure AD sign ID tokens with it
  await benchCaWith('RS256')
  if (!process.env.SSHCA_BENCH_PROFILE) await benchCaWith('ES256')
}

/** A CA in `dir`/ca trusting `gh` for one CI rule (the example), audit to `dir`/audit.log. */
export async function benchCaDir(
  dir: string,
  issuer: string,
  durability: 'full' | 'normal' = DURABILITY,
  o: {metrics?: boolean; limits?: Record<string, unknown>} = {},
): Promise<{init: Awaited<ReturnType<typeof initCa>>; passwordFile: string}> {
  const init = await initCa({dir: join(dir, 'ca'), dnsNames: ['127.0.0.1'], password: PASSWORD})
  await writePolicy(init.config, {
    audit: {file: join(dir, 'audit.log')},
    db: {type: 'sqlite', path: 'db/sshca.sqlite', durability},
    // every request comes from one address: the per-address limit (300/min) would measure the limiter
    limits: {rate: false, ...o.limits},
    ...(o.metrics ? {metrics: {address: '127.0.0.1:0'}} : {}),
    provisioners: [
      {
        name: 'ci',
        type: 'oidc',
        issuer,
        audience: 'sshca-ci',
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
  const passwordFile = join(dir, 'pw')
  writeFileSync(passwordFile, `${PASSWORD}\n`, {mode: 0o600})
  return {init, passwordFile}
}

/** `sshca ca serve` in its own process (node flags first), ready once it has printed its address. */
export async function startCaServer(
  config: string,
  passwordFile: string,
  nodeArgs: string[] = [],
  stdio: StdioOptions = ['ignore', 'pipe', 'inherit'],
  /** A command that runs the server (`taskset -c 0`): it must exec it, so the pid stays the server's. */
  prefix: string[] = [],
  /** More `ca serve` flags (`--workers 0`). */
  serveArgs: string[] = [],
): Promise<{url: string; server: ChildProcess; metrics?: string}> {
  const server = spawn(
    prefix[0] ?? process.execPath,
    [
      ...(prefix.length ? [...prefix.slice(1), process.execPath] : []),
      ...nodeArgs,
      'bin/run.cjs',
      'ca',
      'serve',
      '--config',
      config,
      '--password-file',
      passwordFile,
      '--address',
      '127.0.0.1:0',
      '--json',
      ...serveArgs,
    ],
    {stdio},
  )
  let out = ''
  server.stdout!.on('data', (d) => (out += d))
  for (let i = 0; i < 2400 && server.exitCode === null; i++) {
    try {
      const started = JSON.parse(out) as {url: string; metrics?: string}
      return {url: started.url, server, ...(started.metrics ? {metrics: started.metrics} : {})}
    } catch {
      await sleep(25)
    }
  }
  server.kill('SIGKILL')
  throw new Error(`ca serve did not start: ${out}`)
}

async function benchCaWith(alg: 'RS256' | 'ES256'): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'sshca-bench-ca-'))
  const gh = await startGithubIssuer('sshca-ci', alg)
  try {
    const {init, passwordFile: pw} = await benchCaDir(dir, gh.issuer)
    const subject = generatePrivateKey('ed25519').publicKey
    const mintMany = async (n: number) => Promise.all(Array.from({length: n}, () => gh.mint({jti: randomUUID()})))

    // (c) in process
    const {config} = await loadConfig(init.config)
    const material = await loadMaterial(config.dir, PASSWORD, config.dnsNames)
    // the store opens the way `ca serve` opens it, with the durability benchCaDir wrote
    const store = await openStore(
      {...config, db: {type: 'sqlite', path: join(dir, 'bench-inproc.sqlite'), durability: DURABILITY}},
      'server',
    )
    const audit = createAuditLog(join(dir, 'inproc-audit.log'))
    const rt: CaRuntime = {
      policy: {config, verifier: new TokenVerifier(config.provisioners)},
      material,
      store,
      audit,
      clock: Date.now,
    }
    // 16 requests in flight, as the HTTPS run has 16 connections: token verification is async
    // (WebCrypto on libuv's threadpool), so requests overlap there as they do in the server
    const pipeline = async (tokens: string[]): Promise<number> => {
      let i = 0
      const t0 = performance.now()
      await Promise.all(
        Array.from({length: 16}, async () => {
          while (i < tokens.length)
            await signUserCertificate(rt, subject, tokens[i++]!, 'user', {request_id: randomUUID()})
        }),
      )
      return (tokens.length * 1000) / (performance.now() - t0)
    }
    await pipeline(await mintMany(1000))
    const inProcess = await pipeline(await mintMany(8000))
    await store.close()
    await audit.close()

    // (d) over HTTPS, against `sshca ca serve` in its own process
    // SSHCA_BENCH_PROFILE=DIR writes a CPU profile of the server process there
    const profile = process.env.SSHCA_BENCH_PROFILE
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.SSHCA_BENCH_PROFILE}`]
      : []
    const {url, server} = await startCaServer(init.config, pw, profile)
    const amount = 12_000
    const httpTokens = await mintMany(amount + 1000)
    const publicKey = subject.blob.toString('base64')
    let next = 0
    // autocannon ends a run of `amount` requests on its next one-second tick, so its duration and its
    // per-second average round the rate down (12,000 in 5.3 s reads 2,000/s or 2,400/s): the rate is
    // taken from the first request sent to the last answer read
    let firstSent = 0
    let lastAnswered = 0
    const run = (n: number) =>
      autocannon({
        url: `${url}/ssh/sign`,
        connections: 16,
        pipelining: 1,
        amount: n,
        method: 'POST',
        headers: {'content-type': 'application/json'},
        // autocannon passes `tls` to tls.connect; its typings do not list it
        ...({tls: {ca: readFileSync(join(init.dir, 'certs', 'root_ca.crt'))}} as object),
        requests: [
          {
            setupRequest: (req: autocannon.Request) => {
              if (firstSent === 0) firstSent = performance.now()
              return {...req, body: JSON.stringify({publicKey, ott: httpTokens[next++]})}
            },
            onResponse: () => void (lastAnswered = performance.now()),
          },
        ],
      })
    await run(1000) // warm-up: JIT, JWKS fetch, TLS sessions
    const cpu = (): number => {
      const f = readFileSync(`/proc/${server.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
      return ((Number(f[11]) + Number(f[12])) * 1000) / 100 // utime + stime, clock ticks → ms
    }
    const serverCpu0 = cpu()
    const clientCpu0 = process.cpuUsage()
    firstSent = 0
    const result = await run(amount)
    const serverCpuMs = cpu() - serverCpu0
    const health = await autocannon({
      url: `${url}/health`,
      connections: 16,
      amount: 20_000,
      ...({tls: {ca: readFileSync(join(init.dir, 'certs', 'root_ca.crt'))}} as object),
    })
    if (process.env.SSHCA_BENCH_THREADS) {
      const {readdirSync} = await import('node:fs')
      for (const tid of readdirSync(`/proc/${server.pid}/task`)) {
        const st = readFileSync(`/proc/${server.pid}/task/${tid}/stat`, 'utf8')
        const name = /\((.*)\)/.exec(st)![1]
        const f = st.split(') ')[1]!.split(' ')
        console.log(`thread ${tid} ${name}: ${(Number(f[11]) + Number(f[12])) * 10} ms`)
      }
    }
    const clientCpu = process.cpuUsage(clientCpu0)
    const clientCpuMs = (clientCpu.user + clientCpu.system) / 1000
    server.kill('SIGTERM')
    const httpsRate = (result.requests.total * 1000) / (lastAnswered - firstSent)
    const ok = result['2xx']
    const ratio = httpsRate / inProcess
    print(`Signing core (${alg} tokens, ed25519 CA, SQLite durability ${DURABILITY}, audit to a file)`, [
      {
        name: 'in-process pipeline',
        value: `${inProcess.toFixed(0)} certificates/s (verify + match + sign + record + audit)`,
      },
      {
        name: 'HTTPS POST /ssh/sign',
        value: `${httpsRate.toFixed(0)} req/s = ${(ratio * 100).toFixed(0)}% of in-process (16 connections, keep-alive)`,
        target: '≥ 50%',
        ok: ratio >= 0.5,
      },
      {
        name: 'latency p50 / p99',
        value: `${result.latency.p50} ms / ${result.latency.p99} ms`,
        target: 'p99 ≤ 25 ms',
        ok: result.latency.p99 <= 25,
      },
      {
        name: 'floor: GET /health',
        value: `${(health.requests.total / health.duration).toFixed(0)} req/s, p50 ${health.latency.p50} ms, p99 ${health.latency.p99} ms (same server, same client)`,
      },
      {
        name: 'CPU per request',
        value: `server ${((serverCpuMs * 1000) / amount).toFixed(0)} µs, load generator ${((clientCpuMs * 1000) / amount).toFixed(0)} µs (2 cores shared)`,
      },
      {
        name: 'responses',
        value: `${ok} × 201 of ${result.requests.total}; errors ${result.errors}, non-2xx ${result.non2xx}`,
      },
    ])
  } finally {
    await gh.stop()
    rmSync(dir, {recursive: true, force: true})
  }
}
