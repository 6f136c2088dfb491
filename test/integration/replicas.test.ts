/**
 * Scale-out, with real processes: three `sshca ca serve` replicas (each on its own copy of the CA
 * directory, as on three boxes) on one PostgreSQL (Debian's server, in a temp dir), behind HAProxy
 * (TLS passthrough, health checks on GET /ready). A client bootstraps and logs in through the
 * balancer; concurrent signers; a token raced to every replica; a replica killed -9 mid-load; the
 * database stopped mid-load and started again.
 */
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {randomUUID} from 'node:crypto'
import {cpSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {Agent, request} from 'undici'
import {parseCertificate} from '../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {parseKrl, type ParsedKrl} from '../../src/ssh/krl.ts'
import {makeCaDir} from '../helpers/ca.ts'
import {BIN, sshca} from '../helpers/cli.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {startHaproxy, type Haproxy} from '../helpers/haproxy.ts'
import {currentUser, startAgent} from '../helpers/openssh.ts'
import {startPostgres, type TestPostgres} from '../helpers/postgres.ts'
import {onCleanup, waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {readAuditLines} from '../helpers/audit.ts'

interface Replica {
  name: string
  url: string
  port: number
  child: ChildProcess
  auditFile: string
  audit(): Record<string, unknown>[]
}

async function startReplica(name: string, config: string, passwordFile: string, auditFile: string): Promise<Replica> {
  const child = spawn(
    process.execPath,
    [BIN, 'ca', 'serve', '--config', config, '--password-file', passwordFile, '--address', '127.0.0.1:0', '--json'],
    {stdio: ['ignore', 'pipe', 'pipe']},
  )
  onCleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r))
      child.kill('SIGKILL')
      await gone
    }
  })
  let out = ''
  let err = ''
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  await waitFor(
    `replica ${name} to listen`,
    () => {
      if (child.exitCode !== null) throw new Error(`replica ${name} exited ${child.exitCode}: ${err}`)
      return out.includes('"url"')
    },
    60_000,
  )
  const {url} = JSON.parse(out) as {url: string}
  const audit = () => readAuditLines(auditFile)
  return {name, url, port: Number(new URL(url).port), child, auditFile, audit}
}

function parseKrlBytes(bytes: Buffer): {bytes: Buffer; parsed: ParsedKrl} {
  return {bytes, parsed: parseKrl(bytes)}
}

/** One signing request: when it started (performance.now()), how long it took, what came back. */
type Outcome = {token: string; jti: string; t0: number; ms: number} & (
  {status: number; body: Record<string, unknown>; serial?: bigint} | {status: 'error'; error: string}
)

