/**
 * The CA's bounds, attacked over real TLS sockets (issue 8, items 12 and 13): slow bodies and headers,
 * idle connections, a connection flood, a signing flood from one address (and one that spoofs
 * X-Forwarded-For), requests piling up in flight, and oversized bodies that must read their 413.
 */
import assert from 'node:assert/strict'
import {createServer, type Server} from 'node:http'
import {request} from 'node:https'
import {connect, type TLSSocket} from 'node:tls'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {startTestCa, type TestCa} from '../helpers/ca.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {waitFor} from '../helpers/proc.ts'

const keyB64 = () => generatePrivateKey('ed25519').publicKey.blob.toString('base64')

function ciPolicy(
  issuer: string,
  limits: Record<string, unknown>,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    limits,
    ...extra,
    provisioners: [
      {
        name: 'ci',
        type: 'oidc',
        issuer,
        audience: 'sshca-ci',
        rules: [
          {
            name: 'deploy',
            match: {repository: 'acme/app'},
            certificate: {principals: ['deploy'], ttl: '5m', keyId: 'gha:${run_id}'},
          },
        ],
      },
    ],
  }
}

/** A TLS connection to the CA that reports when the server closed it. */
function open(t: TestCa): Promise<{socket: TLSSocket; closed: Promise<string>}> {
  return new Promise((resolve, reject) => {
    const socket = connect({host: '127.0.0.1', port: t.ca.port, ca: t.rootPem})
    let received = ''
    socket.on('data', (d: Buffer) => (received += d.toString()))
    const closed = new Promise<string>((r) => socket.once('close', () => r(received)))
    socket.once('secureConnect', () => resolve({socket, closed}))
    socket.once('error', reject)
  })
}

