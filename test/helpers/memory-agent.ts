/**
 * An ssh-agent in memory, over a duplex stream pair: the agent protocol's list, add (plain keys and
 * certificates, with lifetime and confirm constraints), remove, remove-all and sign, for unit tests
 * of the client's transport and of how it copes with agents that are not OpenSSH's. Its quirks are
 * the ones real agents have:
 *   certificates: 'keep' (OpenSSH) | 'drop' (gpg-agent: keeps the key, forgets the certificate) |
 *                 'refuse' (answers FAILURE to a certificate)
 *   lifetimes:    'honor' (OpenSSH) | 'ignore' (accepts the constraint, keeps the key forever) |
 *                 'refuse' (FAILURE to any constrained add, as some Windows agents)
 * Time comes from `clock` (milliseconds), so expiry is tested without waiting.
 */
import {createPrivateKey, type KeyObject} from 'node:crypto'
import {duplexPair, type Duplex} from 'node:stream'
import {AgentClient} from '../../src/ssh/agent.ts'
import {isCertificateType, parseCertificate} from '../../src/ssh/cert.ts'
import {CURVES, PublicKey} from '../../src/ssh/keys.ts'
import {signData} from '../../src/ssh/signature.ts'
import {SshReader, SshWriter} from '../../src/ssh/wire.ts'

export interface MemoryAgentOptions {
  certificates?: 'keep' | 'drop' | 'refuse'
  lifetimes?: 'honor' | 'ignore' | 'refuse'
  clock?: () => number
}

interface Entry {
  blob: Buffer
  comment: string
  key: KeyObject
  publicKey: PublicKey
  expiresAt: number | null
}

const u = (b: Buffer): string => b.toString('base64url')

export class MemoryAgent {
  readonly entries: Entry[] = []
  /** Every request type received, in order (11 list, 17/25 add, 18 remove, 13 sign …). */
  readonly requests: number[] = []
  private readonly o: Required<MemoryAgentOptions>

  constructor(o: MemoryAgentOptions = {}) {
    this.o = {certificates: o.certificates ?? 'keep', lifetimes: o.lifetimes ?? 'honor', clock: o.clock ?? Date.now}
  }

  /** A client connected to this agent through an in-memory stream pair. */
  client(label = 'memory-agent'): AgentClient {
    const [ours, theirs] = duplexPair()
    this.serve(theirs)
    return AgentClient.fromStream(ours, {label})
  }

  /** Answers agent messages on `stream` (also usable on a net.Server's sockets). */
  serve(stream: Duplex): void {
    let buf = Buffer.alloc(0)
    stream.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const msg = buf.subarray(4, 4 + buf.readUInt32BE(0))
        buf = buf.subarray(4 + msg.length)
        const reply = this.handle(msg)
        stream.write(Buffer.concat([new SshWriter().u32(reply.length).toBuffer(), reply]))
      }
    })
    stream.on('error', () => undefined)
  }

  /** What the agent holds now (expired entries dropped when it honors lifetimes). */
  live(): Entry[] {
    if (this.o.lifetimes === 'honor') {
      const now = this.o.clock()
      for (let i = this.entries.length - 1; i >= 0; i--)
        if (this.entries[i]!.expiresAt !== null && this.entries[i]!.expiresAt! <= now) this.entries.splice(i, 1)
    }
    return this.entries
  }

  private handle(msg: Buffer): Buffer {
    const FAILURE = Buffer.of(5)
    const SUCCESS = Buffer.of(6)
    const r = new SshReader(msg)
    const type = r.u8()
    this.requests.push(type)
    try {
      switch (type) {
        case 11: {
          const w = new SshWriter().u8(12).u32(this.live().length)
          for (const e of this.entries) w.string(e.blob).string(e.comment)
          return w.toBuffer()
        }
        case 17:
        case 25:
          return this.add(r, type === 25) ? SUCCESS : FAILURE
        case 18: {
          const blob = r.bytes('blob')
          const i = this.live().findIndex((e) => e.blob.equals(blob))
          if (i < 0) return FAILURE
          this.entries.splice(i, 1)
          return SUCCESS
        }
        case 19:
          this.entries.splice(0)
          return SUCCESS
        case 13: {
          const blob = r.bytes('blob')
          const data = r.bytes('data')
          const flags = r.u32()
          const e = this.live().find((x) => x.blob.equals(blob))
          if (!e) return FAILURE
          const sig = signData(e.key, e.publicKey, data, flags & 2 ? 'rsa-sha2-256' : 'rsa-sha2-512')
          return new SshWriter().u8(14).string(sig).toBuffer()
        }
        default:
          return FAILURE
      }
    } catch {
      return FAILURE
    }
  }

  private add(r: SshReader, constrained: boolean): boolean {
    const keyType = r.text('key type')
    let blob: Buffer
    let publicKey: PublicKey
    let jwk: Record<string, string>
    const cert = isCertificateType(keyType)
    if (cert) {
      const c = parseCertificate(Buffer.from(r.bytes('certificate')))
      blob = c.blob
      publicKey = c.publicKey
      const pub = publicKey.keyObject.export({format: 'jwk'}) as Record<string, string>
      if (publicKey.type === 'ssh-ed25519') {
        r.bytes('A')
        jwk = {...pub, d: u(r.bytes('k||A').subarray(0, 32))}
      } else if (CURVES[publicKey.type]) {
        jwk = {...pub, d: u(r.mpint('d'))}
      } else {
        return false
      }
    } else if (keyType === 'ssh-ed25519') {
      const a = r.bytes('A')
      const ka = r.bytes('k||A')
      jwk = {kty: 'OKP', crv: 'Ed25519', x: u(a), d: u(ka.subarray(0, 32))}
      publicKey = PublicKey.fromBlob(new SshWriter().string(keyType).string(a).toBuffer())
      blob = publicKey.blob
    } else {
      return false
    }
    const comment = r.text('comment')
    let lifetime: number | null = null
    while (r.remaining > 0) {
      const c = r.u8()
      if (c === 1) lifetime = r.u32()
      else if (c !== 2) return false
    }
    if (constrained && this.o.lifetimes === 'refuse') return false
    if (cert && this.o.certificates === 'refuse') return false
    if (cert && this.o.certificates === 'drop') {
      blob = publicKey.blob
    }
    const key = createPrivateKey({key: jwk, format: 'jwk'})
    const i = this.entries.findIndex((e) => e.blob.equals(blob))
    if (i >= 0) this.entries.splice(i, 1)
    const expiresAt = lifetime === null || this.o.lifetimes === 'ignore' ? null : this.o.clock() + lifetime * 1000
    this.entries.push({blob, comment, key, publicKey, expiresAt})
    return true
  }
}
