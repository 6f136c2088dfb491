/**
 * RFC 4251 §5 data types: the byte layer under every OpenSSH key, certificate, signature and agent
 * message. A reader never reads past its buffer; every violation is ERR_SSH_FORMAT.
 */
import {SshcaError} from '../errors.ts'

const MAX_U64 = 0xffff_ffff_ffff_ffffn

export class SshReader {
  private offset = 0
  private readonly buf: Buffer
  constructor(buf: Buffer) {
    this.buf = buf
  }

  get remaining(): number {
    return this.buf.length - this.offset
  }

  private take(n: number, what: string): Buffer {
    if (n > this.remaining) throw formatError(`truncated ${what}: need ${n} bytes, have ${this.remaining}`)
    const out = this.buf.subarray(this.offset, this.offset + n)
    this.offset += n
    return out
  }

  u8(): number {
    return this.take(1, 'byte')[0]!
  }

  u32(): number {
    return this.take(4, 'uint32').readUInt32BE(0)
  }

  u64(): bigint {
    return this.take(8, 'uint64').readBigUInt64BE(0)
  }

  bool(): boolean {
    return this.u8() !== 0
  }

  /** An SSH `string`: uint32 length + bytes. The result shares memory with the input. */
  bytes(what = 'string'): Buffer {
    return this.take(this.u32(), what)
  }

  /** An SSH `string` that must be valid UTF-8 text. */
  text(what = 'string'): string {
    const raw = this.bytes(what)
    const s = raw.toString('utf8')
    // Stryker disable next-line StringLiteral: Buffer.from(s, '') falls back to the default encoding, utf8
    if (!Buffer.from(s, 'utf8').equals(raw)) throw formatError(`${what} is not valid UTF-8`)
    return s
  }

  /**
   * Text OpenSSH reads as a C string (sshbuf_get_cstring): UTF-8 with no NUL byte. A NUL would end the
   * string early for OpenSSH and not for us: two readers, two meanings of one certificate.
   */
  cstring(what = 'string'): string {
    const s = this.text(what)
    if (s.includes('\0')) throw formatError(`${what} contains a NUL byte`)
    return s
  }

  /** An SSH `mpint` as unsigned magnitude bytes (no sign byte); negative values are refused. */
  mpint(what = 'mpint'): Buffer {
    const raw = this.bytes(what)
    if (raw[0]! & 0x80) throw formatError(`${what} is negative`)
    // a leading 0x00 is there only to clear the sign of a byte with its top bit set (zero is no bytes)
    if (raw[0] === 0 && ((raw[1] ?? 0) & 0x80) === 0) throw formatError(`${what} is not minimally encoded`)
    return raw[0] === 0 ? raw.subarray(1) : raw
  }

  /** The unread rest, consumed. */
  rest(): Buffer {
    return this.take(this.remaining, 'rest')
  }

  /** Throws unless every byte was consumed: trailing garbage is a format error, not ignorable. */
  end(what: string): void {
    if (this.remaining !== 0) throw formatError(`${this.remaining} unexpected trailing bytes after ${what}`)
  }
}

/** Writes into one growing buffer; toBuffer() hands it over (do not write after). */
export class SshWriter {
  private buf: Buffer = Buffer.allocUnsafe(256)
  private length = 0

  // the growth tests catch a buffer too small for a write; one larger than needed is invisible
  private room(n: number): void {
    // Stryker disable next-line EqualityOperator: < grows a buffer that is exactly full, only early (> never grows: the growth tests fail it)
    if (this.length + n <= this.buf.length) return
    // Stryker disable next-line ArithmeticOperator: a smaller start is doubled by the loop below
    let size = this.buf.length * 2
    // Stryker disable next-line EqualityOperator: <= doubles once more than needed (>= never ends: a timeout)
    while (size < this.length + n) size *= 2
    const next = Buffer.allocUnsafe(size)
    this.buf.copy(next, 0, 0, this.length)
    this.buf = next
  }

  raw(b: Buffer | Uint8Array): this {
    this.room(b.length)
    this.buf.set(b, this.length)
    this.length += b.length
    return this
  }

  u8(n: number): this {
    this.room(1)
    this.buf[this.length++] = n & 0xff
    return this
  }

  u32(n: number): this {
    if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new TypeError(`uint32 out of range: ${n}`)
    this.room(4)
    this.buf.writeUInt32BE(n, this.length)
    this.length += 4
    return this
  }

  u64(n: bigint): this {
    if (n < 0n || n > MAX_U64) throw new TypeError(`uint64 out of range: ${n}`)
    this.room(8)
    this.buf.writeBigUInt64BE(n, this.length)
    this.length += 8
    return this
  }

  bool(v: boolean): this {
    return this.u8(v ? 1 : 0)
  }

  string(v: Buffer | Uint8Array | string): this {
    if (typeof v === 'string') {
      // Stryker disable next-line StringLiteral: '' falls back to the default encoding, utf8
      const n = Buffer.byteLength(v, 'utf8')
      this.u32(n)
      this.room(n)
      // Stryker disable next-line StringLiteral: '' falls back to the default encoding, utf8
      this.length += this.buf.write(v, this.length, 'utf8')
      return this
    }
    this.u32(v.length)
    return this.raw(v)
  }

  /** Unsigned magnitude to minimal two's-complement mpint (leading zeros dropped, 0x00 added when the top bit is set). */
  mpint(magnitude: Buffer): this {
    let i = 0
    while (magnitude[i] === 0) i++
    const m = magnitude.subarray(i)
    if ((m[0] ?? 0) & 0x80) {
      this.u32(m.length + 1)
      this.u8(0)
      return this.raw(m)
    }
    return this.string(m)
  }

  toBuffer(): Buffer {
    return this.buf.subarray(0, this.length)
  }
}

export function formatError(message: string, cause?: unknown): SshcaError {
  return new SshcaError('ERR_SSH_FORMAT', message, {cause})
}

/** A big-endian magnitude as exactly `size` bytes (a new buffer): leading zeros dropped, then left-padded. */
export function fixedWidth(magnitude: Buffer, size: number, what: string): Buffer {
  let i = 0
  while (magnitude[i] === 0) i++
  const m = magnitude.subarray(i)
  if (m.length > size) throw formatError(`${what} is longer than ${size} bytes`)
  const out = Buffer.alloc(size)
  m.copy(out, size - m.length)
  return out
}