/** Races a promise against a generous deadline: the bound under test is seconds, the deadline a minute. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>(
        (_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms)),
      ),
    ])
  } finally {
    clearTimeout(timer)
  }
}

describe('CA limits: every wait bounded, every flood capped', function () {
  this.timeout(120_000)
  let gh: GithubIssuer
  before(async () => {
    gh = await startGithubIssuer()
  })
  after(async () => gh?.stop())

  describe('closing the CA while a client sends its headers a byte at a time', () => {
    // Node stops enforcing headersTimeout and requestTimeout on a server being closed: on the main
    // thread (--workers 0: the single executable, a CA whose keys are in a token) close() waited for
    // that connection for ever, and `ca serve` never exited on SIGTERM
    for (const workers of [0, 1]) {
      it(`--workers ${workers}: the connection is ended at the close deadline (requestTimeout + 5 s here), and close() returns`, async () => {
        const t = await startTestCa(ciPolicy(gh.issuer, {requestTimeout: 2, headersTimeout: 1, rate: false}), {workers})
        const {socket, closed} = await open(t)
        socket.write('POST /ssh/sign HTTP/1.1\r\nHost: ca\r\n')
        const drip = setInterval(() => socket.writable && socket.write('X-Slow: a\r\n'), 300)
        try {
          await new Promise((r) => setTimeout(r, 500))
          await within(t.stop(), 30_000, 'close() with a client dripping its headers')
          await within(closed, 5_000, 'the connection to be closed')
        } finally {
          clearInterval(drip)
          socket.destroy()
        }
      })
    }
  })

  describe('timeouts and the connection cap', () => {
    let t: TestCa
    before(async () => {
      t = await startTestCa(
        ciPolicy(gh.issuer, {
          requestTimeout: 2,
          headersTimeout: 1,
          idleTimeout: 2,
          handshakeTimeout: 2,
          maxConnections: 20,
          rate: false,
        }),
      )
    })
    after(async () => t?.stop())

    it('a body sent one byte at a time is cut off at the request timeout (408), not held for minutes', async () => {
      const {socket, closed} = await open(t)
      socket.write(
        'POST /ssh/sign HTTP/1.1\r\nHost: ca\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{',
      )
      const drip = setInterval(() => socket.writable && socket.write(' '), 300)
      try {
        const answer = await within(closed, 30_000, 'the server closing a slow body')
        assert.match(answer, /^HTTP\/1\.1 408/)
      } finally {
        clearInterval(drip)
      }
    })

    it('headers sent slowly are cut off at the headers timeout', async () => {
      const {socket, closed} = await open(t)
      socket.write('POST /ssh/sign HTTP/1.1\r\nHost: ca\r\n')
      const drip = setInterval(() => socket.writable && socket.write('X-Slow: a\r\n'), 300)
      try {
        await within(closed, 30_000, 'the server closing slow headers')
      } finally {
        clearInterval(drip)
      }
    })

    it('an idle connection is closed after the idle timeout', async () => {
      const {closed} = await open(t)
      await within(closed, 30_000, 'the server closing an idle connection')
    })

    it('connections beyond maxConnections are refused at accept', async () => {
      const attempts = await Promise.allSettled(Array.from({length: 30}, () => open(t)))
      const established = attempts.filter((a) => a.status === 'fulfilled')
      for (const a of established) (a as PromiseFulfilledResult<{socket: TLSSocket}>).value.socket.destroy()
      assert.ok(established.length <= 20, `${established.length} connections were accepted; the cap is 20`)
      assert.ok(attempts.length - established.length >= 10, 'the excess connections were refused')
      // and the CA still serves once they are gone
      await waitFor(
        'the CA to serve again',
        async () => (await t.call('GET', '/health').catch(() => ({status: 0}))).status === 200,
        30_000,
      )
    })
  })

  describe('rate limit per client address on the signing routes', () => {
    let t: TestCa
    before(async () => {
      t = await startTestCa(ciPolicy(gh.issuer, {rate: {max: 5, window: '1m'}}))
    })
    after(async () => t?.stop())

    it('the sixth signing request in a minute → 429 with Retry-After, audited as rate_limited; /1.0 shares the bucket; X-Forwarded-For is not believed', async () => {
      for (let i = 0; i < 4; i++)
        assert.equal((await t.call('POST', '/ssh/sign', {publicKey: keyB64(), ott: await gh.mint()})).status, 201)
      assert.equal((await t.call('POST', '/1.0/ssh/sign', {publicKey: keyB64(), ott: await gh.mint()})).status, 201)
      const limited = await t.call(
        'POST',
        '/ssh/sign',
        {publicKey: keyB64(), ott: await gh.mint()},
        {'x-forwarded-for': '10.9.8.7'},
      )
      assert.equal(limited.status, 429)
      assert.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After is set')
      const body = limited.json as {status: number; message: string; request_id: string}
      assert.equal(body.status, 429)
      const line = t.audit().find((l) => l.request_id === body.request_id)!
      assert.equal(line.event, 'rate_limited')
      assert.equal(line.reason, 'rate_limited')
      assert.equal(line.client_address, '127.0.0.1')
      // reads are not rate-limited
      assert.equal((await t.call('GET', '/ssh/roots')).status, 200)
    })
  })

  describe("trustProxy: the balancer's X-Forwarded-For names the client", () => {
    let t: TestCa
    before(async () => {
      t = await startTestCa(ciPolicy(gh.issuer, {rate: {max: 2, window: '1m'}}, {trustProxy: ['127.0.0.1/32']}))
    })
    after(async () => t?.stop())

    it('each forwarded address has its own bucket', async () => {
      const from = async (addr: string) =>
        (await t.call('POST', '/ssh/sign', {publicKey: keyB64(), ott: await gh.mint()}, {'x-forwarded-for': addr}))
          .status
      assert.deepEqual([await from('10.0.0.1'), await from('10.0.0.1'), await from('10.0.0.1')], [201, 201, 429])
      assert.equal(await from('10.0.0.2'), 201)
      const line = t
        .audit()
        .filter((l) => l.event === 'certificate_issued')
        .pop()!
      assert.equal(line.client_address, '10.0.0.2')
    })
  })

  describe('load shedding: past maxInFlight, 503 at once', () => {
    let t: TestCa
    let slow: Server
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    let hits = 0
    before(async () => {
      // an issuer whose keys arrive only when the test says so: requests wait in flight meanwhile
      slow = createServer((req, res) => {
        hits++
        void gate.then(async () => {
          const base = `http://127.0.0.1:${(slow.address() as {port: number}).port}`
          const body =
            req.url === '/.well-known/openid-configuration'
              ? {issuer: base, jwks_uri: `${base}/jwks`}
              : await (await fetch(`${gh.issuer}/.well-known/jwks`)).json()
          res.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify(body))
        })
      })
      await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r))
      t = await startTestCa(
        ciPolicy(`http://127.0.0.1:${(slow.address() as {port: number}).port}`, {maxInFlight: 1, rate: false}),
      )
    })
    after(async () => {
      release()
      await t?.stop()
      slow?.closeAllConnections()
      slow?.close()
    })

    it('a request waits on the issuer; the next is answered 503 with Retry-After at once; then all is well', async () => {
      const iss = `http://127.0.0.1:${(slow.address() as {port: number}).port}`
      const mint = () => gh.mint({iss})
      const waiting = t.call('POST', '/ssh/sign', {publicKey: keyB64(), ott: await mint()})
      await waitFor('the first request to wait on the issuer', () => hits > 0, 30_000)
      const shed = await t.call('POST', '/ssh/sign', {publicKey: keyB64(), ott: await mint()})
      assert.equal(shed.status, 503)
      assert.equal(shed.headers['retry-after'], '1')
      const line = t.audit().find((l) => l.request_id === (shed.json as {request_id: string}).request_id)!
      assert.equal(line.reason, 'overloaded')
      // a flood of them: a line at once and one when the second ends, per client and thread, not one
      // line each (src/ca/observe/refusals.ts); the lines account for every request (a summary line
      // stands for `repeated` of them)
      const tokens = await Promise.all(Array.from({length: 199}, mint))
      const flood = await Promise.all(
        tokens.map(async (ott) => (await t.call('POST', '/ssh/sign', {publicKey: keyB64(), ott})).status),
      )
      assert.deepEqual(new Set(flood), new Set([503]))
      const accounted = () =>
        t
          .audit()
          .filter((l) => l.reason === 'overloaded')
          .reduce((n, l) => n + ((l.repeated as number | undefined) ?? 1), 0)
      await waitFor('every refusal accounted for in the audit log', () => accounted() === 200, 30_000)
      const lines = t.audit().filter((l) => l.reason === 'overloaded')
      assert.ok(lines.length < 20, `${lines.length} lines for 200 refusals`)
      assert.ok(lines.some((l) => (l.repeated as number) > 0 && l.request_id === undefined))
      release()
      assert.equal((await waiting).status, 201)
      assert.equal((await t.call('POST', '/ssh/sign', {publicKey: keyB64(), ott: await mint()})).status, 201)
    })
  })

  describe('load shedding: while the event loop lags, 503 at once', () => {
    let t: TestCa
    before(async () => {
      // the loop this test keeps busy is its own thread's: the CA serves on it (each worker thread measures its own loop)
      t = await startTestCa(ciPolicy(gh.issuer, {maxEventLoopDelay: 20, rate: false}), {workers: 0})
    })
    after(async () => t?.stop())

    it('a loop kept busy (150 ms of every 160) sheds signing requests, audited as overloaded; idle again, it signs', async () => {
      assert.equal((await t.call('POST', '/ssh/sign', {publicKey: keyB64(), ott: await gh.mint()})).status, 201)
      const busy = setInterval(() => {
        const until = performance.now() + 150
        while (performance.now() < until);
      }, 10)
      try {
        let shed: Awaited<ReturnType<TestCa['call']>> | undefined
        await waitFor(
          'a signing request to be shed',
          async () => {
            const r = await t.call('POST', '/ssh/sign', {publicKey: keyB64(), ott: await gh.mint()})
            if (r.status === 503) shed = r
            else assert.equal(r.status, 201)
            return shed !== undefined
          },
          30_000,
        )
        assert.equal(shed!.headers['retry-after'], '1')
        assert.deepEqual(Object.keys(shed!.json as object).sort(), ['message', 'request_id', 'status'])
        const line = t.audit().find((l) => l.request_id === (shed!.json as {request_id: string}).request_id)!
        assert.equal(line.reason, 'overloaded')
      } finally {
        clearInterval(busy)
      }
      await waitFor(
        'signing to resume once the loop is idle',
        async () => (await t.call('POST', '/ssh/sign', {publicKey: keyB64(), ott: await gh.mint()})).status === 201,
        30_000,
      )
    })
  })

  describe('oversized bodies', () => {
    let t: TestCa
    before(async () => {
      t = await startTestCa(ciPolicy(gh.issuer, {rate: false}))
    })
    after(async () => t?.stop())

    /** One request on its own connection; resolves with the status, rejects on a reset. */
    const postBig = (size: number) =>
      new Promise<{status: number; body: string}>((resolve, reject) => {
        const body = Buffer.alloc(size, 0x20)
        const req = request(
          `${t.url}/ssh/sign`,
          {
            method: 'POST',
            agent: false,
            ca: t.rootPem,
            headers: {'content-type': 'application/json', 'content-length': String(size)},
          },
          (res) => {
            let text = ''
            res.on('data', (d: Buffer) => (text += d))
            res.on('end', () => resolve({status: res.statusCode ?? 0, body: text}))
          },
        )
        req.on('error', reject)
        req.end(body)
      })

    it('20 of 20 oversized requests read a 413 (no reset), at 64 KiB and at 900 KiB', async () => {
      for (const size of [64 * 1024, 900 * 1024]) {
        const results = await Promise.all(Array.from({length: 20}, () => postBig(size)))
        for (const r of results) {
          assert.equal(r.status, 413)
          assert.equal((JSON.parse(r.body) as {status: number}).status, 413)
        }
      }
      assert.equal((await t.call('GET', '/health')).status, 200)
    })
  })
})