describe('three CA replicas on one PostgreSQL behind HAProxy', function () {
  this.timeout(240_000)
  let pg: TestPostgres
  let gh: GithubIssuer
  let replicas: Replica[]
  let lb: Haproxy
  let rootPem: string
  let fingerprint: string
  let configs: string[]
  const publicKey = generatePrivateKey('ed25519').publicKey.blob.toString('base64')

  before(async () => {
    ;[pg, gh] = await Promise.all([startPostgres(), startGithubIssuer('sshca-ci', 'ES256')])
    const {init, passwordFile} = await makeCaDir({
      // relative to each box's copy of the directory: every replica writes its own audit log
      audit: {file: 'audit.log'},
      db: pg.db({pool: 4, timeout: 2}),
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
              certificate: {principals: [currentUser()], ttl: '10m', keyId: 'gha:${repository}:${run_id}'},
            },
          ],
        },
      ],
    })
    rootPem = readFileSync(join(init.dir, 'certs', 'root_ca.crt'), 'utf8')
    fingerprint = init.rootFingerprint
    // "distribute D/ to each box": three copies of the sealed keys and ca.yaml
    const boxes = ['r1', 'r2', 'r3'].map((name) => {
      const dir = join(tempDir('sshca-box-'), 'ca')
      cpSync(init.dir, dir, {recursive: true})
      return {name, dir}
    })
    // all three at once: they race to migrate the empty database (an advisory lock orders them)
    configs = boxes.map((b) => join(b.dir, 'ca.yaml'))
    replicas = await Promise.all(
      boxes.map((b) => startReplica(b.name, join(b.dir, 'ca.yaml'), passwordFile, join(b.dir, 'audit.log'))),
    )
    lb = await startHaproxy({
      caFile: join(init.dir, 'certs', 'root_ca.crt'),
      servers: replicas.map((r) => ({name: r.name, port: r.port})),
    })
    await waitFor(
      'HAProxy to see every replica UP',
      async () => Object.values(await lb.states()).filter((s) => s === 'UP').length === 3,
      30_000,
    )
  })

  const agents: Agent[] = []
  /** A client connection of its own (through the balancer, each one may land on another replica). */
  const connection = (): Agent => {
    const a = new Agent({connect: {ca: rootPem}, connections: 1, headersTimeout: 20_000, bodyTimeout: 20_000})
    agents.push(a)
    return a
  }
  after(async () => {
    await Promise.all(agents.map((a) => a.destroy().catch(() => undefined)))
    await lb?.stop()
    await gh?.stop()
  })

  async function mint(): Promise<{token: string; jti: string}> {
    const jti = randomUUID()
    return {token: await gh.mint({jti}), jti}
  }

  async function sign(dispatcher: Agent, base: string, t: {token: string; jti: string}): Promise<Outcome> {
    const t0 = performance.now()
    try {
      const res = await request(`${base}/ssh/sign`, {
        method: 'POST',
        dispatcher,
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({publicKey, ott: t.token}),
      })
      const body = (await res.body.json()) as Record<string, unknown>
      const ms = performance.now() - t0
      const serial =
        res.statusCode === 201 ? parseCertificate(Buffer.from(String(body.crt), 'base64')).serial : undefined
      return {...t, t0, status: res.statusCode, body, ms, ...(serial === undefined ? {} : {serial})}
    } catch (err) {
      return {...t, t0, status: 'error', error: (err as Error).message, ms: performance.now() - t0}
    }
  }

  /** N signers, each on its own connection, each signing fresh tokens until `until()` says stop. */
  async function load(n: number, base: (i: number) => string, until: () => boolean, log: Outcome[]): Promise<void> {
    await Promise.all(
      Array.from({length: n}, async (_, i) => {
        const d = connection()
        while (!until()) log.push(await sign(d, base(i), await mint()))
      }),
    )
  }

  const countOf = (log: Outcome[], s: number | 'error') => log.filter((o) => o.status === s).length
  const statuses = (log: Outcome[]) => [...new Set(log.map((o) => o.status))].sort()

  /** What PostgreSQL holds for these serials: how many certificate rows, and the tokens spent on them. */
  async function recorded(serials: bigint[]): Promise<{certificates: number; distinct: number}> {
    const list = serials.map((s) => `'${s}'`).join(',') || "''"
    const out = await pg.psql(
      `SELECT count(*), count(DISTINCT serial) FROM certificates WHERE serial IN (${list})`,
      'sshca',
    )
    const [certificates, distinct] = out.trim().split('|').map(Number)
    return {certificates: certificates!, distinct: distinct!}
  }

  it('a client bootstraps, logs in and lists through the balancer', async () => {
    const agent = await startAgent()
    try {
      const base = tempDir('sshca-client-')
      const env = {
        SSHCA_HOME: join(base, 'home-sshca'),
        HOME: join(base, 'home'),
        SSH_AUTH_SOCK: agent.socket,
        BROWSER: 'none',
        SSHCA_KEYRING: 'file',
        DBUS_SESSION_BUS_ADDRESS: '',
      }
      const boot = await sshca(['bootstrap', '--ca-url', lb.url, '--fingerprint', fingerprint, '--context', 'lb'], {
        env,
      })
      assert.equal(boot.code, 0, boot.stderr)
      const tokenFile = join(base, 'token')
      writeFileSync(tokenFile, (await mint()).token, {mode: 0o600})
      const login = await sshca(['login', '--identity-token-file', tokenFile, '--json'], {env})
      assert.equal(login.code, 0, login.stderr)
      const list = await sshca(['list', '--json'], {env})
      assert.equal(list.code, 0, list.stderr)
      assert.match(list.stdout, /gha:acme\/app:\d+/)
      const health = await request(`${lb.url}/health`, {dispatcher: connection()})
      assert.deepEqual(await health.body.json(), {status: 'ok', db: 'ok'})
    } finally {
      await agent.stop()
    }
  })

  it('16 concurrent signers with unique tokens all get certificates, from every replica; one token raced to all three gets exactly one', async () => {
    const log: Outcome[] = []
    let done = 0
    await Promise.all(
      Array.from({length: 16}, async () => {
        const d = connection()
        for (let i = 0; i < 8; i++) log.push(await sign(d, lb.url, await mint()))
        done++
      }),
    )
    assert.equal(done, 16)
    assert.deepEqual(statuses(log), [201], JSON.stringify(log.find((o) => o.status !== 201)))
    // round robin spread the 16 connections: each replica issued some
    for (const r of replicas)
      assert.ok(
        r.audit().some((e) => e.event === 'certificate_issued'),
        `${r.name} issued nothing`,
      )
    const serials = log.map((o) => (o as {serial: bigint}).serial)
    assert.deepEqual(await recorded(serials), {certificates: 128, distinct: 128})

    // the same token at the same moment: twice to each replica directly, three times through the balancer
    for (let round = 0; round < 3; round++) {
      const t = await mint()
      const targets = [...replicas.flatMap((r) => [r.url, r.url]), lb.url, lb.url, lb.url]
      const out = await Promise.all(targets.map((base) => sign(connection(), base, t)))
      const won = out.filter((o) => o.status === 201)
      assert.equal(won.length, 1, JSON.stringify(out.map((o) => o.status)))
      for (const o of out.filter((x) => x.status !== 201)) {
        assert.equal(o.status, 401, JSON.stringify(o))
        assert.match(String((o as unknown as {body: {message: string}}).body.message), /already used/)
      }
      // each replica that refused wrote why: token_replayed, naming the serial the token bought
      const refusals = replicas.flatMap((r) =>
        r
          .audit()
          .filter(
            (e) =>
              e.event === 'certificate_denied' &&
              (e.token as {id?: string} | undefined)?.id === `${gh.issuer}#jti:${t.jti}`,
          ),
      )
      assert.equal(refusals.length, targets.length - 1)
      for (const e of refusals) {
        assert.equal(e.reason, 'token_replayed')
        assert.equal(e.spent_on_serial, String((won[0] as {serial: bigint}).serial))
      }
    }
  })

  it("a revocation made on one box is in every replica's next /ssh/krl: the same bytes, a version that moved forward", async () => {
    const krl = async (r: Replica) =>
      parseKrlBytes(
        Buffer.from(await (await request(`${r.url}/ssh/krl`, {dispatcher: connection()})).body.arrayBuffer()),
      )
    const before = await krl(replicas[0]!)
    const issued = await sign(connection(), lb.url, await mint())
    const serial = (issued as {serial?: bigint}).serial
    assert.ok(
      serial !== undefined,
      `no certificate: ${issued.status} ${JSON.stringify((issued as {body?: unknown}).body)}`,
    )
    const r = await sshca([
      'ca',
      'revoke',
      '--serial',
      String(serial),
      '--reason',
      'replica test',
      '--config',
      configs[2]!,
    ])
    assert.equal(r.code, 0, r.stderr)
    let now: {bytes: Buffer; parsed: ParsedKrl}[] = []
    await waitFor(
      'every replica to serve the revocation',
      async () => {
        now = await Promise.all(replicas.map(krl))
        return now.every((k) => k.parsed.sections.some((s) => s.serials.includes(serial)))
      },
      30_000,
    )
    for (const k of now)
      assert.ok(k.bytes.equals(now[0]!.bytes), 'the replicas serve different KRL bytes for one revocation set')
    assert.ok(
      now[0]!.parsed.version > before.parsed.version,
      `version ${now[0]!.parsed.version} after ${before.parsed.version}`,
    )
  })

  it('kill -9 of one replica mid-load: the others keep serving; every 201 is recorded once, no token spent twice', async () => {
    const log: Outcome[] = []
    let killedAt = Infinity
    let after = 0
    const stopAt = Date.now() + 90_000
    const victim = replicas[1]!
    const loadDone = load(
      16,
      () => lb.url,
      () => after >= 80 || Date.now() > stopAt,
      log,
    )
    // count the 201s that came back after the kill
    const watch = setInterval(() => (after = log.filter((o) => o.status === 201 && o.t0 > killedAt).length), 20)
    try {
      await waitFor('80 certificates before the kill', () => countOf(log, 201) >= 80, 60_000)
      killedAt = performance.now()
      victim.child.kill('SIGKILL')
      await waitFor('80 certificates after the kill', () => after >= 80 || Date.now() > stopAt, 100_000)
      await loadDone
    } finally {
      clearInterval(watch)
    }
    assert.ok(after >= 80, `only ${after} certificates after the kill`)
    await waitFor(
      'HAProxy to take the killed replica out',
      async () => (await lb.states())[victim.name] !== 'UP',
      10_000,
    )
    // a request may die with the replica (its connection is cut); none is answered with an error status
    assert.ok(
      statuses(log).every((s) => s === 201 || s === 'error'),
      JSON.stringify(statuses(log)),
    )
    assert.ok(countOf(log, 'error') <= 16, `${countOf(log, 'error')} requests failed`)
    // the kill was mid-load: requests were in flight on every connection when it came
    assert.ok(log.some((o) => o.t0 < killedAt && o.t0 + o.ms > killedAt))
    const serials = log.flatMap((o) => ('serial' in o && o.serial !== undefined ? [o.serial] : []))
    assert.deepEqual(await recorded(serials), {certificates: serials.length, distinct: serials.length})
    // no token was spent twice: every certificate has one token, every spent token one certificate
    const orphans = await pg.psql(
      `SELECT
        (SELECT count(*) FROM certificates c WHERE NOT EXISTS (SELECT 1 FROM used_tokens u WHERE u.serial = c.serial)),
        (SELECT count(*) FROM (SELECT serial FROM used_tokens GROUP BY serial HAVING count(*) > 1) d),
        (SELECT count(*) FROM used_tokens) - (SELECT count(*) FROM certificates)`,
      'sshca',
    )
    assert.equal(orphans.trim(), '0|0|0')
    // and each 201's token is the one recorded as spent on its serial
    const pairs = log.flatMap((o) =>
      'serial' in o && o.serial !== undefined ? [`('${gh.issuer}#jti:${o.jti}','${o.serial}')`] : [],
    )
    const matched = await pg.psql(
      `SELECT count(*) FROM used_tokens u JOIN (VALUES ${pairs.join(',')}) AS p(token_id, serial) ON p.token_id = u.token_id AND p.serial = u.serial`,
      'sshca',
    )
    assert.equal(Number(matched.trim()), pairs.length)
  })

  it('PostgreSQL stopped mid-load: 503 (never 500, never past the request timeout), /ready false, the balancer drains; back: issuance resumes without a restart', async () => {
    const live = replicas.filter((r) => r.child.exitCode === null && r.child.signalCode === null)
    assert.equal(live.length, 2)
    const pids = live.map((r) => r.child.pid)
    const log: Outcome[] = []
    let stop = false
    let readyFalseAt = Infinity
    // directly at the replicas: the balancer stops sending them traffic once their checks fail
    const loadDone = load(
      8,
      (i) => live[i % 2]!.url,
      () => stop,
      log,
    )
    await waitFor('certificates before the outage', () => countOf(log, 201) >= 30, 60_000)
    await pg.stop()
    const ready = async (r: Replica) => (await request(`${r.url}/ready`, {dispatcher: connection()})).statusCode
    await waitFor(
      '/ready to turn 503 on both replicas',
      async () => (await Promise.all(live.map(ready))).every((s) => s === 503),
      15_000,
    )
    readyFalseAt = performance.now()
    await waitFor(
      '503s while the database is down',
      () => log.filter((o) => o.status === 503 && o.t0 > readyFalseAt).length >= 16,
      30_000,
    )
    await waitFor(
      'HAProxy to take both replicas out',
      async () => Object.values(await lb.states()).every((s) => s !== 'UP'),
      15_000,
    )
    stop = true
    await loadDone
    assert.deepEqual(
      statuses(log),
      [201, 503],
      JSON.stringify(log.filter((o) => o.status !== 201 && o.status !== 503).slice(0, 3)),
    )
    for (const o of log.filter((x) => x.status === 503))
      assert.match(
        String((o as unknown as {body: {message: string}}).body.message),
        /cannot record certificates right now/,
      )
    const slowest = Math.max(...log.map((o) => o.ms))
    assert.ok(slowest < 8_000, `a request took ${slowest.toFixed(0)} ms (request timeout 10 s, db.timeout 2 s)`)
    const refused = log.find((o) => o.status === 503 && o.t0 > readyFalseAt)!

    await pg.start()
    await waitFor(
      '/ready to turn 200 on both replicas',
      async () => (await Promise.all(live.map(ready))).every((s) => s === 200),
      20_000,
    )
    await waitFor(
      'HAProxy to put them back',
      async () => Object.values(await lb.states()).filter((s) => s === 'UP').length === 2,
      20_000,
    )
    const resumed = await Promise.all(Array.from({length: 8}, async () => sign(connection(), lb.url, await mint())))
    assert.deepEqual(statuses(resumed), [201])
    // a token refused while the database was down was not spent
    const retried = await sign(connection(), lb.url, refused)
    assert.equal(retried.status, 201)
    assert.deepEqual(
      live.map((r) => r.child.pid),
      pids,
    )
    assert.ok(live.every((r) => r.child.exitCode === null))
  })
})
