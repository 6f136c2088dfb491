/**
 * `sshca proxycommand USER HOST PORT` (step's): for `ProxyCommand sshca proxycommand %r %h %p`.
 * Logs in when no valid certificate of the host's context is at hand (exactly `login --ensure`),
 * then carries ssh's bytes to HOST:PORT and back. Its stdout is ssh's transport, so nothing else
 * is ever written there; the sign-in talks on the terminal.
 *
 * The caveat, and why the managed ssh_config uses `Match exec` instead: ssh runs a ProxyCommand
 * only when it opens a TCP connection. With ControlMaster, sessions through an existing master do
 * not run it (fine), but the master lives on after the certificate expires, and the next master
 * pays a process between ssh and the host for every byte. ProxyJump cannot be combined with it.
 */
import {connect, type Socket} from 'node:net'
import type {Readable, Writable} from 'node:stream'
import {SshcaError} from '../../errors.ts'
import {listMatches} from '../../ssh/host-pattern.ts'
import {currentContextName, listContexts, readContext} from '../home/home.ts'

/**
 * The context whose host pattern matches `host` (the first, by name); else the current one. Only a
 * pattern the person accepted (configured, or the CA's as bootstrap showed it): hostPattern follows
 * the CA at every login without asking anyone, so a CA could otherwise claim another CA's hosts and
 * have this sign in to it, not to theirs. A context of an older sshca never configured has neither.
 */
export async function contextForHost(home: string, host: string): Promise<string | undefined> {
  for (const name of await listContexts(home)) {
    const ctx = await readContext(home, name).catch(() => undefined)
    const pattern = ctx?.configuredPattern ?? ctx?.acceptedCaPattern
    try {
      if (pattern && listMatches(pattern, host)) return name
    } catch {
      // a pattern this version cannot read matches nothing
    }
  }
  return currentContextName(home)
}

/** Connects to host:port and pipes `input` to it and it to `output` until the host closes. */
export async function pipeToHost(
  host: string,
  port: number,
  input: Readable,
  output: Writable,
  o: {timeoutMs?: number; connectTo?: (host: string, port: number) => Socket} = {},
): Promise<{sent: number; received: number}> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new SshcaError('ERR_USAGE', `"${port}" is not a port`)
  const sock = (o.connectTo ?? ((h, p) => connect({host: h, port: p})))(host, port)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      sock.destroy()
      reject(
        new SshcaError(
          'ERR_HOST_UNREACHABLE',
          `${host}:${port} did not accept a connection within ${o.timeoutMs ?? 15000} ms`,
        ),
      )
    }, o.timeoutMs ?? 15000)
    sock.once('connect', () => {
      clearTimeout(timer)
      resolve()
    })
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      reject(
        new SshcaError('ERR_HOST_UNREACHABLE', `cannot connect to ${host}:${port}: ${err.code ?? err.message}`, {
          cause: err,
        }),
      )
    })
  })
  let sent = 0
  let received = 0
  input.on('data', (d: Buffer) => (sent += d.length))
  sock.on('data', (d: Buffer) => (received += d.length))
  return new Promise((resolve) => {
    // ssh closing its end (EOF on our stdin) half-closes the connection; the host closing ends it
    input.pipe(sock)
    sock.pipe(output, {end: false})
    sock.once('error', () => undefined)
    sock.once('close', () => {
      input.unpipe(sock)
      resolve({sent, received})
    })
  })
}
