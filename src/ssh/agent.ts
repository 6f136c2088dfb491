/**
 * A client for ssh-agent (PROTOCOL.agent, draft-miller-ssh-agent) over any duplex byte stream: list
 * identities (certificates included), add a key with its certificate under a lifetime and optional
 * confirm constraint, sign, remove one identity, remove all. One request at a time per connection.
 *
 * Where the agent is: $SSH_AUTH_SOCK; without it, Windows' OpenSSH agent on its named pipe
 * (\\.\pipe\openssh-ssh-agent, which node:net opens like a socket) and on macOS the socket launchd
 * gives the login session (`launchctl getenv SSH_AUTH_SOCK`, what a shell started by Terminal has).
 * `resolveAgentSocket` decides, from parameters, so each platform's path is tested on any platform.
 */
import {connect} from 'node:net'
import type {Duplex} from 'node:stream'
import {SshcaError} from '../errors.ts'
import {isCertificateType, parseCertificate, type Certificate} from './cert.ts'
import {isKeyType, PublicKey} from './keys.ts'
import {agentCertPrivateFields, agentKeyFields, type PrivateKey} from './private-key.ts'
import {SshReader, SshWriter} from './wire.ts'

const MSG = {
  FAILURE: 5,
  SUCCESS: 6,
  REQUEST_IDENTITIES: 11,
  IDENTITIES_ANSWER: 12,
  SIGN_REQUEST: 13,
  SIGN_RESPONSE: 14,
  ADD_IDENTITY: 17,
  REMOVE_IDENTITY: 18,
  REMOVE_ALL_IDENTITIES: 19,
  ADD_ID_CONSTRAINED: 25,
} as const
const CONSTRAIN_LIFETIME = 1
const CONSTRAIN_CONFIRM = 2
/** OpenSSH's AGENT_MAX_LEN. */
const MAX_MESSAGE = 256 * 1024

export const SIGN_FLAGS = {RSA_SHA2_256: 2, RSA_SHA2_512: 4} as const

export interface AgentIdentity {
  /** The key or certificate wire blob, as the agent stores it. */
  readonly blob: Buffer
  readonly comment: string
  readonly type: string
  /** Present when the identity is a certificate this tool can parse. */
  readonly certificate?: Certificate
  /** Present when the identity is a plain key this tool can parse. */
  readonly publicKey?: PublicKey
}

export interface AddOptions {
  /** Seconds until the agent forgets the key; omitted = until removed. */
  lifetimeSeconds?: number
  /** Ask the user (ssh-askpass) before each use. */
  confirm?: boolean
  comment?: string
}

export interface AgentOptions {
  /** Defaults to resolveAgentSocket(): $SSH_AUTH_SOCK, else the platform's own agent. */
  socketPath?: string | undefined
  /** Per-request timeout in milliseconds (default 5000). */
  timeoutMs?: number
  /** Where resolveAgentSocket looks (default: this process's environment and platform). */
  locate?: AgentLocation
}

export interface AgentLocation {
  env?: NodeJS.ProcessEnv
  platform?: NodeJS.Platform
  /** macOS: asks launchd for the session's agent socket; undefined when it has none. */
  launchdSocket?: () => string | undefined
}

/** The OpenSSH for Windows agent (the ssh-agent service). */
export const WINDOWS_AGENT_PIPE = '\\\\.\\pipe\\openssh-ssh-agent'

