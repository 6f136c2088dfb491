/**
 * An HTTPS server on 127.0.0.1 that answers whatever the test scripts, and records what it was asked:
 * a CA that lies (bootstrap-trust), or one whose every answer a test chooses (the client's config).
 */
import {once} from 'node:events'
import {createServer, type Server} from 'node:https'
import type {AddressInfo, Socket} from 'node:net'
import type {IssuedCert} from '../../src/ca/keys/pki.ts'

export type Answer = {status: number; body: string | Buffer}

export interface ScriptedServer {
  url: string
  requests: string[]
  answer: (path: string) => Answer
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
      s.requests.push(`${req.method} ${req.url}`)
      const a = s.answer(req.url ?? '')
      res.writeHead(a.status, {'content-type': 'application/json'}).end(a.body)
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
