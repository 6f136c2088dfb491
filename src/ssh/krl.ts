/**
 * OpenSSH Key Revocation Lists (PROTOCOL.krl): certificates revoked by serial and by key ID, one
 * certificate section per CA key, and keys revoked outright by their SHA-256 fingerprint (every
 * certificate of such a key is refused too; OpenSSH >= 7.9 reads that section). No Bloom filter
 * extensions, no signature section (OpenSSH >= 9.4 refuses signed KRLs).
 */
import {formatError, SshReader, SshWriter} from './wire.ts'
import {PublicKey} from './keys.ts'

const MAGIC = 0x5353484b524c0a00n // "SSHKRL\n\0"
const FORMAT_VERSION = 1
const SECTION_CERTIFICATES = 1
const SECTION_FINGERPRINT_SHA256 = 5
const CERT_SERIAL_LIST = 0x20
const CERT_KEY_ID = 0x23

export interface KrlCertSection {
  caKey: PublicKey
  serials: readonly bigint[]
  keyIds: readonly string[]
}

export interface KrlInput {
  /** Increases whenever the list changes. */
  version: bigint
  /** Seconds since the epoch. */
  generatedAt: bigint
  comment: string
  sections: readonly KrlCertSection[]
  /** SHA-256 digests (32 bytes) of revoked public key blobs. */
  revokedKeySha256?: readonly Buffer[]
}

export function buildKrl(k: KrlInput): Buffer {
  const w = new SshWriter()
    .u64(MAGIC)
    .u32(FORMAT_VERSION)
    .u64(k.version)
    .u64(k.generatedAt)
    .u64(0n)
    .string(Buffer.alloc(0))
    .string(k.comment)
  for (const s of k.sections) {
    const serials = [...new Set(s.serials)].filter((n) => n !== 0n).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    const keyIds = [...new Set(s.keyIds)].sort()
    if (serials.length === 0 && keyIds.length === 0) continue
    const body = new SshWriter().string(s.caKey.blob).string(Buffer.alloc(0))
    if (serials.length > 0) {
      const list = new SshWriter()
      for (const n of serials) list.u64(n)
      body.u8(CERT_SERIAL_LIST).string(list.toBuffer())
    }
    if (keyIds.length > 0) {
      const ids = new SshWriter()
      for (const id of keyIds) ids.string(id)
      body.u8(CERT_KEY_ID).string(ids.toBuffer())
    }
    w.u8(SECTION_CERTIFICATES).string(body.toBuffer())
  }
  const hashes = uniqueSorted(k.revokedKeySha256 ?? [])
  if (hashes.length > 0) {
    const list = new SshWriter()
    for (const h of hashes) {
      if (h.length !== 32) throw new TypeError('a revoked key digest must be 32 bytes of SHA-256')
      list.string(h)
    }
    w.u8(SECTION_FINGERPRINT_SHA256).string(list.toBuffer())
  }
  return w.toBuffer()
}

/** Bytewise ascending, duplicates dropped: the order OpenSSH requires of hash sections. */
function uniqueSorted(list: readonly Buffer[]): Buffer[] {
  const sorted = [...list].sort(Buffer.compare)
  return sorted.filter((b, i) => i === 0 || !b.equals(sorted[i - 1]!))
}

export interface ParsedKrl {
  version: bigint
  generatedAt: bigint
  comment: string
  sections: {caKeyBlob: Buffer; serials: bigint[]; keyIds: string[]}[]
  revokedKeySha256: Buffer[]
}

/**
 * Reads a KRL of the sections above; anything else (a section sshca does not write) is an error, and
 * so is what OpenSSH refuses in them (a serial 0, a CA key that is no key): sshd refuses every public
 * key when its RevokedKeys does not load, ssh every host key of RevokedHostKeys.
 */
export function parseKrl(buf: Buffer): ParsedKrl {
  const r = new SshReader(buf)
  if (buf.length < 8 || r.u64() !== MAGIC) throw formatError('not an OpenSSH KRL (bad magic)')
  if (r.u32() !== FORMAT_VERSION) throw formatError('unsupported KRL format version')
  const version = r.u64()
  const generatedAt = r.u64()
  r.u64()
  r.bytes('reserved')
  const comment = r.text('comment')
  const sections: ParsedKrl['sections'] = []
  const revokedKeySha256: Buffer[] = []
  while (r.remaining > 0) {
    const type = r.u8()
    const data = new SshReader(r.bytes('section'))
    if (type === SECTION_FINGERPRINT_SHA256) {
      while (data.remaining > 0) {
        const h = Buffer.from(data.bytes('key digest'))
        if (h.length !== 32) throw formatError('a SHA-256 key digest in the KRL is not 32 bytes')
        revokedKeySha256.push(h)
      }
      continue
    }
    if (type !== SECTION_CERTIFICATES) throw formatError(`KRL section type ${type} is not one sshca writes`)
    const caKeyBlob = Buffer.from(data.bytes('ca key'))
    try {
      PublicKey.fromBlob(caKeyBlob)
    } catch (err) {
      throw formatError(`a CA key in the KRL is not a key OpenSSH loads: ${(err as Error).message}`)
    }
    data.bytes('reserved')
    const s = {caKeyBlob, serials: [] as bigint[], keyIds: [] as string[]}
    while (data.remaining > 0) {
      const sub = data.u8()
      const sd = new SshReader(data.bytes('cert section'))
      if (sub === CERT_SERIAL_LIST)
        while (sd.remaining > 0) {
          const serial = sd.u64()
          if (serial === 0n) throw formatError('serial 0 in the KRL (OpenSSH refuses the whole list)')
          s.serials.push(serial)
        }
      else if (sub === CERT_KEY_ID) while (sd.remaining > 0) s.keyIds.push(sd.text('key id'))
      else throw formatError(`KRL certificate section type ${sub} is not one sshca writes`)
    }
    sections.push(s)
  }
  return {version, generatedAt, comment, sections, revokedKeySha256}
}
