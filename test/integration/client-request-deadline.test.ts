/**
 * A CA (or, for bootstrap's first request, anyone on the path) that holds the client: it answers a
 * byte at a time, slower than anyone would wait but faster than Node's idle timeout. Every request
 * must end by its overall deadline with the same error an idle timeout gives (ERR_CA_UNREACHABLE),
 * whatever arrives meanwhile. Real TLS servers on 127.0.0.1 on ports the OS picked, the response
 * (status line, headers, body) written by hand.
 */
import assert from 'node:assert/strict'
import type {AddressInfo, Socket} from 'node:net'
import {createServer as createTlsServer, type Server as TlsServer} from 'node:tls'
import {certFingerprint, createIntermediate, createRoot, createTlsCert, type IssuedCert} from '../../src/ca/keys/pki.ts'
import {CaClient} from '../../src/client/ca-api/ca-client.ts'
import {bootstrap} from '../../src/client/setup/bootstrap.ts'
import {SshRootsResponse} from '../../src/protocol/api.ts'
import {rejectsCode} from '../helpers/assert.ts'
import {tempDir} from '../helpers/tmp.ts'

/** How long a trickling server keeps going: far above the deadlines the tests set (1.5 s). */
const TRICKLE_MS = 30_000
const DEADLINE_MS = 1500

/**
 * A TLS server that writes `response` one byte a second (every byte resets Node's idle timeout), to
 * the end unless the client goes away; `headersFirst` sends the headers at once and trickles the body.
 */
async function startTrickler(
  tls: IssuedCert,
  chain: IssuedCert[],
  response: () => {head: string; body: string},
  headersFirst: boolean,
): Promise<{url: string; closedByClient: () => number; stop: () => Promise<void>}> {
  const sockets = new Set<Socket>()
  let closedByClient = 0
  const server: TlsServer = createTlsServer(
    {cert: [tls, ...chain].map((c) => c.pem).join(''), key: tls.key.export({type: 'pkcs8', format: 'pem'})},
    (sock) => {
      sockets.add(sock)
      let finished = false
      sock.on('error', () => undefined)
      sock.on('close', () => {
        if (!finished) closedByClient++
      })
      sock.once('data', () => {
        const {head, body} = response()
        if (headersFirst) sock.write(head)
        const rest = Buffer.from(headersFirst ? body : head + body)
        const step = Math.max(1, Math.ceil(rest.length / (TRICKLE_MS / 1000)))
        let at = 0
        const tick = setInterval(() => {
          if (sock.destroyed) return clearInterval(tick)
          sock.write(rest.subarray(at, at + step))
          at += step
          if (at >= rest.length) {
            clearInterval(tick)
            finished = true
            sock.end()
          }
        }, 1000)
      })
    },
  )
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    closedByClient: () => closedByClient,
    stop: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  }
}

const httpAnswer = (body: string): {head: string; body: string} => ({
  head: `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n`,
  body,
})

describe('the client bounds every request to the CA by an overall deadline', function () {
  this.timeout(90_000)
  let root: IssuedCert
  let intermediate: IssuedCert
  let tls: IssuedCert
  let servers: {stop: () => Promise<void>}[] = []

  before(async () => {
    root = await createRoot('Trickle')
    intermediate = await createIntermediate('Trickle', root)
    tls = await createTlsCert(['127.0.0.1'], intermediate)
  })
  afterEach(async () => {
    await Promise.all(servers.map((s) => s.stop()))
    servers = []
  })

  for (const headersFirst of [false, true]) {
    const what = headersFirst ? 'the body' : 'the status line and headers'
    it(`bootstrap's unpinned first request gives up on ${what} sent a byte a second: ERR_CA_UNREACHABLE`, async () => {
      const fp = certFingerprint(root.der)
      const s = await startTrickler(tls, [intermediate], () => httpAnswer(JSON.stringify({ca: root.pem})), headersFirst)
      servers.push(s)
      const home = tempDir()
      const started = Date.now()
      await rejectsCode(
        bootstrap(home, {caUrl: s.url, fingerprint: fp, deadlineMs: DEADLINE_MS}),
        'ERR_CA_UNREACHABLE',
        {},
        /timed out/,
      )
      // the trickle would have lasted 30 s; the deadline is 1.5 s (a generous bound for a busy box)
      assert.ok(Date.now() - started < TRICKLE_MS / 2, `took ${Date.now() - started} ms`)
    })

    it(`a pinned CA that sends ${what} a byte a second cannot hold a request: ERR_CA_UNREACHABLE`, async () => {
      const s = await startTrickler(
        tls,
        [intermediate],
        () => httpAnswer(JSON.stringify({userKey: [], hostKey: []})),
        headersFirst,
      )
      servers.push(s)
      const ca = new CaClient(s.url, root.pem, {deadlineMs: DEADLINE_MS})
      const started = Date.now()
      try {
        await rejectsCode(ca.call('GET', '/ssh/roots', SshRootsResponse), 'ERR_CA_UNREACHABLE', {}, /timed out/)
      } finally {
        ca.close()
      }
      assert.ok(Date.now() - started < TRICKLE_MS / 2, `took ${Date.now() - started} ms`)
    })
  }
})
