/**
 * An HTTPS server on 127.0.0.1 that answers whatever the test scripts, and records what it was asked:
 * a CA that lies (bootstrap-trust), or one whose every answer a test chooses (the client's config).
 */
import {once} from 'node:events'
import {createServer, type Server} from 'node:https'
import type {AddressInfo, Socket} from 'node:net'
import {certFingerprint, createIntermediate, createRoot, createTlsCert, type IssuedCert} from '../../src/ca/keys/pki.ts'

/** An HTTP answer, or `hangUp`: the connection is cut without one (a network failure). */
export type Answer = {status: number; body: string | Buffer; hangUp?: boolean}

export interface ScriptedServer {
  url: string
  requests: string[]
  /** Each request and its body as text, in the order their bodies ended (what a client sent). */
  received: {request: string; body: string}[]
  /** Called once the request's body has arrived. */
  answer: (path: string, body: string) => Answer | Promise<Answer>
  /** Connections open right now (a client that keeps one alive keeps it here). */
  connections(): Promise<number>
  /** Resolves once every connection opened so far is closed: never, while a client keeps one alive. */
  allClosed(): Promise<void>
  stop(): Promise<void>
}

export const json = (value: unknown, status = 200): Answer => ({status, body: JSON.stringify(value)})

export async function startScripted(tls: IssuedCert, chain: IssuedCert[]): Promise<ScriptedServer> {
  const sockets = new Set<Socket>()
  const s: ScriptedServer = {
    url: '',
    requests: [],
    received: [],
    answer: () => ({status: 404, body: ''}),
    connections: async () => 0,
    allClosed: async () => {
      await Promise.all([...sockets].filter((c) => !c.closed).map((c) => once(c, 'close')))
    },
    stop: async () => undefined,
  }
  const server: Server = createServer(
    {cert: [tls, ...chain].map((c) => c.pem).join(''), key: tls.key.export({type: 'pkcs8', format: 'pem'})},
    (req, res) => {
      const request = `${req.method} ${req.url}`
      s.requests.push(request)
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8')
        s.received.push({request, body})
        void Promise.resolve(s.answer(req.url ?? '', body)).then((a) => {
          if (a.hangUp) {
            req.socket.destroy()
            return
          }
          res.writeHead(a.status, {'content-type': 'application/json'}).end(a.body)
        })
      })
    },
  )
  server.on('secureConnection', (c: Socket) => sockets.add(c))
  // an idle keep-alive connection stays until the client closes it, so a test can see who forgot to
  server.keepAliveTimeout = 120_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  s.connections = () =>
    new Promise((resolve, reject) => server.getConnections((err, n) => (err ? reject(err) : resolve(n))))
  s.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  s.stop = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  return s
}

/**
 * A CA whose SSH answers a test sets: GET /root/<fingerprint> (what bootstrap checks), /ssh/roots and
 * /ssh/krl from `roots` and `krl`; anything else (GET /roots: no root rotation) 404. Its TLS chains to
 * its own root, so a context bootstrapped against it pins that root as for a real CA.
 */
export interface ScriptedCa {
  server: ScriptedServer
  rootPem: string
  fingerprint: string
  roots: Answer
  krl: Answer
}

export async function startScriptedCa(): Promise<ScriptedCa> {
  const root = await createRoot('Scripted')
  const intermediate = await createIntermediate('Scripted', root)
  const server = await startScripted(await createTlsCert(['127.0.0.1'], intermediate), [intermediate])
  const fingerprint = certFingerprint(root.der)
  const ca: ScriptedCa = {
    server,
    rootPem: root.pem,
    fingerprint,
    roots: json({userKey: [], hostKey: []}),
    krl: {status: 404, body: ''},
  }
  server.answer = (path) =>
    path === `/root/${fingerprint}`
      ? json({ca: root.pem})
      : path === '/ssh/roots'
        ? ca.roots
        : path === '/ssh/krl'
          ? ca.krl
          : {status: 404, body: ''}
  return ca
}
