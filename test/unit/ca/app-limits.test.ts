/**
 * The HTTP layer's own limits, in process: the connection cap and in-flight shedding counted over
 * every thread's slots, the per-address rate limit, and the error shapes of what no route handles.
 * Plain HTTP on 127.0.0.1 (TLS is the integration tests'); issuer keys served by a fetch function.
 */
import assert from 'node:assert/strict'
import {createPublicKey, generateKeyPairSync, randomUUID, webcrypto, type KeyObject} from 'node:crypto'
import {request as httpsRequest} from 'node:https'
import {connect, type Socket} from 'node:net'
import {connect as tlsConnect, type Server as TlsServer, type TLSSocket} from 'node:tls'
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import type {FastifyInstance} from 'fastify'
import {setTimeout as sleep} from 'node:timers/promises'
import {SignJWT} from 'jose'
import {Authority} from '../../../src/ca/authority/authority.ts'
import type {CaRuntime} from '../../../src/ca/authority/runtime.ts'
import {parseConfig} from '../../../src/ca/config/config.ts'
import {
  appCounters,
  BODY_LIMIT,
  buildApp,
  eventLoopLag,
  IN_FLIGHT_PER_THREAD,
  tlsContext,
} from '../../../src/ca/http/app.ts'
import {SharedRateStore} from '../../../src/ca/http/rate-store.ts'
import {createRoot, createTlsCert} from '../../../src/ca/keys/pki.ts'
import {memoryAuditLog} from '../../../src/ca/observe/audit.ts'
import {noopMeter, type Meter} from '../../../src/ca/observe/meter.ts'
import {TokenVerifier} from '../../../src/ca/provisioner/oidc.ts'
import {SqliteStore} from '../../../src/ca/store/sqlite.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {waitFor} from '../../helpers/proc.ts'
import {testMaterial} from '../../helpers/material.ts'
import {memoryIssuer} from '../../helpers/memory-issuer.ts'
import {hugeExponentRsaPrivateKey} from '../../helpers/forge.ts'

const ISSUER = 'https://ci.example.com'
const policy = (limits: string, extra = '') => `
limits: ${limits}
${extra}
provisioners:
  - name: ci
    type: oidc
    issuer: ${ISSUER}
    audience: sshca-ci
    rules:
      - {name: deploy, match: {repository: acme/app}, certificate: {principals: [deploy], ttl: 10m}}
`

interface Built {
  app: FastifyInstance
  config: ReturnType<typeof parseConfig>['config']
  audit: ReturnType<typeof memoryAuditLog>
  requests: [string, number, number][]
  mint(): Promise<string>
  close(): Promise<void>
}

async function build(
  limits: string,
  o: Parameters<typeof buildApp>[2] = {},
  https?: {key: string; cert: string},
  extra = '',
): Promise<Built> {
  const {config} = parseConfig(policy(limits, extra), '/nonexistent/ca.yaml')
  const {privateKey: issuerPrivateKey, fetch: fetchFn} = await memoryIssuer(ISSUER)
  const material = await testMaterial('Limits')
  const requests: [string, number, number][] = []
  const meter: Meter = {...noopMeter, request: (route, status, seconds) => void requests.push([route, status, seconds])}
  const audit = memoryAuditLog()
  const store = new SqliteStore(':memory:', {background: false})
  const rt: CaRuntime = {
    policy: {config, verifier: new TokenVerifier(config.provisioners, {fetch: fetchFn})},
    material,
    store,
    audit,
    meter,
    clock: Date.now,
  }
  const app = buildApp(new Authority(rt), https, o)
  await app.listen({host: '127.0.0.1', port: 0})
  const mint = () => {
    const now = Math.floor(Date.now() / 1000)
    return new SignJWT({repository: 'acme/app', jti: randomUUID()})
      .setProtectedHeader({alg: 'ES256', kid: 'k1'})
      .setIssuer(ISSUER)
      .setAudience('sshca-ci')
      .setSubject('repo:acme/app')
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(issuerPrivateKey)
  }
  return {
    app,
    config,
    audit,
    requests,
    mint,
    close: async () => {
      await app.close()
      await store.close()
    },
  }
}

const portOf = (app: FastifyInstance): number => (app.server.address() as {port: number}).port

/** GET /health over TLS (any server certificate), with a client certificate or none: the status. */
const healthOverTls = (
  app: FastifyInstance,
  o: {maxVersion?: 'TLSv1.2' | 'TLSv1.3'; key?: string; cert?: string} = {},
): Promise<number> =>
  new Promise((resolve, reject) => {
    const req = httpsRequest(
      {host: '127.0.0.1', port: portOf(app), path: '/health', agent: false, rejectUnauthorized: false, ...o},
      (res) => (res.resume(), resolve(res.statusCode!)),
    )
    req.on('error', reject)
    req.end()
  })
const key = () => generatePrivateKey('ed25519').publicKey.blob.toString('base64')

