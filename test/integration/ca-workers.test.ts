/**
 * The CA on worker threads (src/ca/workers.ts): every worker serves, under one policy, one rate
 * allowance per address, one store writer; each decision is audited once, in whole lines; a worker
 * that dies, or whose event loop stops turning, is replaced; SIGHUP reaches every worker of a real
 * `ca serve`; SIGTERM stops it gracefully.
 * Connections are spread over the workers by the kernel (SO_REUSEPORT hashes each new connection),
 * so the tests open one connection per request and check, from the audit lines' `worker`, that
 * more than one worker answered.
 */
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {createReadStream, existsSync, readFileSync, readdirSync, readlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'
import {connect} from 'node:tls'
import {Client} from 'undici'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {parseCertificate} from '../../src/ssh/cert.ts'
import {revoke} from '../../src/ca/admin.ts'
import {WORKER_STALL_MS} from '../../src/ca/workers.ts'
import {makeCaDir, startTestCa, writePolicy, type TestCa} from '../helpers/ca.ts'
import {BIN} from '../helpers/cli.ts'
import {deployProvisioner, startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {postgresBinDir, startPostgres} from '../helpers/postgres.ts'
import {onCleanup, waitFor} from '../helpers/proc.ts'

type Line = Record<string, unknown>

const rule = (issuer: string, principals: string[], limits: Record<string, unknown> = {rate: false}) => ({
  limits,
  provisioners: [deployProvisioner(issuer, principals, 'gha:${repository}:${run_id}')],
})

/** One request on a connection of its own (the kernel picks the worker per connection). */
async function signOnce(
  url: string,
  ca: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{status: number; json: Line; id: string}> {
  const client = new Client(url, {connect: {ca}})
  try {
    const res = await client.request({
      path: '/ssh/sign',
      method: 'POST',
      headers: {'content-type': 'application/json', ...headers},
      body: JSON.stringify(body),
    })
    return {status: res.statusCode, json: (await res.body.json()) as Line, id: String(res.headers['x-request-id'])}
  } finally {
    await client.close()
  }
}

const linesOf = (file: string): Line[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l, i) => {
      try {
        return JSON.parse(l) as Line
      } catch {
        throw new Error(`audit line ${i + 1} is not JSON (a torn write?): ${l.slice(0, 200)}`)
      }
    })

const byRequest = (lines: Line[], id: unknown): Line[] => lines.filter((l) => l.request_id === id)

/** Ends `t`'s first worker and waits for its replacement to serve. */
async function replaceFirstWorker(t: TestCa): Promise<void> {
  const dead = t.ca.pool!.threads[0]!
  await dead.terminate()
  await waitFor(
    'the replacement worker',
    () => t.ca.pool!.threads[0] !== dead && t.ca.pool!.threads[0]!.threadId !== -1,
    30_000,
  )
}

/** The CLI's arguments for `ca serve --workers 2` on a port the OS picks. */
const serveArgs = (config: string, passwordFile: string): string[] => [
  BIN,
  'ca',
  'serve',
  '--config',
  config,
  '--password-file',
  passwordFile,
  '--address',
  '127.0.0.1:0',
  '--workers',
  '2',
]

/**
 * `ca serve --workers 2` with its audit log on stdout, a named pipe as `ca serve | logger` makes (the
 * stdout Node gives a child is a socket, which does not split lines), read by `reader` into out().
 */
async function serveToFifo(issuer: string, stderrToo = false) {
  const {init, passwordFile} = await makeCaDir(rule(issuer, ['deploy']))
  // a worker waiting on the full pipe lets its event loop lag past limits.maxEventLoopDelay (200 ms),
  // and the requests it reads next are shed (503) or not, as the timing falls (once in a CI run):
  // shedding has tests of its own (ca-limits); these are about the audit lines
  await writePolicy(init.config, {
    audit: {file: '-'},
    ...rule(issuer, ['deploy'], {rate: false, maxEventLoopDelay: false}),
  })
  const {dir, config} = init
  const fifo = join(dir, 'audit.fifo')
  spawnSync('mkfifo', [fifo])
  const child = spawn(
    'sh',
    [
      '-c',
      stderrToo ? 'exec "$0" "$@" > "$FIFO" 2>&1' : 'exec "$0" "$@" > "$FIFO"',
      process.execPath,
      ...serveArgs(config, passwordFile),
    ],
    {stdio: ['ignore', 'ignore', 'pipe'], env: {...process.env, FIFO: fifo}},
  )
  onCleanup(async () => void child.kill('SIGKILL'))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const reader = createReadStream(fifo)
  const readerClosed = new Promise<void>((resolve) => reader.once('close', () => resolve()))
  let out = ''
  reader.on('data', (d) => (out += String(d)))
  let err = ''
  child.stderr.on('data', (d) => (err += d))
  const said = (): string => (stderrToo ? out : err)
  await waitFor('ca serve to start', () => /listening on (\S+)/.test(said()) || child.exitCode !== null, 60_000)
  const url = /listening on (\S+)/.exec(said())![1]!
  const rootPem = readFileSync(join(dir, 'certs', 'root_ca.crt'), 'utf8')
  /** GET `path`: its status and JSON. */
  const get = async (path: string): Promise<{status: number; json: Line}> => {
    const client = new Client(url, {connect: {ca: rootPem}})
    try {
      const res = await client.request({path, method: 'GET'})
      return {status: res.statusCode, json: (await res.body.json()) as Line}
    } finally {
      await client.close()
    }
  }
  return {child, reader, exited, readerClosed, out: () => out, err: said, url, rootPem, get}
}

/** Audit lines over 4 KiB: claims that a pipe (writes over 4 KiB may be split) takes only part of. */
const bigClaims = {groups: Array.from({length: 14}, (_, i) => `group-${i}-${'x'.repeat(250)}`)}

/**
 * `ca serve --workers 2 --json` with its audit log in `auditFile` (already in ca.yaml): resolves once
 * it has said where it listens. `nodeArgs` go to Node before the CLI (a module to preload).
 */
async function serveWorkers(
  config: string,
  passwordFile: string,
  o: {nodeArgs?: string[]; env?: Record<string, string>} = {},
) {
  const child = spawn(process.execPath, [...(o.nodeArgs ?? []), ...serveArgs(config, passwordFile), '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {...process.env, ...o.env},
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  onCleanup(async () => void child.kill('SIGKILL'))
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  let err = ''
  child.stderr.on('data', (d) => (err += d))
  let started: {url: string; pid: number; workers: number} | undefined
  await waitFor(
    'ca serve to start',
    () => {
      try {
        started = JSON.parse(out) as typeof started
      } catch {
        // not all of it yet
      }
      return started !== undefined || child.exitCode !== null
    },
    60_000,
  )
  assert.ok(started, `ca serve exited ${child.exitCode}: ${err}`)
  return {child, exited, started}
}

/**
 * Preloaded in every thread of a `ca serve` (Node passes its options to worker threads): the first CA
 * worker to find the file $SSHCA_TEST_HANG (it renames it, so only one does) loops for good, as a bug
 * would. Its replacement finds no file.
 */
const HANG_MODULE = `import {renameSync} from 'node:fs'
import {isMainThread, workerData} from 'node:worker_threads'
if (!isMainThread && workerData?.sshcaWorker === true) {
  const trigger = process.env.SSHCA_TEST_HANG
  setInterval(() => {
    try {
      renameSync(trigger, trigger + '.taken')
    } catch {
      return
    }
    for (;;) {}
  }, 50).unref()
}
`

/** A new TLS connection to `url`, and when it settled (performance.now()): its handshake done, or it closed. */
function openTls(url: string, ca: string): {opened: number; settled: number | undefined; close(): void} {
  const u = new URL(url)
  const socket = connect({host: u.hostname, port: Number(u.port), ca})
  const c = {opened: performance.now(), settled: undefined as number | undefined, close: () => socket.destroy()}
  const settle = (): void => void (c.settled ??= performance.now())
  socket.once('secureConnect', settle)
  socket.once('close', settle)
  socket.on('error', () => undefined)
  onCleanup(async () => void socket.destroy())
  return c
}

/** Audit lines read from a stream, each whole JSON. */
const streamLines = (text: string): Line[] =>
  text
    .split('\n')
    .filter(Boolean)
    .map((l, i) => {
      try {
        return JSON.parse(l) as Line
      } catch {
        throw new Error(`audit line ${i + 1} is not JSON (interleaved writes?): ${l.slice(0, 100)}…${l.slice(-100)}`)
      }
    })

describe('the CA on worker threads', function () {
  this.timeout(120_000)
  let gh: GithubIssuer
  const subject = generatePrivateKey('ed25519').publicKey.blob.toString('base64')

  before(async () => {
    gh = await startGithubIssuer()
  })
  after(async () => gh?.stop())

  describe('two workers', () => {
    let t: TestCa
    let stopped: Promise<void> | undefined
    const stop = (): Promise<void> => (stopped ??= t.stop())
    // the rate limit on (a reload changes its allowance, not whether there is one), with room for the tests
    const roomy = {rate: {max: 1000, window: '1m'}}
    beforeEach(async () => {
      stopped = undefined
      t = await startTestCa(rule(gh.issuer, ['deploy'], roomy), {workers: 2, adminEventsIntervalMs: 100})
    })
    afterEach(async () => t && stop())

    /**
     * Reloads `policy`, whose policy_loaded must carry a warning matching `warning` (a setting read at
     * start only says so rather than seem to apply), then ends worker 1 and waits for its replacement.
     */
    async function reloadThenReplace(policy: Record<string, unknown>, warning: RegExp): Promise<void> {
      await t.setPolicy(policy)
      assert.equal(await t.ca.reload(), true)
      const loaded = t
        .audit()
        .filter((l) => l.event === 'policy_loaded' && l.reload === true)
        .at(-1)
      assert.ok(
        (loaded?.warnings as string[] | undefined)?.some((w) => warning.test(w)),
        JSON.stringify(loaded),
      )
      await replaceFirstWorker(t)
    }

    /** Signs on fresh connections until both workers have answered (at most `max` requests). */
    async function untilBothWorkers(
      mint: () => Promise<string>,
      check: (r: {status: number; json: Line; id: string}) => void,
      max = 64,
    ): Promise<number> {
      const seen = new Set<unknown>()
      let n = 0
      while (seen.size < 2) {
        assert.ok(n < max, `${max} connections all reached worker ${[...seen].join()}`)
        const r = await signOnce(t.url, t.rootPem, {publicKey: subject, ott: await mint()})
        check(r)
        n++
        for (const l of byRequest(t.audit(), r.id)) seen.add(l.worker)
      }
      return n
    }

    it('every worker signs, and each decision has one audit line, whole, even past 4 KiB', async () => {
      // a long claim the audit line carries: lines over 4 KiB, above a pipe's atomic write
      const results = await Promise.all(
        Array.from({length: 48}, async () =>
          signOnce(t.url, t.rootPem, {publicKey: subject, ott: await gh.mint(bigClaims)}),
        ),
      )
      assert.deepEqual(
        results.map((r) => r.status),
        results.map(() => 201),
      )
      const lines = t.audit()
      const issued = lines.filter((l) => l.event === 'certificate_issued')
      assert.equal(issued.length, 48)
      for (const r of results) assert.equal(byRequest(lines, r.id).length, 1, 'one line per decision')
      assert.ok(JSON.stringify(issued[0]).length > 4096)
      assert.deepEqual(new Set(issued.map((l) => l.worker)), new Set([1, 2]), 'both workers signed')
      // the main thread's lines carry no worker
      assert.equal(lines.find((l) => l.event === 'server_started')!.worker, undefined)
    })

    it('the rate limit is one allowance per client address, not one per worker', async () => {
      await t.setPolicy(rule(gh.issuer, ['deploy'], {rate: {max: 6, window: '1m'}}))
      assert.equal(await t.ca.reload(), true)
      const results = []
      for (let i = 0; i < 24; i++)
        results.push(await signOnce(t.url, t.rootPem, {publicKey: subject, ott: await gh.mint()}))
      assert.equal(results.filter((r) => r.status === 201).length, 6)
      assert.equal(results.filter((r) => r.status === 429).length, 18)
      const lines = t.audit()
      const workers = new Set(results.flatMap((r) => byRequest(lines, r.id).map((l) => l.worker)))
      assert.deepEqual(workers, new Set([1, 2]), 'the requests reached both workers')
    })

    it('a reload is in force in every worker when it returns', async () => {
      await t.setPolicy(rule(gh.issuer, ['release'], roomy))
      assert.equal(await t.ca.reload(), true)
      await untilBothWorkers(
        () => gh.mint(),
        (r) => {
          assert.equal(r.status, 201)
          assert.deepEqual(parseCertificate(Buffer.from(r.json.crt as string, 'base64')).principals, ['release'])
        },
      )
    })

    it('a worker that dies is replaced, and the CA serves on', async () => {
      const dead = t.ca.pool!.threads[0]!
      const deadId = dead.threadId
      await dead.terminate()
      await waitFor(
        'the worker_exited line',
        () => t.audit().some((l) => l.event === 'worker_exited' && l.thread_id === deadId && l.replaced === true),
        30_000,
      )
      await waitFor(
        'a new worker 1',
        () => t.ca.pool!.threads[0]!.threadId !== -1 && t.ca.pool!.threads[0] !== dead,
        30_000,
      )
      await untilBothWorkers(
        () => gh.mint(),
        (r) => assert.equal(r.status, 201),
      )
    })

    it('a replacement worker learns what changed while it started: the stop, a reload', async () => {
      // the main thread reads the stop from the store every 20 ms, as replicas do every second
      await stop()
      stopped = undefined
      t = await startTestCa(rule(gh.issuer, ['deploy'], roomy), {workers: 2, safetyIntervalMs: 20})
      const dead = t.ca.pool!.threads[0]!
      // the moment the replacement exists (its start-up state taken), issuance stops, and once the main
      // thread has applied the stop, a policy is reloaded: both while the replacement starts
      let startingAtReload = false
      const changed = new Promise<void>((resolve, reject) =>
        process.once('worker', () => {
          void (async () => {
            await t.ca.runtime.store.setIssuanceStop({at: Math.floor(Date.now() / 1000), reason: 'emergency'})
            await waitFor('the main thread to apply the stop', () => Boolean(t.ca.runtime.safety?.stop), 10_000)
            await t.setPolicy(rule(gh.issuer, ['release'], roomy))
            startingAtReload = t.ca.pool!.threads[0] === dead
            assert.equal(await t.ca.reload(), true)
          })().then(resolve, reject)
        }),
      )
      await dead.terminate()
      await changed
      assert.ok(startingAtReload, 'the stop and the reload came while the replacement was starting')
      await waitFor(
        'the replacement worker',
        () => t.ca.pool!.threads[0] !== dead && t.ca.pool!.threads[0]!.threadId !== -1,
        30_000,
      )
      await untilBothWorkers(
        () => gh.mint(),
        (r) => assert.equal(r.status, 503, JSON.stringify(r.json)),
      )
      await t.ca.runtime.store.setIssuanceStop(null)
      await waitFor('the main thread to apply the resume', () => !t.ca.runtime.safety?.stop, 10_000)
      await untilBothWorkers(
        () => gh.mint(),
        (r) => {
          assert.equal(r.status, 201, JSON.stringify(r.json))
          assert.deepEqual(parseCertificate(Buffer.from(r.json.crt as string, 'base64')).principals, ['release'])
        },
      )
    })

    it('tls.clientCertificates stays as it was at start in every worker, a replacement started after a reload that flips it too', async () => {
      // off at start; a reload says "request"; then a worker dies. The replacement listens with the
      // others on one port: were it to take the reloaded value, one connection in two would be asked
      // for a certificate (the handshake cost SECURITY.md row 42 turns off) and read an identityCSR
      await reloadThenReplace(
        {...rule(gh.issuer, ['deploy'], roomy), tls: {clientCertificates: 'request'}},
        /tls.clientCertificates: request takes effect when the CA restarts/,
      )
      const badCsr = '-----BEGIN CERTIFICATE REQUEST-----\nnot even base64\n-----END CERTIFICATE REQUEST-----\n'
      const seen = new Set<unknown>()
      for (let n = 0; seen.size < 2; n++) {
        assert.ok(n < 64, `64 connections all reached worker ${[...seen].join()}`)
        const r = await signOnce(t.url, t.rootPem, {publicKey: subject, ott: await gh.mint(), identityCSR: badCsr})
        assert.equal(r.status, 201, `a worker read the identityCSR: ${JSON.stringify(r.json)}`)
        for (const l of byRequest(t.audit(), r.id)) seen.add(l.worker)
      }
    })

    it("the server's settings stay as they were at start in every worker, a replacement started after a reload that changes them too", async () => {
      // no proxy trusted at start; a reload trusts the loopback's X-Forwarded-For, then a worker dies.
      // Were the replacement to take the reloaded setting, one connection in two could name any
      // address it likes in the audit log and take a rate-limit allowance of its own per address
      await reloadThenReplace(
        {...rule(gh.issuer, ['deploy'], roomy), trustProxy: ['127.0.0.1/32']},
        /^trustProxy: \["127.0.0.1\/32"\] takes effect when the CA restarts; until then it stays false$/,
      )
      const seen = new Set<unknown>()
      for (let n = 0; seen.size < 2; n++) {
        assert.ok(n < 64, `64 connections all reached worker ${[...seen].join()}`)
        const r = await signOnce(
          t.url,
          t.rootPem,
          {publicKey: subject, ott: await gh.mint()},
          {'x-forwarded-for': '203.0.113.66'},
        )
        assert.equal(r.status, 201, JSON.stringify(r.json))
        for (const l of byRequest(t.audit(), r.id)) {
          seen.add(l.worker)
          assert.equal(l.client_address, '127.0.0.1', `worker ${String(l.worker)} believed X-Forwarded-For`)
        }
      }
    })

    it('the store has one writer: the workers open no database connection', async () => {
      const dbFiles = (dir: string) =>
        readdirSync('/proc/self/fd').filter((fd) => {
          try {
            return readlinkSync(`/proc/self/fd/${fd}`).startsWith(join(dir, 'db'))
          } catch {
            return false
          }
        }).length
      const twoWorkers = dbFiles(t.init.dir)
      const inline = await startTestCa(rule(gh.issuer, ['deploy']), {workers: 0})
      try {
        assert.ok(twoWorkers > 0)
        // the same connections (the writer, and the checkpointer's, opened a moment later) with or without workers
        await waitFor(
          `the CA without workers to hold as many database files as the one with (${twoWorkers})`,
          () => dbFiles(inline.init.dir) === twoWorkers,
        )
      } finally {
        await inline.stop()
      }
      // and the issuances of both workers went through it, each token spent once
      const ott = await gh.mint()
      const both = await Promise.all([
        signOnce(t.url, t.rootPem, {publicKey: subject, ott}),
        signOnce(t.url, t.rootPem, {publicKey: subject, ott}),
      ])
      assert.deepEqual(both.map((r) => r.status).sort(), [201, 401])
    })

    it('a token spent on one worker is a replay on the other', async () => {
      const ott = await gh.mint()
      const first = await signOnce(t.url, t.rootPem, {publicKey: subject, ott})
      assert.equal(first.status, 201)
      const spentOn = byRequest(t.audit(), first.id)[0]!.worker
      // the same token again, on fresh connections, until one reaches the other worker
      for (let n = 0; ; n++) {
        assert.ok(n < 64, `64 connections all reached worker ${spentOn}`)
        const again = await signOnce(t.url, t.rootPem, {publicKey: subject, ott})
        assert.equal(again.status, 401, JSON.stringify(again.json))
        const line = byRequest(t.audit(), again.id)[0]!
        assert.equal(line.event, 'certificate_denied')
        assert.match(JSON.stringify(line), /"token_replayed"/)
        if (line.worker !== spentOn) break
      }
      assert.equal(t.audit().filter((l) => l.event === 'certificate_issued').length, 1)
    })

    it("requests at once, the store's answers batched: each token buys one certificate, a token sent twice one, and each answer is its own request's", async () => {
      const keys = Array.from({length: 28}, () => generatePrivateKey('ed25519').publicKey)
      const otts = await Promise.all(keys.slice(0, 24).map(() => gh.mint()))
      const bodies = otts.map((ott, i) => ({key: keys[i]!, ott}))
      // four tokens sent a second time, for a key of its own, in the same burst as their first use: a
      // store answer given to the wrong request shows as a token bought twice or not at all
      const again = bodies.slice(0, 4).map((b, i) => ({key: keys[24 + i]!, ott: b.ott}))
      const sent = [...bodies, ...again]
      const answers = await Promise.all(
        sent.map((b) => signOnce(t.url, t.rootPem, {publicKey: b.key.blob.toString('base64'), ott: b.ott})),
      )
      for (const [i, r] of answers.entries()) {
        if (r.status !== 201) continue
        const crt = parseCertificate(Buffer.from(r.json.crt as string, 'base64'))
        assert.ok(crt.publicKey.blob.equals(sent[i]!.key.blob), `answer ${i} carries another request's key`)
      }
      for (const b of bodies.slice(0, 4)) {
        const uses = answers.filter((_, i) => sent[i]!.ott === b.ott).map((r) => r.status)
        assert.deepEqual(uses.sort(), [201, 401])
      }
      assert.equal(answers.filter((r) => r.status === 201).length, 24)
      const replayed = answers.filter((r) => r.status === 401).flatMap((r) => byRequest(t.audit(), r.id))
      assert.equal(replayed.length, 4)
      for (const l of replayed) assert.match(JSON.stringify(l), /"token_replayed"/)
    })

    it('admin events reach the audit log once, not once per worker', async () => {
      await revoke({configPath: t.init.config, keyId: 'gha:acme/app:1', reason: 'first'})
      await revoke({configPath: t.init.config, keyId: 'gha:acme/app:2', reason: 'second'})
      await waitFor(
        'both revocations in the audit log',
        () => t.audit().filter((l) => l.event === 'certificate_revoked').length >= 2,
        30_000,
      )
      // a third event forwarded after them: every forwarding pass that could repeat them has run
      await revoke({configPath: t.init.config, keyId: 'gha:acme/app:3', reason: 'third'})
      await waitFor(
        'the third',
        () => t.audit().some((l) => l.event === 'certificate_revoked' && l.reason === 'third'),
        30_000,
      )
      const reasons = t
        .audit()
        .filter((l) => l.event === 'certificate_revoked')
        .map((l) => l.reason)
      assert.deepEqual(reasons, ['first', 'second', 'third'])
    })

    it('close() lets the requests in flight finish: each answered, each audited, then server_stopped', async () => {
      const tokens = await Promise.all(Array.from({length: 16}, () => gh.mint()))
      const inFlight = tokens.map((ott) =>
        signOnce(t.url, t.rootPem, {publicKey: subject, ott}).catch((err: Error) => ({
          status: 0,
          json: {error: err.message} as Line,
          id: '',
        })),
      )
      await waitFor('requests to arrive', () => t.audit().some((l) => l.event === 'certificate_issued'), 30_000)
      await stop()
      const results = await Promise.all(inFlight)
      const lines = t.audit()
      for (const r of results) {
        // answered before the listener closed; or, arriving while it closes, a 503 (the server's closing
        // answer, nothing issued) or refused at connect: never cut off midway
        if (r.status === 201)
          assert.equal(byRequest(lines, r.id).filter((l) => l.event === 'certificate_issued').length, 1)
        else if (r.status === 503)
          assert.equal(byRequest(lines, r.id).filter((l) => l.event === 'certificate_issued').length, 0)
        else
          assert.match(
            String(r.json.error),
            /ECONNREFUSED|other side closed|ECONNRESET/,
            `status ${r.status}: ${JSON.stringify(r.json)}`,
          )
      }
      assert.ok(results.some((r) => r.status === 201))
      assert.equal(lines.at(-1)!.event, 'server_stopped')
    })
  })

  it('on PostgreSQL every worker writes through a pool of its own; a token raced to both is spent once', async function () {
    if (!postgresBinDir()) this.skip()
    const pg = await startPostgres()
    onCleanup(() => pg.destroy())
    const t = await startTestCa({db: pg.db(), ...rule(gh.issuer, ['deploy'])}, {workers: 2})
    try {
      // sign on fresh connections until both workers have answered
      const seen = new Set<unknown>()
      for (let n = 0; seen.size < 2; n++) {
        assert.ok(n < 64, 'every connection reached one worker')
        const r = await signOnce(t.url, t.rootPem, {publicKey: subject, ott: await gh.mint()})
        assert.equal(r.status, 201, JSON.stringify(r.json))
        for (const l of byRequest(t.audit(), r.id)) seen.add(l.worker)
      }
      const names = (
        await pg.psql("SELECT DISTINCT application_name FROM pg_stat_activity WHERE datname = 'sshca' ORDER BY 1")
      )
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
      assert.ok(names.includes('sshca worker 1') && names.includes('sshca worker 2'), names.join(', '))
      // the same token on many connections at once: one certificate, whichever workers they reach
      const ott = await gh.mint()
      const raced = await Promise.all(
        Array.from({length: 12}, () => signOnce(t.url, t.rootPem, {publicKey: subject, ott})),
      )
      assert.deepEqual(raced.map((r) => r.status).sort(), [201, ...Array.from({length: 11}, () => 401)])
      const denied = raced.filter((r) => r.status === 401).flatMap((r) => byRequest(t.audit(), r.id))
      assert.ok(denied.every((l) => JSON.stringify(l).includes('"token_replayed"')))
    } finally {
      await t.stop()
    }
  })

  it('a replacement worker started after a reload that names another database opens the one of the start, as its siblings do', async function () {
    if (!postgresBinDir()) this.skip()
    const pg = await startPostgres()
    onCleanup(() => pg.destroy())
    const t = await startTestCa({db: pg.db(), ...rule(gh.issuer, ['deploy'])}, {workers: 2})
    try {
      // a reload names another database (a migration being prepared, a typo); then a worker dies. Were
      // its replacement to open the reloaded one, the tokens it spends and the certificates it records
      // would be in a store the other threads never read: one connection in two could replay a token
      const other = await pg.createDatabase()
      await t.setPolicy({db: pg.db({url: other}), ...rule(gh.issuer, ['deploy'])})
      assert.equal(await t.ca.reload(), true)
      await replaceFirstWorker(t)
      const name = new URL(other).pathname.slice(1)
      const there = await pg.psql(`SELECT count(*) FROM pg_stat_activity WHERE datname = '${name}'`)
      assert.equal(Number(there.trim()), 0, `connections to ${name}, the reloaded database`)
      // a token spent on either worker is a replay on the other
      const ott = await gh.mint()
      const first = await signOnce(t.url, t.rootPem, {publicKey: subject, ott})
      assert.equal(first.status, 201, JSON.stringify(first.json))
      const spentOn = byRequest(t.audit(), first.id)[0]!.worker
      for (let n = 0; ; n++) {
        assert.ok(n < 64, `64 connections all reached worker ${String(spentOn)}`)
        const again = await signOnce(t.url, t.rootPem, {publicKey: subject, ott})
        assert.equal(again.status, 401, `a replay was signed: ${JSON.stringify(again.json)}`)
        if (byRequest(t.audit(), again.id)[0]!.worker !== spentOn) break
      }
      // and the reload said so, rather than seem to apply it
      const loaded = t
        .audit()
        .filter((l) => l.event === 'policy_loaded' && l.reload === true)
        .at(-1)
      assert.ok(
        (loaded?.warnings as string[] | undefined)?.some((w) => /^db: .* takes effect when the CA restarts/.test(w)),
        JSON.stringify(loaded),
      )
    } finally {
      await t.stop()
    }
  })

  it('close() waits for a request in flight as long as the requestTimeout of the start, not a reloaded one', async () => {
    const t = await startTestCa(rule(gh.issuer, ['deploy']), {workers: 2})
    let stopping: Promise<void> | undefined
    try {
      // a request may take the start's 10 s; a reload says 1 s, which takes effect at the restart
      await t.setPolicy(rule(gh.issuer, ['deploy'], {rate: false, requestTimeout: 1, headersTimeout: 1}))
      assert.equal(await t.ca.reload(), true)
      // a request whose body comes 7 s after the CA is told to stop: within the start's 10 s
      const url = new URL(t.url)
      const socket = connect({host: url.hostname, port: Number(url.port), ca: t.rootPem})
      await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject))
      socket.on('error', () => undefined)
      let answer = ''
      socket.on('data', (d: Buffer) => (answer += d.toString('utf8')))
      const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()))
      socket.write(
        `POST /ssh/sign HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n`,
      )
      await new Promise((resolve) => setTimeout(resolve, 500))
      stopping = t.stop()
      await new Promise((resolve) => setTimeout(resolve, 7000))
      socket.write('{}')
      await ended
      // were its worker ended at the reloaded timeout's deadline (1 + 5 s), the client would read nothing
      assert.match(answer, /^HTTP\/1\.1 \d{3} /, `the request's answer: ${JSON.stringify(answer)}`)
      await stopping
    } finally {
      await (stopping ?? t.stop())
    }
  })

  it('audit lines on a stalled pipe: lines over 4 KiB from both workers never interleave', async () => {
    const {child, reader, exited, readerClosed, out, url, rootPem} = await serveToFifo(gh.issuer)
    // stop reading: the pipe (64 KiB) fills, and the workers' writes come back partial or wait
    reader.pause()
    const tokens = await Promise.all(Array.from({length: 60}, () => gh.mint(bigClaims)))
    let answered = 0
    const results = tokens.map((ott) => signOnce(url, rootPem, {publicKey: subject, ott}).finally(() => answered++))
    // the pipe holds about 15 of the 60 lines: wait until it is full. Answers come back while it has
    // room, unless a worker's requests were settled together (one group commit): it then writes their
    // lines first, and waits on the full pipe before it sends any answer. So: five answers, or the
    // paused reader's buffer full and then a second in which none came
    let before = -1
    await waitFor(
      'the first answers, or the workers waiting on the full pipe',
      async () => {
        if (answered >= 5) return true
        // the paused reader fills its own buffer first, then the pipe behind it fills
        if (reader.readableLength < reader.readableHighWaterMark) return false
        const still = answered === before
        before = answered
        await new Promise((resolve) => setTimeout(resolve, 1000))
        return still && answered === before
      },
      60_000,
    )
    reader.resume()
    // a stall of two seconds or so: about the audit log's patience (AUDIT_PATIENCE_MS), so a request
    // may be refused for want of its line (recorded all the same, its line kept and written later);
    // a shorter pause costs nothing (unit test audit-stall), and this test is about whole lines
    const statuses = (await Promise.all(results)).map((r) => r.status)
    assert.deepEqual(
      statuses.filter((s) => s !== 201 && s !== 503),
      [],
    )
    child.kill('SIGTERM')
    assert.equal(await exited, 0)
    await readerClosed
    const lines = streamLines(out())
    const issued = lines.filter((l) => l.event === 'certificate_issued')
    assert.equal(issued.length, 60)
    assert.deepEqual(new Set(issued.map((l) => l.worker)), new Set([1, 2]))
  })

  it('audit lines on a pipe whose reader stops for good: requests are refused (503) after the patience, not left hanging; /ready says so, stderr too; once it reads again every line comes whole', async () => {
    const {child, reader, exited, readerClosed, out, err, url, rootPem, get} = await serveToFifo(gh.issuer)
    assert.deepEqual(await get('/ready'), {status: 200, json: {ready: true}})
    // the reader stops: the pipe and the reader's buffer take about 28 of these lines (over 4 KiB each)
    reader.pause()
    const tokens = await Promise.all(Array.from({length: 60}, () => gh.mint(bigClaims)))
    // each answered (undici gives up after 30 s without one): before, the CA's threads waited on the
    // pipe for good, and nothing answered, not even a TLS handshake
    const answers = await Promise.all(tokens.map((ott) => signOnce(url, rootPem, {publicKey: subject, ott})))
    const refused = answers.filter((r) => r.status === 503)
    assert.deepEqual(
      new Set(answers.map((r) => r.status)),
      new Set([201, 503]),
      `the answers: ${JSON.stringify(answers.map((r) => r.status))}`,
    )
    assert.match(String(refused[0]!.json.message), /cannot record certificates right now/)
    // the balancer's health check drains it; stderr says why (stdout is the pipe that takes nothing)
    assert.deepEqual(await get('/ready'), {status: 503, json: {ready: false, audit: 'failing'}})
    assert.equal((await get('/health')).status, 200)
    assert.match(
      err(),
      /warning: the audit log cannot be written \(it took nothing for 2 s \(a full pipe, or its reader stopped\)\): signing requests are refused \(503\)/,
    )
    // the reader reads again: what was kept is written, and the CA signs again
    reader.resume()
    await waitFor('the audit log to take lines again', async () => (await get('/ready')).status === 200, 30_000)
    await waitFor('stderr to say so', () => /the audit log takes lines again/.test(err()), 10_000)
    // the CA signs again; a request may still be refused at once (503, its line kept too) while a
    // thread writes out what it kept and finds the pipe full part-way through a line (once in ten
    // runs on a loaded machine)
    const after: Awaited<ReturnType<typeof signOnce>>[] = []
    await waitFor(
      'a certificate again',
      async () => {
        after.push(await signOnce(url, rootPem, {publicKey: subject, ott: await gh.mint(bigClaims)}))
        return after.at(-1)!.status === 201
      },
      30_000,
    )
    for (const r of after.slice(0, -1)) assert.match(String(r.json.message), /cannot record certificates right now/)
    child.kill('SIGTERM')
    assert.equal(await exited, 0)
    await readerClosed
    // every line whole; every certificate answered has its line, and so has every one recorded and
    // then refused for want of its line (kept, and written once the pipe took lines again)
    const issued = streamLines(out()).filter((l) => l.event === 'certificate_issued')
    for (const r of [...answers, ...after].filter((a) => a.status === 201))
      assert.equal(byRequest(issued, r.id).length, 1, `the line of ${r.id}`)
    assert.equal(issued.length, 60 + after.length)
  })

  it('stderr into the audit pipe too (2>&1, a journal): no warning of its failing lands inside an audit line; /ready says it', async () => {
    const {child, reader, exited, readerClosed, out, url, rootPem, get} = await serveToFifo(gh.issuer, true)
    reader.pause()
    const tokens = await Promise.all(Array.from({length: 60}, () => gh.mint(bigClaims)))
    const answers = await Promise.all(tokens.map((ott) => signOnce(url, rootPem, {publicKey: subject, ott})))
    assert.ok(
      answers.some((r) => r.status === 503),
      `no request waited past the patience: ${JSON.stringify(answers.map((r) => r.status))}`,
    )
    assert.equal((await get('/ready')).status, 503)
    reader.resume()
    await waitFor('the audit log to take lines again', async () => (await get('/ready')).status === 200, 30_000)
    child.kill('SIGTERM')
    assert.equal(await exited, 0)
    await readerClosed
    // every line whole: an audit line (JSON), or one of ca serve's own (its start, its warnings)
    const lines = out().split('\n').filter(Boolean)
    const own = lines.filter((l) => !l.startsWith('{'))
    for (const l of own) assert.match(l, /^(warning|sshca CA listening)/, `a line torn by another: ${l.slice(0, 200)}`)
    assert.equal(streamLines(lines.filter((l) => l.startsWith('{')).join('\n')).length, lines.length - own.length)
    // not said on stderr, which is this pipe: it could land inside a line cut part-way
    assert.ok(!own.some((l) => l.includes('the audit log cannot be written')), own.join('\n'))
  })

  it('`ca serve --workers 2`: one process titled sshca; SIGHUP reaches every worker; SIGTERM stops it', async () => {
    const {init, passwordFile} = await makeCaDir(rule(gh.issuer, ['deploy']))
    const auditFile = join(init.dir, 'audit.log')
    await writePolicy(init.config, {audit: {file: auditFile}, ...rule(gh.issuer, ['deploy'])})
    const {child, exited, started} = await serveWorkers(init.config, passwordFile)
    assert.equal(started.pid, child.pid)
    assert.equal(started.workers, 2)
    const rootPem = readFileSync(join(init.dir, 'certs', 'root_ca.crt'), 'utf8')
    const pidof = spawnSync('pidof', ['sshca'], {encoding: 'utf8'})
    assert.ok(pidof.stdout.trim().split(/\s+/).includes(String(child.pid)), `pidof sshca: ${pidof.stdout}`)

    await writePolicy(init.config, {audit: {file: auditFile}, ...rule(gh.issuer, ['release'])})
    child.kill('SIGHUP')
    await waitFor(
      'the reload',
      () => linesOf(auditFile).some((l) => l.event === 'policy_loaded' && l.reload === true),
      30_000,
    )
    const seen = new Set<unknown>()
    for (let n = 0; seen.size < 2; n++) {
      assert.ok(n < 64, 'every connection reached one worker')
      const r = await signOnce(started.url, rootPem, {publicKey: subject, ott: await gh.mint()})
      assert.equal(r.status, 201)
      assert.deepEqual(parseCertificate(Buffer.from(r.json.crt as string, 'base64')).principals, ['release'])
      for (const l of byRequest(linesOf(auditFile), r.id)) seen.add(l.worker)
    }

    child.kill('SIGTERM')
    assert.equal(await exited, 0)
    assert.equal(linesOf(auditFile).at(-1)!.event, 'server_stopped')
  })

  it('a worker whose event loop stops turning is ended and replaced (worker_stalled): before, a share of the new connections waited for good', async function () {
    this.timeout(180_000)
    // no load shedding on event-loop delay: a 503 after the pause below is not what this is about
    const policy = rule(gh.issuer, ['deploy'], {rate: false, maxEventLoopDelay: false})
    const {init, passwordFile} = await makeCaDir(policy)
    const auditFile = join(init.dir, 'audit.log')
    await writePolicy(init.config, {audit: {file: auditFile}, ...policy})
    const hang = join(init.dir, 'hang.mjs')
    writeFileSync(hang, HANG_MODULE)
    const trigger = join(init.dir, 'hang-now')
    const {child, exited, started} = await serveWorkers(init.config, passwordFile, {
      nodeArgs: ['--import', pathToFileURL(hang).href],
      env: {SSHCA_TEST_HANG: trigger},
    })
    const rootPem = readFileSync(join(init.dir, 'certs', 'root_ca.crt'), 'utf8')
    /** Signs on a new connection: its status, and the worker that issued the certificate. */
    const sign = async (): Promise<{status: number; worker: unknown}> => {
      const r = await signOnce(started.url, rootPem, {publicKey: subject, ott: await gh.mint()})
      const issued = byRequest(linesOf(auditFile), r.id).find((l) => l.event === 'certificate_issued')
      return {status: r.status, worker: issued?.worker}
    }
    const signedBy = async (): Promise<unknown> => {
      const r = await sign()
      assert.equal(r.status, 201)
      return r.worker
    }
    const seen = new Set<unknown>()
    for (let n = 0; seen.size < 2; n++) {
      assert.ok(n < 64, 'every connection reached one worker')
      seen.add(await signedBy())
    }

    writeFileSync(trigger, '')
    await waitFor('a worker to take the trigger', () => existsSync(`${trigger}.taken`), 10_000)
    const hungAt = performance.now()
    // the kernel still hands the looping worker its share of new connections: one of them gets no TLS
    // handshake (each goes to either worker; 20 all to the other: one chance in a million)
    let stuck: ReturnType<typeof openTls> | undefined
    for (let n = 0; n < 20 && !stuck; n++) {
      const c = openTls(started.url, rootPem)
      await waitFor('a handshake', () => c.settled !== undefined, 3000).catch(() => undefined)
      if (c.settled === undefined) stuck = c
      else c.close()
    }
    assert.ok(stuck, 'a connection got no handshake')

    await waitFor('worker_stalled', () => linesOf(auditFile).some((l) => l.event === 'worker_stalled'), 60_000)
    const stall = linesOf(auditFile).find((l) => l.event === 'worker_stalled')!
    // it was the looping worker's: a serving worker settles a connection within its handshakeTimeout (5 s)
    assert.ok(
      (stuck.settled ?? performance.now()) - stuck.opened > 6000,
      `the stuck connection settled after ${Math.round(stuck.settled! - stuck.opened)} ms`,
    )
    // not before it stood still that long (its last beat may have come up to a second before it looped);
    // the other worker, serving all the while, was never taken for stalled
    assert.ok(Number(stall.stalled_ms) >= WORKER_STALL_MS, `stalled_ms ${String(stall.stalled_ms)}`)
    assert.ok(performance.now() - hungAt >= WORKER_STALL_MS - 1500, 'ended no sooner than the watchdog allows')
    await waitFor(
      'its worker_exited line',
      () =>
        linesOf(auditFile).some(
          (l) =>
            l.event === 'worker_exited' &&
            l.worker === stall.worker &&
            l.thread_id === stall.thread_id &&
            l.stalled_ms === stall.stalled_ms &&
            l.replaced === true,
        ),
      30_000,
    )
    // its replacement signs in its slot (the looping thread has ended: an answer from that slot is the
    // new thread's), beside the worker that never stopped; and every new connection gets its handshake
    await waitFor('the replacement to sign', async () => (await sign()).worker === stall.worker, 60_000)
    for (let n = 0; n < 8; n++) {
      const c = openTls(started.url, rootPem)
      await waitFor(`connection ${n + 1}'s handshake`, () => c.settled !== undefined, 10_000)
      c.close()
    }

    // the whole process standing still (SIGSTOP, a suspended VM) ends no worker: no count could move
    child.kill('SIGSTOP')
    await new Promise((resolve) => setTimeout(resolve, WORKER_STALL_MS + 2000))
    child.kill('SIGCONT')
    for (let n = 0; n < 4; n++) await signedBy()
    await new Promise((resolve) => setTimeout(resolve, 2000))
    assert.equal(linesOf(auditFile).filter((l) => l.event === 'worker_stalled').length, 1)

    child.kill('SIGTERM')
    assert.equal(await exited, 0)
    assert.equal(linesOf(auditFile).at(-1)!.event, 'server_stopped')
  })
})
