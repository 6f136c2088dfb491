/**
 * Whose program sent a request to the loopback listener. The sign-in URL (state, nonce, PKCE
 * challenge, the listener's port) is on the command line of the browser sshca starts, which every
 * local user can read in /proc/PID/cmdline: the state is no secret from them. What they cannot fake
 * is who owns their end of the connection. On Linux that end is a socket of this machine, listed in
 * /proc/net/tcp (or /proc/net/tcp6, for a dual-stack socket connected to ::ffff:127.0.0.1) with the
 * uid that owns it, so the listener takes a callback only from a socket of sshca's own user.
 */
import {readFile} from 'node:fs/promises'
import {endianness, release} from 'node:os'

/** A socket of /proc/net/tcp or tcp6: its two ends as "ADDRESS:PORT", its owner and its inode. */
export interface TcpSocket {
  local: string
  remote: string
  uid: number
  /** 0 when no open file holds the socket any more (closed, in TIME_WAIT): its uid then means nothing. */
  inode: number
}

/** The two ends of a connection the listener accepted, as node gives them (undefined once it closed). */
export interface Connection {
  localAddress?: string | undefined
  localPort?: number | undefined
  remoteAddress?: string | undefined
  remotePort?: number | undefined
}

/** Whether a connection comes from a program of sshca's own user. */
export type PeerCheck = (c: Connection) => Promise<boolean>

/**
 * The kernel's "HEX:PORT": an IPv4 address is one 32-bit word, an IPv6 address four, each printed in
 * the machine's byte order (little-endian on x86 and ARM); the port is printed as a number. IPv6
 * addresses other than IPv4-mapped ones are undefined: no such socket can be connected to 127.0.0.1.
 */
function endpoint(hex: string, order: 'LE' | 'BE'): string | undefined {
  const m = /^([0-9A-F]{8}|[0-9A-F]{32}):([0-9A-F]{4})$/i.exec(hex)
  if (!m) return undefined
  const bytes = Buffer.alloc(m[1]!.length / 2)
  for (let i = 0; i < bytes.length; i += 4) {
    const word = Number.parseInt(m[1]!.slice(i * 2, i * 2 + 8), 16)
    if (order === 'LE') bytes.writeUInt32LE(word, i)
    else bytes.writeUInt32BE(word, i)
  }
  const v4 = bytes.length === 4 ? bytes : bytes.subarray(0, 12).equals(V4_MAPPED) ? bytes.subarray(12) : undefined
  return v4 && `${v4.join('.')}:${Number.parseInt(m[2]!, 16)}`
}

const V4_MAPPED = Buffer.from('00000000000000000000ffff', 'hex')

/** The sockets listed in /proc/net/tcp and tcp6 text (either, or both joined); lines of another shape are skipped. */
export function parseProcNetTcp(text: string, order: 'LE' | 'BE' = endianness()): TcpSocket[] {
  const out: TcpSocket[] = []
  for (const line of text.split('\n')) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …
    const f = line.trim().split(/\s+/)
    if (!/^\d+:$/.test(f[0]!) || f.length < 10) continue
    const local = endpoint(f[1]!, order)
    const remote = endpoint(f[2]!, order)
    const uid = Number(f[7])
    const inode = Number(f[9])
    if (local && remote && Number.isSafeInteger(uid) && Number.isSafeInteger(inode))
      out.push({local, remote, uid, inode})
  }
  return out
}

/**
 * The uid that owns the other end of connection `c`: the socket whose local end is c's remote one and
 * whose remote end is c's local one (not the listener's own side), still held by an open file.
 * Undefined when there is none: the sender closed it (a closed socket is listed as uid 0, root's).
 */
export function peerUid(sockets: readonly TcpSocket[], c: Connection): number | undefined {
  // a connection node no longer knows the ends of gives "undefined:undefined", which no socket has
  const peer = `${c.remoteAddress}:${c.remotePort}`
  const listener = `${c.localAddress}:${c.localPort}`
  return sockets.find((s) => s.local === peer && s.remote === listener && s.inode !== 0)?.uid
}

const TABLES = ['/proc/net/tcp', '/proc/net/tcp6']

/** Both tables, joined; one that cannot be read (no IPv6, no /proc) is empty. */
const readTables = async (): Promise<string> =>
  // Stryker disable next-line StringLiteral: each table ends with a newline, and text that is no table line adds no socket
  (await Promise.all(TABLES.map((f) => readFile(f, 'utf8').catch(() => '')))).join('\n')

/** How often a connection is looked for before it counts as not found. */
export const LOOKUPS = 3

/**
 * Whether the other end of `c` is a socket of `uid`. The kernel lists the sockets a page at a time,
 * so one can be missed when others come and go while it reads: a connection not found is looked for
 * again. Never found (or no table to look in) is a refusal: nothing here says it is ours.
 */
export async function connectionOfUser(c: Connection, uid: number, read = readTables): Promise<boolean> {
  for (let i = 0; i < LOOKUPS; i++) {
    const owner = peerUid(parseProcNetTcp(await read()), c)
    if (owner !== undefined) return owner === uid
  }
  return false
}

/**
 * The check for this machine: on Linux, the peer's socket must be this user's. None elsewhere (macOS
 * and Windows list no socket owners a user can read) nor on WSL (the kernel's release names
 * Microsoft), where the person's browser is usually a Windows program, which has no Linux user.
 */
export function loopbackPeerCheck(platform: string = process.platform, kernel: string = release()): PeerCheck | null {
  if (platform !== 'linux' || /microsoft/i.test(kernel)) return null
  const uid = process.getuid!()
  return (c) => connectionOfUser(c, uid)
}