/** `launchctl getenv SSH_AUTH_SOCK`: the socket launchd made for this login session (macOS). */
export function launchdAgentSocket(): string | undefined {
  try {
    // node:child_process on first use: only macOS asks launchd, and loading it costs every `sshca list`
    const r = process.getBuiltinModule('node:child_process').spawnSync('launchctl', ['getenv', 'SSH_AUTH_SOCK'], {
      encoding: 'utf8',
      timeout: 2000,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    const path = (r.stdout ?? '').trim()
    return r.status === 0 && path.startsWith('/') ? path : undefined
  } catch {
    return undefined
  }
}

/**
 * Which agent to talk to and why: $SSH_AUTH_SOCK when set; otherwise on Windows the OpenSSH
 * agent's named pipe, on macOS launchd's socket for the session; elsewhere none.
 */
export function resolveAgentSocket(
  l: AgentLocation = {},
): {path: string; source: 'SSH_AUTH_SOCK' | 'windows-pipe' | 'launchd'} | undefined {
  const env = l.env ?? process.env
  if (env.SSH_AUTH_SOCK) return {path: env.SSH_AUTH_SOCK, source: 'SSH_AUTH_SOCK'}
  const platform = l.platform ?? process.platform
  if (platform === 'win32') return {path: WINDOWS_AGENT_PIPE, source: 'windows-pipe'}
  if (platform === 'darwin') {
    const path = (l.launchdSocket ?? launchdAgentSocket)()
    return path ? {path, source: 'launchd'} : undefined
  }
  return undefined
}

const HOW_TO_START = 'start one with: eval "$(ssh-agent -s)"   (then run this command again in the same shell)'
const HOW_TO_START_WINDOWS =
  'start the OpenSSH agent service: Get-Service ssh-agent | Set-Service -StartupType Automatic -PassThru | Start-Service'

export class AgentClient {
  private queue: Promise<unknown> = Promise.resolve()
  private buffered: Buffer = Buffer.alloc(0)
  private waiter: {resolve: (b: Buffer) => void; reject: (e: Error) => void} | undefined
  private closedError: Error | undefined

  private readonly socket: Duplex
  /** Where the agent is (a socket path, a named pipe, or a label for a stream). */
  readonly socketPath: string
  private readonly timeoutMs: number

  private constructor(socket: Duplex, socketPath: string, timeoutMs: number) {
    this.socket = socket
    this.socketPath = socketPath
    this.timeoutMs = timeoutMs
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('error', (err) => this.fail(agentUnavailable(socketPath, err)))
    socket.on('close', () =>
      this.fail(new SshcaError('ERR_AGENT_PROTOCOL', `the ssh-agent at ${socketPath} closed the connection`)),
    )
  }

  /** The agent protocol over a stream that is already connected (a socket, a pipe, an in-memory agent). */
  static fromStream(stream: Duplex, o: {label: string; timeoutMs?: number}): AgentClient {
    return new AgentClient(stream, o.label, o.timeoutMs ?? 5000)
  }

  static async connect(options: AgentOptions = {}): Promise<AgentClient> {
    const found = options.socketPath
      ? {path: options.socketPath, source: 'SSH_AUTH_SOCK' as const}
      : resolveAgentSocket(options.locate)
    if (!found) {
      throw new SshcaError('ERR_AGENT_UNAVAILABLE', 'no ssh-agent: SSH_AUTH_SOCK is not set', {hint: HOW_TO_START})
    }
    const socketPath = found.path
    const timeoutMs = options.timeoutMs ?? 5000
    const socket = await new Promise<Duplex>((resolve, reject) => {
      const s = connect(socketPath)
      const timer = setTimeout(() => {
        s.destroy()
        reject(
          new SshcaError(
            'ERR_AGENT_TIMEOUT',
            `the ssh-agent at ${socketPath} did not accept a connection within ${timeoutMs} ms`,
          ),
        )
      }, timeoutMs)
      s.once('connect', () => {
        clearTimeout(timer)
        resolve(s)
      })
      s.once('error', (err) => {
        clearTimeout(timer)
        reject(agentUnavailable(socketPath, err))
      })
    })
    return new AgentClient(socket, socketPath, timeoutMs)
  }

  /** Connects, runs `fn`, and always closes. */
  static async with<T>(options: AgentOptions, fn: (agent: AgentClient) => Promise<T>): Promise<T> {
    const agent = await AgentClient.connect(options)
    try {
      return await fn(agent)
    } finally {
      agent.close()
    }
  }

  close(): void {
    this.closedError ??= new SshcaError('ERR_AGENT_PROTOCOL', 'the agent connection is closed')
    this.socket.destroy()
  }

  async list(): Promise<AgentIdentity[]> {
    const r = await this.request(Buffer.of(MSG.REQUEST_IDENTITIES), MSG.IDENTITIES_ANSWER)
    const n = r.u32()
    if (n > 2048) throw new SshcaError('ERR_AGENT_PROTOCOL', `the agent claims ${n} identities`)
    const out: AgentIdentity[] = []
    for (let i = 0; i < n; i++) {
      const blob = Buffer.from(r.bytes('identity blob'))
      // leniently, bytes that are not UTF-8 as U+FFFD: OpenSSH refuses only NUL in a comment, so a key
      // named in Latin-1 (or added through a forwarded agent by anyone) must not stop every command that
      // lists the agent; a comment sshca matches (sshca:...) is ASCII and never equals a mended one
      const comment = r.bytes('identity comment').toString('utf8')
      out.push(describeIdentity(blob, comment))
    }
    r.end('identities answer')
    return out
  }

  /** Adds a private key together with its certificate, as one identity. */
  async addCertificate(key: PrivateKey, cert: Certificate, options: AddOptions = {}): Promise<void> {
    if (!cert.publicKey.equals(key.publicKey)) throw new TypeError('the certificate does not certify this private key')
    const w = new SshWriter().u8(0).string(cert.keyType).string(cert.blob)
    agentCertPrivateFields(key, w)
    w.string(options.comment ?? cert.keyId)
    await this.add(w, options)
  }

  /** Adds a plain private key. */
  async addKey(key: PrivateKey, options: AddOptions = {}): Promise<void> {
    const w = new SshWriter().u8(0)
    agentKeyFields(key, w)
    w.string(options.comment ?? '')
    await this.add(w, options)
  }

  private async add(w: SshWriter, options: AddOptions): Promise<void> {
    const constrained = options.lifetimeSeconds !== undefined || options.confirm === true
    if (options.lifetimeSeconds !== undefined) {
      const s = options.lifetimeSeconds
      if (!Number.isInteger(s) || s < 1 || s > 0xffff_ffff)
        throw new TypeError(`lifetime must be a positive whole number of seconds, not ${s}`)
      w.u8(CONSTRAIN_LIFETIME).u32(s)
    }
    if (options.confirm) w.u8(CONSTRAIN_CONFIRM)
    const msg = w.toBuffer()
    msg[0] = constrained ? MSG.ADD_ID_CONSTRAINED : MSG.ADD_IDENTITY
    await this.expectSuccess(msg, 'add the key')
  }

  /** Removes one identity by its key or certificate blob. */
  async remove(blob: Buffer): Promise<void> {
    await this.expectSuccess(new SshWriter().u8(MSG.REMOVE_IDENTITY).string(blob).toBuffer(), 'remove the identity')
  }

  async removeAll(): Promise<void> {
    await this.expectSuccess(Buffer.of(MSG.REMOVE_ALL_IDENTITIES), 'remove all identities')
  }

  /** Asks the agent to sign `data` with the identity `blob`; returns the SSH signature blob. */
  async sign(blob: Buffer, data: Buffer, flags = 0): Promise<Buffer> {
    const msg = new SshWriter().u8(MSG.SIGN_REQUEST).string(blob).string(data).u32(flags).toBuffer()
    const r = await this.request(msg, MSG.SIGN_RESPONSE, 'sign')
    const sig = Buffer.from(r.bytes('signature'))
    r.end('sign response')
    return sig
  }

  private async expectSuccess(msg: Buffer, what: string): Promise<void> {
    const r = await this.request(msg, MSG.SUCCESS, what)
    r.end('success')
  }

  /** Sends one message and reads one reply; requests are serialized. */
  private request(payload: Buffer, expect: number, what = 'answer'): Promise<SshReader> {
    const run = async (): Promise<SshReader> => {
      const reply = await this.roundTrip(payload)
      const r = new SshReader(reply)
      const type = r.u8()
      if (type === expect) return r
      if (type === MSG.FAILURE) throw new SshcaError('ERR_AGENT_FAILURE', `the ssh-agent refused to ${what}`)
      throw new SshcaError('ERR_AGENT_PROTOCOL', `the ssh-agent answered message type ${type}, expected ${expect}`)
    }
    const p = this.queue.then(run, run)
    this.queue = p.catch(() => undefined)
    return p
  }

  private roundTrip(payload: Buffer): Promise<Buffer> {
    if (this.closedError) return Promise.reject(this.closedError)
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined
        const err = new SshcaError(
          'ERR_AGENT_TIMEOUT',
          `the ssh-agent at ${this.socketPath} did not answer within ${this.timeoutMs} ms`,
        )
        this.closedError = err
        this.socket.destroy()
        reject(err)
      }, this.timeoutMs)
      this.waiter = {
        resolve: (b) => {
          clearTimeout(timer)
          resolve(b)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      }
      const frame = Buffer.allocUnsafe(4 + payload.length)
      frame.writeUInt32BE(payload.length, 0)
      payload.copy(frame, 4)
      this.socket.write(frame)
    })
  }

  private onData(chunk: Buffer): void {
    // between requests the agent has nothing to say; whatever it says would answer the next one
    if (!this.waiter) return this.unsolicited()
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk])
    this.drain()
  }

  private drain(): void {
    if (this.buffered.length < 4) return
    const len = this.buffered.readUInt32BE(0)
    if (len === 0 || len > MAX_MESSAGE) {
      this.fail(new SshcaError('ERR_AGENT_PROTOCOL', `the ssh-agent sent a ${len}-byte message`))
      this.socket.destroy()
      return
    }
    if (this.buffered.length < 4 + len) return
    const msg = this.buffered.subarray(4, 4 + len)
    this.buffered = this.buffered.subarray(4 + len)
    const waiter = this.waiter
    this.waiter = undefined
    waiter?.resolve(msg)
    // one request, one reply: bytes behind a reply would be taken as the answer to the next request
    if (this.buffered.length > 0) this.unsolicited()
  }

  private unsolicited(): void {
    this.fail(new SshcaError('ERR_AGENT_PROTOCOL', 'the ssh-agent sent a message nobody asked for'))
    this.buffered = Buffer.alloc(0)
    this.socket.destroy()
  }

  private fail(err: Error): void {
    this.closedError ??= err
    const waiter = this.waiter
    this.waiter = undefined
    waiter?.reject(err)
  }
}

function describeIdentity(blob: Buffer, comment: string): AgentIdentity {
  let type = '?'
  try {
    type = new SshReader(blob).text('key type')
    if (isCertificateType(type)) return {blob, comment, type, certificate: parseCertificate(blob)}
    if (isKeyType(type)) return {blob, comment, type, publicKey: PublicKey.fromBlob(blob)}
  } catch {
    // an identity this tool cannot read (a FIDO key, a DSA key, a broken blob) is listed by type only
  }
  return {blob, comment, type}
}

function agentUnavailable(socketPath: string, cause: unknown): SshcaError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code
  const why =
    code === 'ENOENT'
      ? 'the socket does not exist'
      : code === 'ECONNREFUSED'
        ? 'nothing is listening on it'
        : code === 'EACCES'
          ? 'permission denied'
          : (cause as Error).message
  return new SshcaError('ERR_AGENT_UNAVAILABLE', `cannot reach the ssh-agent at ${socketPath}: ${why}`, {
    cause,
    hint: socketPath === WINDOWS_AGENT_PIPE ? HOW_TO_START_WINDOWS : HOW_TO_START,
  })
}
