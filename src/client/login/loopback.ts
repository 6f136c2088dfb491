/**
 * The loopback redirect listener of RFC 8252 §7.3: bound to 127.0.0.1 only (never "localhost"),
 * a port the OS picks unless the provisioner fixes one, the state checked in constant time, then
 * closed after the one callback that carries it. Any local process can reach the port, and any local
 * user can read the state in the browser's command line (/proc/PID/cmdline). So on Linux a request
 * from a program of another user (its socket's owner in /proc/net/tcp, loopback-peer.ts) gets a 403
 * page and is otherwise ignored, whatever it carries; and a request without the right state (a
 * guess, a probe, a stale tab) gets a 400 page and is ignored too: neither can complete the sign-in
 * nor abort it, and the person's own callback still completes it. The browser tab gets a short
 * success or failure page.
 */
import {timingSafeEqual} from 'node:crypto'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import {SshcaError} from '../../errors.ts'
import {singleLine} from '../../util/text.ts'
import {loopbackPeerCheck, type PeerCheck} from './loopback-peer.ts'

export interface Loopback {
  redirectUri: string
  /** Resolves with the full callback URL once a callback with the right state arrives. */
  callback: Promise<URL>
  close(): void
}

const page = (title: string, text: string): string =>
  `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title><style>body{font-family:system-ui,sans-serif;margin:4em auto;max-width:32em;text-align:center}</style></head><body><h1>${title}</h1><p>${text}</p></body></html>`

function sameState(a: string | null, b: string): boolean {
  if (a === null) return false
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

export async function startLoopback(
  state: string,
  fixed?: {host: string; port: number},
  /** A request was ignored: it came from another user's program, or without this sign-in's state. */
  onIgnored?: (why: 'user' | 'state') => void,
  /** Whose program sent a request; null where that cannot be told (macOS, Windows, WSL). */
  peerCheck: PeerCheck | null = loopbackPeerCheck(),
): Promise<Loopback> {
  const host = '127.0.0.1'
  let resolveCb!: (u: URL) => void
  let rejectCb!: (e: unknown) => void
  const callback = new Promise<URL>((res, rej) => {
    resolveCb = res
    rejectCb = rej
  })
  callback.catch(() => undefined)
  let done = false
  // Stryker disable next-line StringLiteral: set below, once listening, before any request can arrive
  let origin = ''
  const server: Server = createServer((req, res) => void answer(req, res))
  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // the full redirect URI, port included: the code exchange sends it back to the IdP
    // Stryker disable next-line StringLiteral: node's server always gives a request its URL
    const url = new URL(req.url ?? '/', origin)
    const notFound = () => void res.writeHead(404, {'content-type': 'text/plain'}).end('not found')
    if (url.pathname !== '/callback' || req.method !== 'GET') return notFound()
    const send = (status: number, title: string, text: string) => {
      res
        .writeHead(status, {
          'content-type': 'text/html; charset=utf-8',
          'cache-control': 'no-store',
          connection: 'close',
        })
        .end(page(title, text))
    }
    // read now: node forgets a connection's ends once it is closed
    const {localAddress, localPort, remoteAddress, remotePort} = req.socket
    // a sender that closes while its socket is looked up leaves its two ends free for another socket
    // (TIME_WAIT reuse on loopback), whose owner the lookup could then find: only an open connection counts
    let closed = false
    req.socket.once('close', () => (closed = true))
    if (
      peerCheck &&
      (!(await peerCheck({localAddress, localPort, remoteAddress, remotePort})) || closed || req.socket.destroyed)
    ) {
      // another user read the URL (its state included) off a command line: whatever it carries, ignored
      send(
        403,
        'Not from your user',
        'sshca takes the sign-in only from programs of the user who runs <code>sshca login</code>, and this request did not come from one of them, so it was ignored. If you started <code>sshca login</code>, finish signing in in the browser it opened, or use <code>sshca login --console</code>.',
      )
      onIgnored?.('user')
      return
    }
    if (done) return notFound()
    if (!sameState(url.searchParams.get('state'), state)) {
      // not ours (an error response included: without our state it proves nothing): keep waiting
      send(
        400,
        'Not this sign-in',
        'This response did not belong to the sign-in sshca is waiting for, and was ignored. If you started <code>sshca login</code>, finish signing in in the tab it opened.',
      )
      onIgnored?.('state')
      return
    }
    done = true
    const error = url.searchParams.get('error')
    if (error) {
      // Stryker disable next-line StringLiteral,LogicalOperator: the description only words the error's message
      const desc = url.searchParams.get('error_description') ?? ''
      send(
        400,
        'Sign-in failed',
        `The identity provider said: ${error.replace(/[<>&"]/g, '')}. You can close this tab.`,
      )
      rejectCb(
        new SshcaError(
          'ERR_IDP_ERROR',
          // one line each, and short: what the redirect carries is the identity provider's to write
          `the identity provider refused the sign-in: ${singleLine(error).slice(0, 200)}${desc ? ` (${singleLine(desc).slice(0, 500)})` : ''}`,
          {hint: 'check that you may use this application at your identity provider, then sign in again'},
        ),
      )
      return
    }
    send(200, 'Signed in', 'You are signed in to sshca. You can close this tab and return to the terminal.')
    resolveCb(url)
  }
  server.keepAliveTimeout = 1000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(fixed?.port ?? 0, host, () => resolve())
  })
  const port = (server.address() as {port: number}).port
  origin = `http://${host}:${port}`
  return {
    redirectUri: `http://${host}:${port}/callback`,
    callback,
    close() {
      server.closeAllConnections()
      server.close()
    },
  }
}
