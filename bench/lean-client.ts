/**
 * A lean HTTPS/1.1 client for the overload run (bench/soak.ts --overload): keep-alive TLS connections,
 * one request at a time on each, the request written whole and the answer read only as far as its
 * status and length. undici spends on one request about what the CA spends refusing it, so a
 * generator built on it, even with a core of its own, cannot offer 4× what the CA sustains; this one
 * costs a TLS write and a read.
 *
 * It speaks only what the CA answers: a status line, headers with content-length (fastify always sends
 * one), a body. A response without content-length, or a closed connection, ends that connection.
 */
import {connect, type TLSSocket} from 'node:tls'

export class LeanError extends Error {
  readonly code: string
  constructor(code: string, message: string) {
    super(message)
    this.code = code
  }
}

interface Waiting {
  resolve(status: number): void
  reject(err: LeanError): void
  timer: NodeJS.Timeout
}

class Connection {
  readonly socket: TLSSocket
  private buffered: Buffer[] = []
  private length = 0
  private waiting: Waiting | undefined
  private closeAfter = false
  private dead = false
  private readonly release: (c: Connection, reusable: boolean) => void

  constructor(host: string, port: number, ca: Buffer, release: (c: Connection, reusable: boolean) => void) {
    this.release = release
    this.socket = connect({host, port, ca})
    this.socket.setNoDelay(true)
    this.socket.on('data', (chunk: Buffer) => this.data(chunk))
    this.socket.on('error', (err: NodeJS.ErrnoException) => this.fail(err.code ?? 'error', err.message))
    this.socket.on('close', () => this.fail('closed', 'the CA closed the connection'))
  }

  send(request: Buffer, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail('timeout', `no answer in ${timeoutMs} ms`)
        this.socket.destroy()
      }, timeoutMs)
      this.waiting = {resolve, reject, timer}
      this.socket.write(request)
    })
  }

  private data(chunk: Buffer): void {
    this.buffered.push(chunk)
    this.length += chunk.length
    const all = this.buffered.length === 1 ? chunk : Buffer.concat(this.buffered, this.length)
    this.buffered = [all]
    const end = all.indexOf('\r\n\r\n')
    if (end < 0) return
    const head = all.toString('latin1', 0, end)
    const size = /\r\ncontent-length: *(\d+)/i.exec(head)
    if (!size) return void this.fail('protocol', `an answer without content-length: ${head.slice(0, 80)}`)
    if (all.length < end + 4 + Number(size[1])) return
    this.closeAfter = /\r\nconnection: *close/i.test(head)
    const status = Number(head.slice(9, 12))
    this.buffered = []
    this.length = 0
    const w = this.waiting
    this.waiting = undefined
    if (!w) return void this.fail('protocol', 'an answer nobody asked for')
    clearTimeout(w.timer)
    w.resolve(status)
    if (this.closeAfter) this.socket.destroy()
    else this.release(this, true)
  }

  private fail(code: string, message: string): void {
    const w = this.waiting
    this.waiting = undefined
    if (w) {
      clearTimeout(w.timer)
      w.reject(new LeanError(code, message))
    }
    if (!this.dead) {
      this.dead = true
      this.socket.destroy()
      this.release(this, false)
    }
  }
}

export class LeanPool {
  private readonly idle: Connection[] = []
  private readonly open = new Set<Connection>()
  private readonly host: string
  private readonly port: number
  private readonly o: {ca: Buffer; timeoutMs?: number}

  constructor(url: string, o: {ca: Buffer; timeoutMs?: number}) {
    this.o = o
    const u = new URL(url)
    this.host = u.hostname
    this.port = Number(u.port)
  }

  /**
   * POSTs `body` as JSON to `path` on an idle connection, or a new one; resolves with the status.
   * The caller keeps at most `connections` requests in flight.
   */
  post(path: string, body: string): Promise<number> {
    const request = Buffer.from(
      `POST ${path} HTTP/1.1\r\nhost: ${this.host}:${this.port}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    )
    const c = this.idle.pop() ?? this.connect()
    return c.send(request, this.o.timeoutMs ?? 30_000)
  }

  /**
   * Opens `n` connections (their TLS handshakes done) and keeps them idle, so that a measurement
   * starts on open connections: 512 handshakes at once cost the CA about half a second of a core,
   * which the first requests would otherwise wait behind.
   */
  async warm(n: number): Promise<void> {
    const opened = Array.from({length: n}, () => this.connect())
    await Promise.all(
      opened.map(
        (c) =>
          new Promise<void>((resolve, reject) => {
            c.socket.once('secureConnect', () => resolve())
            c.socket.once('error', reject)
          }),
      ),
    )
    this.idle.push(...opened)
  }

  private connect(): Connection {
    const c = new Connection(this.host, this.port, this.o.ca, (conn, reusable) => {
      if (reusable) this.idle.push(conn)
      else {
        this.open.delete(conn)
        const at = this.idle.indexOf(conn)
        if (at >= 0) this.idle.splice(at, 1)
      }
    })
    this.open.add(c)
    return c
  }

  close(): void {
    for (const c of this.open) c.socket.destroy()
    this.open.clear()
    this.idle.length = 0
  }
}
