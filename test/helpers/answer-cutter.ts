/**
 * Someone on the network path to the CA who cannot break TLS (or a CA restart, packet loss: the same
 * for the host): a TCP relay that passes every byte both ways, and, once armed, lets the next large
 * request through (a TLS application-data record of more than `LARGE` bytes from the client, which is
 * what a POST carrying an SSHPOP token is; the GETs before it are smaller), withholds everything the
 * CA sends back on that connection, and resets the client's connection once the CA has committed
 * (`committed()`, polled: the CA answers only after its commit, so the answer is on its way then).
 */
import {createServer, connect, type Socket} from 'node:net'

/** Larger than any GET sshca sends, smaller than a POST carrying an SSHPOP token (its certificate inside). */
const LARGE = 1000

export interface AnswerCutter {
  /** https://127.0.0.1:PORT, the CA reached through the relay. */
  url: string
  /**
   * Cuts the answer to the next large request; resolves once the client's connection was reset after
   * `committed()` held (rejects when it never did within `timeoutMs`).
   */
  arm(committed: () => boolean, timeoutMs?: number): Promise<void>
  close(): Promise<void>
}

export async function startAnswerCutter(caPort: number): Promise<AnswerCutter> {
  let armed: {committed: () => boolean; resolve: () => void; reject: (e: Error) => void; deadline: number} | undefined
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const ca = connect(caPort, '127.0.0.1')
    sockets.add(client).add(ca)
    client.once('close', () => sockets.delete(client))
    ca.once('close', () => sockets.delete(ca))
    let cut: NonNullable<typeof armed> | undefined
    let pending = Buffer.alloc(0)
    client.on('data', (chunk: Buffer) => {
      ca.write(chunk)
      if (!armed || cut) return
      // TLS records: type (23: application data), version, length (16 bits), then the record
      pending = Buffer.concat([pending, chunk])
      while (pending.length >= 5) {
        const length = pending.readUInt16BE(3)
        if (pending.length < 5 + length) break
        if (pending[0] === 23 && length > LARGE && armed && !cut) {
          cut = armed
          armed = undefined
          const mine = cut
          const look = setInterval(() => {
            const late = Date.now() > mine.deadline
            if (!mine.committed() && !late) return
            clearInterval(look)
            client.resetAndDestroy()
            ca.destroy()
            if (late) mine.reject(new Error('the CA did not commit the request whose answer was to be cut'))
            else mine.resolve()
          }, 25)
        }
        pending = pending.subarray(5 + length)
      }
    })
    // after the large request, what the CA sends never reaches the client
    ca.on('data', (chunk: Buffer) => {
      if (!cut) client.write(chunk)
    })
    client.on('error', () => ca.destroy())
    ca.on('error', () => client.destroy())
    client.on('end', () => ca.end())
    ca.on('end', () => {
      if (!cut) client.end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as {port: number}
  return {
    url: `https://127.0.0.1:${port}`,
    arm(committed, timeoutMs = 30_000) {
      const done = new Promise<void>((resolve, reject) => {
        const never = setTimeout(() => reject(new Error('no large request came through to cut')), timeoutMs)
        armed = {
          committed,
          resolve: () => (clearTimeout(never), resolve()),
          reject: (e) => (clearTimeout(never), reject(e)),
          deadline: Date.now() + timeoutMs,
        }
      })
      // awaited by the test once its client has given up: a failure before that is not unhandled
      done.catch(() => undefined)
      return done
    },
    async close() {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
