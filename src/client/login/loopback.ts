/**
 * The loopback redirect listener of RFC 8252 §7.3: bound to 127.0.0.1 only (never "localhost"),
 * a port the OS picks unless the provisioner fixes one, the state checked in constant time, then
 * closed after the one callback that carries it. Any local process can reach the port: a request
 * without the right state (a guess, a probe, a stale tab) gets a 400 page and is otherwise ignored,
 * so it can neither complete the sign-in nor abort it; the person's own callback still completes it.
 * The browser tab gets a short success or failure page.
 */
import {timingSafeEqual} from 'node:crypto'
import {createServer, type Server} from 'node:http'
import {SshcaError} from '../../errors.ts'
import {singleLine} from '../../util/text.ts'

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
  onIgnored?: () => void,
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
  const server: Server = createServer((req, res) => {
    // the full redirect URI, port included: the code exchange sends it back to the IdP
    // Stryker disable next-line StringLiteral: node's server always gives a request its URL
    const url = new URL(req.url ?? '/', origin)
    if (url.pathname !== '/callback' || req.method !== 'GET' || done) {
      res.writeHead(404, {'content-type': 'text/plain'}).end('not found')
      return
    }
    const send = (status: number, title: string, text: string) => {
      res
        .writeHead(status, {
          'content-type': 'text/html; charset=utf-8',
          'cache-control': 'no-store',
          connection: 'close',
        })
        .end(page(title, text))
    }
    if (!sameState(url.searchParams.get('state'), state)) {
      // not ours (an error response included: without our state it proves nothing): keep waiting
      send(
        400,
        'Not this sign-in',
        'This response did not belong to the sign-in sshca is waiting for, and was ignored. If you started <code>sshca login</code>, finish signing in in the tab it opened.',
      )
      onIgnored?.()
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
  })
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