/** One raw HTTP/1.1 exchange on its own connection: what came back before the server closed it. */
function raw(port: number, request: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const s = connect(port, '127.0.0.1', () => s.write(request))
    s.on('data', (c: Buffer) => chunks.push(c))
    s.on('error', () => undefined)
    s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
  })
}

function parse(reply: string): {status: number; headers: Record<string, string>; body: string} {
  const at = reply.indexOf('\r\n\r\n')
  const [statusLine, ...lines] = reply.slice(0, at).split('\r\n')
  const headers = Object.fromEntries(
    lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
  )
  return {status: Number(statusLine!.split(' ')[1]), headers, body: reply.slice(at + 4)}
}

const open = (port: number): Promise<Socket> =>
  new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s))
    s.on('error', reject)
  })

describe('the CA app: limits counted over every thread, and what no route answers', function () {
  this.timeout(30_000)
  let b: Built | undefined
  afterEach(async () => {
    await b?.close()
    b = undefined
  })

  it("connections past maxConnections (this thread's and the others' slots together) are dropped at accept", async () => {
    const all = appCounters(2)
    Atomics.store(all, 0, 1) // another thread holds one connection
    b = await build('{rate: false, maxConnections: 2}', {counters: {all, slot: 1}})
    const port = portOf(b.app)
    const mine = await open(port)
    await waitFor('the connection to be counted', () => Atomics.load(all, 2) === 1, 10_000)
    // the third connection: closed before a byte is answered
    assert.equal(await raw(port, 'GET /health HTTP/1.1\r\nhost: x\r\n\r\n'), '')
    assert.equal(Atomics.load(all, 2), 1, 'a dropped connection is not counted')
    mine.destroy()
    await waitFor('the closed connection to be released', () => Atomics.load(all, 2) === 0, 10_000)
    assert.equal(parse(await raw(port, 'GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')).status, 200)
    assert.equal(Atomics.load(all, 0), 1, "the other thread's count is its own")
  })

  it('signing requests past maxInFlight (every slot counted) are answered 503 at once, with Retry-After; others pass', async () => {
    const all = appCounters(3)
    b = await build('{rate: false, maxInFlight: 2}', {counters: {all, slot: 2}})
    Atomics.store(all, 1, 1) // slot 0: one signing request in flight
    Atomics.store(all, 3, 1) // slot 1: another
    const shed = await b.app.inject({
      method: 'POST',
      url: '/ssh/sign',
      payload: {publicKey: key(), ott: await b.mint()},
    })
    assert.equal(shed.statusCode, 503)
    assert.equal(shed.headers['retry-after'], '1')
    assert.equal(shed.json().request_id, shed.headers['x-request-id'])
    assert.deepEqual(
      b.audit.events.filter((e) => e.request_id === shed.headers['x-request-id']).map((e) => e.reason),
      ['overloaded'],
    )
    assert.equal(Atomics.load(all, 5), 0, 'a refused request is not counted')
    assert.equal((await b.app.inject({method: 'GET', url: '/health'})).statusCode, 200)
    // connection counts (the even places) are another kind
    Atomics.store(all, 3, 0)
    Atomics.store(all, 0, 5)
    Atomics.store(all, 2, 5)
    const port = portOf(b.app)
    const body = JSON.stringify({publicKey: key(), ott: await b.mint()})
    const signed = parse(
      await raw(
        port,
        `POST /ssh/sign HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      ),
    )
    assert.equal(signed.status, 201, signed.body)
    await waitFor('the finished request to be released', () => Atomics.load(all, 5) === 0, 10_000)
  })

  it('requests that trickle their bodies hold connections, never signing places: past IN_FLIGHT_PER_THREAD of them a signing request is still issued', async () => {
    const all = appCounters(1)
    b = await build('{rate: false}', {counters: {all, slot: 0}})
    const port = portOf(b.app)
    const slow: Socket[] = []
    try {
      for (let i = 0; i < IN_FLIGHT_PER_THREAD + 6; i++) {
        const s = await open(port)
        s.on('error', () => undefined)
        s.write(
          'POST /ssh/sign HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2000\r\n\r\n{"publicKey":',
        )
        slow.push(s)
      }
      const server = b.app.server
      await waitFor(
        'every slow request to reach the server',
        () => new Promise<boolean>((r) => server.getConnections((_e, n) => r(n >= IN_FLIGHT_PER_THREAD + 6))),
        10_000,
      )
      assert.equal(Atomics.load(all, 1), 0, 'no place is held by a body still arriving')
      const signed = await b.app.inject({
        method: 'POST',
        url: '/ssh/sign',
        payload: {publicKey: key(), ott: await b.mint()},
      })
      assert.equal(signed.statusCode, 201, signed.body)
    } finally {
      for (const s of slow) s.destroy()
    }
  })

  it('with every place taken a signing request is refused before its body is read (a malformed one too: 503, not 400); a place taken while its body arrived refuses it after', async () => {
    const all = appCounters(2)
    let headersSeen = 0
    b = await build('{rate: false, maxInFlight: 2, maxEventLoopDelay: 200}', {
      counters: {all, slot: 0},
      // the lag is read once a signing request's headers are in: the test learns when that was
      lag: {current: () => (headersSeen++, 0), stop: () => undefined},
    })
    Atomics.store(all, 3, 2)
    const early = await b.app.inject({method: 'POST', url: '/ssh/sign', payload: '{not json'})
    assert.equal(early.statusCode, 503)
    assert.equal(headersSeen, 0, 'refused on the count alone')
    Atomics.store(all, 3, 0)
    const body = JSON.stringify({publicKey: key(), ott: await b.mint()})
    const s = await open(portOf(b.app))
    const reply = new Promise<string>((resolve) => {
      let text = ''
      s.on('data', (c: Buffer) => (text += c.toString('latin1')))
      s.on('close', () => resolve(text))
    })
    s.write(
      `POST /ssh/sign HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
    )
    await waitFor('the headers to be read', () => headersSeen === 1, 10_000)
    Atomics.store(all, 3, 2) // the other thread takes both places while the body arrives
    s.write(body.slice(10))
    const late = parse(await reply)
    assert.equal(late.status, 503)
    assert.equal(JSON.parse(late.body).request_id, late.headers['x-request-id'])
    assert.equal(Atomics.load(all, 1), 0, 'nothing kept in this thread')
    assert.deepEqual(
      b.audit.events.map((e) => e.reason),
      ['overloaded', 'overloaded'],
    )
  })

  it('maxInFlight unset: IN_FLIGHT_PER_THREAD for each thread serving the CA (each slot), a reload setting it wins', async () => {
    const all = appCounters(3)
    b = await build('{rate: false}', {counters: {all, slot: 0}})
    const sign = async () =>
      (await b!.app.inject({method: 'POST', url: '/ssh/sign', payload: {publicKey: key(), ott: await b!.mint()}}))
        .statusCode
    Atomics.store(all, 3, 3 * IN_FLIGHT_PER_THREAD - 1) // the other threads hold all places but one
    assert.equal(await sign(), 201)
    Atomics.store(all, 3, 3 * IN_FLIGHT_PER_THREAD)
    assert.equal(await sign(), 503)
    b.config.limits.maxInFlight = 3 * IN_FLIGHT_PER_THREAD + 1
    assert.equal(await sign(), 201)
  })

  it('the rate limit: past `max` signing requests from one address in the window, 429 with the seconds to wait; / and /1.0 share it', async () => {
    b = await build('{rate: {max: 2, window: 1m}}')
    const sign = async (prefix: string) =>
      b!.app.inject({
        method: 'POST',
        url: `${prefix}/ssh/sign`,
        remoteAddress: '192.0.2.7',
        payload: {publicKey: key(), ott: await b!.mint()},
      })
    assert.equal((await sign('')).statusCode, 201)
    assert.equal((await sign('/1.0')).statusCode, 201)
    const limited = await sign('')
    assert.equal(limited.statusCode, 429)
    const seconds = Number(limited.headers['retry-after'])
    assert.ok(seconds > 0 && seconds <= 60, String(limited.headers['retry-after']))
    const line = b.audit.events.find((e) => e.request_id === limited.headers['x-request-id'])!
    assert.equal(line.reason, 'rate_limited')
    assert.equal(line.retry_after_seconds, seconds)
    // other addresses and the read routes are not limited
    assert.equal(
      (
        await b.app.inject({
          method: 'POST',
          url: '/ssh/sign',
          remoteAddress: '192.0.2.8',
          payload: {publicKey: key(), ott: await b.mint()},
        })
      ).statusCode,
      201,
    )
    assert.equal((await b.app.inject({method: 'GET', url: '/health', remoteAddress: '192.0.2.7'})).statusCode, 200)
  })

  it('the rate limit counts an IPv6 client by its /64 and an IPv4 client however its address is written', async () => {
    b = await build('{rate: {max: 2, window: 1m}}')
    const sign = async (remoteAddress: string) =>
      (
        await b!.app.inject({
          method: 'POST',
          url: '/ssh/sign',
          remoteAddress,
          payload: {publicKey: key(), ott: await b!.mint()},
        })
      ).statusCode
    // three addresses of one /64: one client, not three allowances
    assert.deepEqual(
      [await sign('2001:db8:1:2::1'), await sign('2001:db8:1:2::2'), await sign('2001:db8:1:2:ffff::9')],
      [201, 201, 429],
    )
    assert.equal(await sign('2001:db8:1:3::1'), 201, 'the next /64 is another client')
    assert.deepEqual(
      [await sign('192.0.2.9'), await sign('::ffff:192.0.2.9'), await sign('192.0.2.9')],
      [201, 201, 429],
    )
  })

  it('only signing routes are counted: reads pass however many, carry no limit headers; with the rate off at start, nothing is counted', async () => {
    b = await build('{rate: {max: 1, window: 1m}}')
    const app = b.app
    for (let i = 0; i < 4; i++) {
      const health = await app.inject({method: 'GET', url: '/health', remoteAddress: '192.0.2.7'})
      assert.equal(health.statusCode, 200)
      assert.equal(health.headers['x-ratelimit-limit'], undefined)
    }
    const signed = await b.app.inject({
      method: 'POST',
      url: '/ssh/sign',
      remoteAddress: '192.0.2.7',
      payload: {publicKey: key(), ott: await b.mint()},
    })
    assert.equal(signed.statusCode, 201)
    assert.equal(signed.headers['x-ratelimit-limit'], '1', 'a signing route is counted')
    await b.close()
    b = await build('{rate: false}')
    const free = await b.app.inject({
      method: 'POST',
      url: '/ssh/sign',
      remoteAddress: '192.0.2.7',
      payload: {publicKey: key(), ott: await b.mint()},
    })
    assert.equal(free.statusCode, 201)
    assert.equal(free.headers['x-ratelimit-limit'], undefined, 'no limiter registered')
  })

  it('a shed request keeps its connection: the 503 says keep-alive and the next request is answered', async () => {
    const all = appCounters(2)
    Atomics.store(all, 3, 1000) // the other thread holds every place
    b = await build('{rate: false, maxInFlight: 1}', {counters: {all, slot: 0}})
    const port = portOf(b.app)
    const body = JSON.stringify({publicKey: key(), ott: await b.mint()})
    const got = await new Promise<string>((resolve) => {
      let text = ''
      const s = connect(port, '127.0.0.1', () =>
        s.write(
          `POST /ssh/sign HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}` +
            'GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n',
        ),
      )
      s.on('data', (c: Buffer) => (text += c.toString('latin1')))
      s.on('close', () => resolve(text))
    })
    const shed = parse(got)
    assert.equal(shed.status, 503)
    assert.equal(shed.headers.connection?.toLowerCase(), 'keep-alive')
    assert.deepEqual(
      [...got.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])),
      [503, 200],
    )
  })

  it("what no route answers has the API's error shape: an unknown path (404), an undecodable URL (400)", async () => {
    b = await build('{rate: false}')
    const app = b.app
    for (const [url, status] of [
      ['/no/such/route?x=1', 404],
      ['/%', 400],
    ] as const) {
      const r = await app.inject({method: 'GET', url})
      assert.equal(r.statusCode, status, url)
      assert.equal(r.headers['cache-control'], 'no-store')
      const body = r.json()
      assert.equal(body.status, status)
      assert.equal(typeof body.message, 'string')
      assert.equal(body.request_id, r.headers['x-request-id'])
    }
  })

  it('every response is counted by route pattern, never the raw URL', async () => {
    b = await build('{rate: false}')
    await b.app.inject({method: 'GET', url: '/health'})
    await b.app.inject({method: 'GET', url: '/1.0/health'})
    const t0 = performance.now()
    await b.app.inject({method: 'GET', url: '/no/such/route'})
    const elapsed = (performance.now() - t0) / 1000
    assert.deepEqual(
      b.requests.map(([route, status]) => [route, status]),
      [
        ['/health', 200],
        ['/1.0/health', 200],
        ['unmatched', 404],
      ],
    )
    const seconds = b.requests[2]![2]
    assert.ok(seconds >= 0 && seconds <= elapsed, `${seconds} s for a request that took ${elapsed} s`)
  })

  it("what Node's parser refuses gets the API's error shape and a closed connection: garbage 400, huge headers 431", async () => {
    b = await build('{rate: false}')
    const port = portOf(b.app)
    for (const [request, status] of [
      ['NOT HTTP AT ALL\r\n\r\n', 400],
      [`GET /health HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
    ] as const) {
      const r = parse(await raw(port, request))
      assert.equal(r.status, status)
      assert.equal(r.headers['content-type'], 'application/json; charset=utf-8')
      assert.equal(r.headers.connection, 'close')
      assert.equal(r.headers['cache-control'], 'no-store')
      assert.equal(Number(r.headers['content-length']), Buffer.byteLength(r.body))
      const body = JSON.parse(r.body)
      assert.equal(body.status, status)
      assert.ok(typeof body.message === 'string' && body.message.length > 0)
      assert.equal(body.request_id, r.headers['x-request-id'])
    }
    assert.equal(parse(await raw(port, 'GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')).status, 200)
  })

  it('an oversized body is read and answered 413 (the client sees the answer, not a reset)', async () => {
    b = await build('{rate: false}')
    const port = portOf(b.app)
    const big = 'x'.repeat(BODY_LIMIT * 4)
    const r = parse(
      await raw(
        port,
        `POST /ssh/sign HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${big.length}\r\nconnection: close\r\n\r\n${big}`,
      ),
    )
    assert.equal(r.status, 413)
    assert.equal(JSON.parse(r.body).request_id, r.headers['x-request-id'])
  })

  it('the rate limit follows the policy in force (a reload), and goes through the store it is given, per window', async () => {
    const windows: number[] = []
    class CountingStore extends SharedRateStore {
      override incr(key: string, cb: Parameters<SharedRateStore['incr']>[1], timeWindow: number): void {
        windows.push(timeWindow)
        super.incr(key, cb, timeWindow)
      }
    }
    b = await build('{rate: {max: 1, window: 1m}}', {rateStore: CountingStore as never})
    const sign = async () =>
      (
        await b!.app.inject({
          method: 'POST',
          url: '/ssh/sign',
          remoteAddress: '192.0.2.9',
          payload: {publicKey: key(), ott: await b!.mint()},
        })
      ).statusCode
    assert.equal(await sign(), 201)
    assert.equal(await sign(), 429)
    b.config.limits.rate = {max: 5, window: 60}
    assert.equal(await sign(), 201)
    b.config.limits.rate = false
    assert.equal(await sign(), 201)
    assert.deepEqual(new Set(windows), new Set([60_000]))
    assert.equal(windows.length, 4)
  })

  it("ca.yaml's timeouts become the server's, in milliseconds", async () => {
    b = await build('{rate: false, requestTimeout: 7s, headersTimeout: 3s, idleTimeout: 11s}')
    assert.equal(b.app.server.requestTimeout, 7000)
    assert.equal(b.app.server.headersTimeout, 3000)
    assert.equal(b.app.server.keepAliveTimeout, 11_000)
    assert.equal(b.app.server.timeout, 11_000)
  })

  it("over TLS: 1.2 at least, step's client certificate asked for (when ca.yaml says so) but never required, the handshake bounded", async () => {
    const tls = await createRoot('Limits TLS')
    const keyPem = tls.key.export({type: 'pkcs8', format: 'pem'}).toString()
    const pair = {key: keyPem, cert: tls.pem}
    // by default no client certificate is asked for (SECURITY.md row 42)
    b = await build('{rate: false}', {}, pair)
    assert.equal((b.app.server as unknown as Record<string, unknown>).requestCert, false)
    await b.close()
    b = await build('{rate: false, handshakeTimeout: 1s}', {}, pair, 'tls: {clientCertificates: request}')
    const server = b.app.server as unknown as Record<string | symbol, unknown>
    assert.equal(server.minVersion, 'TLSv1.2')
    assert.equal(server.requestCert, true)
    assert.equal(server.rejectUnauthorized, false)
    assert.equal(server.connectionsCheckingInterval, 1000)
    // a connection that never starts its handshake is closed at the handshake timeout: not before
    // (a timer fires late, never early), and not at Node's default of two minutes
    const s = await open(portOf(b.app))
    const opened = performance.now()
    let closedAt = 0
    s.on('close', () => (closedAt = performance.now()))
    s.on('error', () => undefined)
    await waitFor('the silent connection to be closed', () => closedAt > 0, 20_000)
    assert.ok(closedAt - opened >= 900, `closed after ${Math.round(closedAt - opened)} ms`)
  })

  it('by default, over TLS, no client is asked for a certificate: a chain one offers is never read, so never checked (a chain of RSA keys with huge exponents cost hundreds of handshakes)', async () => {
    const root = await createRoot('Limits TLS default')
    const t = await createTlsCert(['127.0.0.1'], {cert: root.cert, key: root.key})
    b = await build('{rate: false}', {}, {key: t.key.export({type: 'pkcs8', format: 'pem'}).toString(), cert: t.pem})
    const server = b.app.server as unknown as TlsServer
    const peers: (string | undefined)[] = []
    server.on('secureConnection', (s: TLSSocket) => peers.push(s.getPeerX509Certificate()?.subject))
    // a client certificate (an ECDSA leaf, as step's identity) offered with its chain
    const leaf = await createTlsCert(['client'], {cert: root.cert, key: root.key})
    const key = leaf.key.export({type: 'pkcs8', format: 'pem'}).toString()
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const)
      assert.equal(await healthOverTls(b.app, {maxVersion, key, cert: `${leaf.pem}\n${root.pem}`}), 200)
    await waitFor('both handshakes', () => peers.length === 2, 10_000)
    assert.deepEqual(peers, [undefined, undefined], 'the server asked for and read a client certificate')
    // and step is not told to ask for an identity it could never present, nor is one issued or read
    const version = await b.app.inject({method: 'GET', url: '/version'})
    assert.equal((version.json() as {requireClientAuthentication: boolean}).requireClientAuthentication, false)
    const signed = await b.app.inject({
      method: 'POST',
      url: '/ssh/sign',
      payload: {
        publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'),
        ott: await b.mint(),
        identityCSR: '-----BEGIN CERTIFICATE REQUEST-----\nnot even base64\n-----END CERTIFICATE REQUEST-----\n',
      },
    })
    assert.equal(signed.statusCode, 201, signed.body)
    assert.equal((signed.json() as {identityCrt?: unknown}).identityCrt, undefined)
  })

  it('tls.clientCertificates is read at start: a reload that flips it changes neither the handshake nor /version nor whether an identityCSR is read', async () => {
    const root = await createRoot('Limits TLS reload')
    const t = await createTlsCert(['127.0.0.1'], {cert: root.cert, key: root.key})
    const pair = {key: t.key.export({type: 'pkcs8', format: 'pem'}).toString(), cert: t.pem}
    const badCsr = '-----BEGIN CERTIFICATE REQUEST-----\nnot even base64\n-----END CERTIFICATE REQUEST-----\n'
    const requireAuth = async () =>
      ((await b!.app.inject({method: 'GET', url: '/version'})).json() as {requireClientAuthentication: boolean})
        .requireClientAuthentication
    const sign = async () =>
      (
        await b!.app.inject({
          method: 'POST',
          url: '/ssh/sign',
          payload: {publicKey: key(), ott: await b!.mint(), identityCSR: badCsr},
        })
      ).statusCode
    // off at start, "request" by a reload: no handshake asks for a certificate, so step must not be told
    // to send an identityCSR, and none is parsed
    b = await build('{rate: false}', {}, pair)
    b.config.tls = {clientCertificates: 'request'}
    assert.equal((b.app.server as unknown as Record<string, unknown>).requestCert, false)
    assert.equal(await requireAuth(), false, '/version follows a reload the handshake does not')
    assert.equal(await sign(), 201, 'an identityCSR was parsed though no handshake asks for a certificate')
    await b.close()
    // "request" at start, off by a reload: the handshake still asks, and /version says so
    b = await build('{rate: false}', {}, pair, 'tls: {clientCertificates: request}')
    b.config.tls = {clientCertificates: 'off'}
    assert.equal((b.app.server as unknown as Record<string, unknown>).requestCert, true)
    assert.equal(await requireAuth(), true, '/version follows a reload the handshake does not')
  })

  it('over TLS, a client certificate is taken with ECDSA or Ed25519 signatures only: an RSA key with a huge exponent, whose handshake signature cost the CA ~10 handshakes to check, is never checked', async () => {
    // a TLS leaf as the CA's (ECDSA P-256, digitalSignature: TLS 1.2 needs it)
    const root = await createRoot('Limits TLS')
    const leaf = async () => {
      const t = await createTlsCert(['127.0.0.1'], {cert: root.cert, key: root.key})
      return {key: t.key.export({type: 'pkcs8', format: 'pem'}).toString(), cert: t.pem}
    }
    b = await build('{rate: false}', {}, await leaf(), 'tls: {clientCertificates: request}')
    const server = b.app.server as unknown as TlsServer
    const version = await b.app.inject({method: 'GET', url: '/version'})
    assert.equal((version.json() as {requireClientAuthentication: boolean}).requireClientAuthentication, true)
    // what the server took from each connection's client certificate (its CertificateVerify checked)
    const peers: (string | undefined)[] = []
    server.on('secureConnection', (s: TLSSocket) => peers.push(s.getPeerX509Certificate()?.publicKey.asymmetricKeyType))
    const clientCert = async (key: KeyObject): Promise<string> => {
      const spki = createPublicKey(key).export({type: 'spki', format: 'der'})
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: '01',
        subject: 'CN=mallory',
        issuer: 'CN=mallory',
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 3_600_000),
        publicKey: new Uint8Array(spki),
        signingKey: (await webcrypto.subtle.generateKey({name: 'ECDSA', namedCurve: 'P-256'}, false, ['sign']))
          .privateKey,
        signingAlgorithm: {name: 'ECDSA', hash: 'SHA-256'},
      })
      return cert.toString('pem')
    }
    const health = async (key?: KeyObject, maxVersion?: 'TLSv1.2') => {
      const client = key
        ? {key: key.export({type: 'pkcs8', format: 'pem'}).toString(), cert: await clientCert(key)}
        : {}
      assert.equal(await healthOverTls(b!.app, {...(maxVersion ? {maxVersion} : {}), ...client}), 200)
      return peers.at(-1)
    }
    const bigExponent = hugeExponentRsaPrivateKey(3072)
    assert.ok(bigExponent.asymmetricKeyDetails!.publicExponent!.toString(2).length > 3000)
    const check = async () => {
      // step's identity (ECDSA P-256) and Ed25519 still arrive, in TLS 1.3 and 1.2
      assert.equal(await health(generateKeyPairSync('ec', {namedCurve: 'P-256'}).privateKey), 'ec')
      assert.equal(await health(generateKeyPairSync('ec', {namedCurve: 'P-256'}).privateKey, 'TLSv1.2'), 'ec')
      assert.equal(await health(generateKeyPairSync('ed25519').privateKey), 'ed25519')
      // an RSA client certificate is not asked for: the connection serves, with no certificate checked
      assert.equal(await health(bigExponent), undefined, 'the RSA client certificate was taken (its signature checked)')
      assert.equal(await health(bigExponent, 'TLSv1.2'), undefined, 'over TLS 1.2 too')
      assert.equal(await health(), undefined)
    }
    await check()
    // the TLS certificate renewed (or rotated) in place keeps the rule, and TLS 1.2 at least
    server.setSecureContext(tlsContext(await leaf()))
    await check()
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = tlsConnect(
          {
            host: '127.0.0.1',
            port: portOf(b!.app),
            rejectUnauthorized: false,
            minVersion: 'TLSv1',
            maxVersion: 'TLSv1.1',
            ciphers: 'DEFAULT@SECLEVEL=0',
          },
          () => resolve(s.destroy()),
        )
        s.on('error', reject)
      }),
    )
  })

  it('a refused request to a route that audits nothing (a bad body for /ssh/bastion) is answered 400, not audited', async () => {
    b = await build('{rate: false}')
    const r = await b.app.inject({method: 'POST', url: '/ssh/bastion', payload: {hostname: 42}})
    assert.equal(r.statusCode, 400)
    assert.deepEqual(b.audit.events, [])
  })

  it('a rate turned off by a reload lets through more than the limiter would by default (1,000): 1,001 signings from one address', async function () {
    this.timeout(120_000)
    b = await build('{rate: {max: 1, window: 1m}}')
    b.config.limits.rate = false
    const app = b.app
    const tokens = await Promise.all(Array.from({length: 1001}, () => b!.mint()))
    const publicKey = key()
    const codes = new Map<number, number>()
    for (const ott of tokens) {
      const r = await app.inject({
        method: 'POST',
        url: '/ssh/sign',
        remoteAddress: '192.0.2.7',
        payload: {publicKey, ott},
      })
      codes.set(r.statusCode, (codes.get(r.statusCode) ?? 0) + 1)
    }
    assert.deepEqual([...codes], [[201, 1001]])
  })

  it('a refused read (no signing) is answered but not audited as a signing decision', async () => {
    b = await build('{rate: false}')
    const r = await b.app.inject({method: 'GET', url: '/root/not-a-fingerprint'})
    assert.equal(r.statusCode, 404)
    assert.deepEqual(b.audit.events, [])
  })

  it('after a 413 a moderate body is read so the connection may stay open; past the drain limit it is closed', async () => {
    b = await build('{rate: false}')
    const port = portOf(b.app)
    const head = (length: number) =>
      `POST /ssh/sign HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${length}\r\n\r\n`
    const moderate = parse(await firstResponse(port, head(BODY_LIMIT * 4) + 'x'.repeat(BODY_LIMIT * 4)))
    assert.equal(moderate.status, 413)
    assert.notEqual(moderate.headers.connection, 'close')
    // up to the drain limit itself the body is still read
    assert.notEqual(parse(await firstResponse(port, head(1024 * 1024))).headers.connection, 'close')
    const huge = parse(await firstResponse(port, head(1024 * 1024 + 1)))
    assert.equal(huge.status, 413)
    assert.equal(huge.headers.connection, 'close')
  })

  it('while the event loop lags past maxEventLoopDelay, signing requests are shed (503, Retry-After), counting nothing; at the limit or with the check off they pass', async () => {
    let lagMs = 250
    let stopped = 0
    const all = appCounters(1)
    b = await build('{rate: false, maxEventLoopDelay: 200}', {
      counters: {all, slot: 0},
      lag: {current: () => lagMs, stop: () => void stopped++},
    })
    const sign = async () =>
      b!.app.inject({method: 'POST', url: '/ssh/sign', payload: {publicKey: key(), ott: await b!.mint()}})
    const shed = await sign()
    assert.equal(shed.statusCode, 503)
    assert.equal(shed.headers['retry-after'], '1')
    assert.equal(b.audit.events.find((e) => e.request_id === shed.headers['x-request-id'])?.reason, 'overloaded')
    assert.equal(Atomics.load(all, 1), 0, 'the shed request gave its place back')
    assert.equal((await b.app.inject({method: 'GET', url: '/health'})).statusCode, 200)
    lagMs = 200
    assert.equal((await sign()).statusCode, 201)
    lagMs = 10_000
    b.config.limits.maxEventLoopDelay = false
    assert.equal((await sign()).statusCode, 201)
    await b.close()
    b = undefined
    assert.equal(stopped, 1, 'closing the app stops measuring')
  })
})

describe('the CA app: what needs a real clock or a real socket', function () {
  this.timeout(60_000)
  let b: Built | undefined
  afterEach(async () => {
    await b?.close()
    b = undefined
  })

  it('a chunked body after a 413 is counted as it is read: up to the drain limit the connection stays, past it the connection is closed', async () => {
    b = await build('{rate: false}')
    const port = portOf(b.app)
    const DRAIN = 1024 * 1024
    // the drain limit: read to its end, and the connection answers the next request
    assert.deepEqual(await chunkedThenHealth(port, DRAIN), {first: 413, second: 200})
    // a quarter more (the count starts after what fastify read itself, so the cut is not at a byte a
    // test can place): the connection is cut, and the next request is never answered
    assert.deepEqual(await chunkedThenHealth(port, DRAIN + DRAIN / 4), {first: 413, second: undefined})
  })

  it("a request whose headers do not arrive in time gets 408 in the API's shape, and its connection is closed", async () => {
    const tls = await createRoot('Limits TLS')
    const keyPem = tls.key.export({type: 'pkcs8', format: 'pem'}).toString()
    b = await build('{rate: false, headersTimeout: 1s, requestTimeout: 2s}', {}, {key: keyPem, cert: tls.pem})
    const port = portOf(b.app)
    const reply = await new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = []
      const s = tlsConnect({port, host: '127.0.0.1', rejectUnauthorized: false}, () =>
        s.write('POST /ssh/sign HTTP/1.1\r\nhost: x\r\n'),
      )
      s.on('data', (c: Buffer) => chunks.push(c))
      s.on('error', reject)
      s.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
    })
    const r = parse(reply)
    assert.equal(r.status, 408)
    assert.equal(r.headers.connection, 'close')
    const body = JSON.parse(r.body) as {status: number; request_id: string}
    assert.equal(body.status, 408)
    assert.equal(body.request_id, r.headers['x-request-id'])
  })

  it('the event-loop lag is measured: 0 at first, high for a second the loop was blocked, back near 0 the second after', async () => {
    const lag = eventLoopLag()
    try {
      assert.equal(lag.current(), 0)
      await sleep(100) // the monitor's timer runs before the block, or the block is never seen
      const until = performance.now() + 2000
      while (performance.now() < until); // the loop blocked for 2 s, as a CPU-bound step would
      let high = 0
      await waitFor('a reading of the blocked second', () => (high = lag.current()) > 100, 10_000)
      let next = high
      await waitFor('the reading of the next second', () => (next = lag.current()) !== high, 10_000)
      // 10 ms timer resolution subtracted, the histogram reset each second: a free-running loop reads ~0
      assert.ok(Number.isFinite(next) && next >= 0 && next < 15, `the second after reads ${next} ms`)
    } finally {
      lag.stop()
    }
  })

  it('measuring the lag never keeps the process alive, and stopping it freezes the reading', async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
    const before = timers()
    const lag = eventLoopLag()
    assert.equal(timers(), before, 'its timer is unref()ed')
    await sleep(100)
    const until = performance.now() + 1000
    while (performance.now() < until);
    let high = 0
    await waitFor('a reading of the blocked second', () => (high = lag.current()) > 20, 10_000)
    lag.stop()
    await sleep(2500) // two of its intervals: a measurement still running would have read again
    assert.equal(lag.current(), high)
  })
})

/**
 * A chunked POST of `size` body bytes (past the body limit: 413), then `GET /health` on the same
 * connection: the two statuses, the second undefined when the server closed the connection instead.
 */
function chunkedThenHealth(port: number, size: number): Promise<{first: number; second: number | undefined}> {
  return new Promise((resolve) => {
    let got = ''
    const s = connect(port, '127.0.0.1', () => {
      s.write(
        'POST /ssh/sign HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n',
      )
      for (let left = size; left > 0; left -= 65536) {
        const n = Math.min(65536, left)
        s.write(`${n.toString(16)}\r\n${'x'.repeat(n)}\r\n`)
      }
      s.write('0\r\n\r\nGET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')
    })
    s.on('error', () => undefined)
    s.on('data', (c: Buffer) => (got += c.toString('latin1')))
    s.on('close', () => {
      const statuses = [...got.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]))
      resolve({first: statuses[0] ?? 0, second: statuses[1]})
    })
  })
}

/** The first whole response on a connection (headers and content-length bytes), then the connection is dropped. */
function firstResponse(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0)
    const s = connect(port, '127.0.0.1', () => s.write(request))
    s.on('error', () => undefined)
    s.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c])
      const text = got.toString('latin1')
      const at = text.indexOf('\r\n\r\n')
      const length = /\r\ncontent-length: (\d+)/i.exec(text)
      if (at >= 0 && length && got.length >= at + 4 + Number(length[1])) {
        s.destroy()
        resolve(text)
      }
    })
    s.on('close', () => reject(new Error(`closed before a whole response: ${got.toString('latin1').slice(0, 200)}`)))
  })
}
