/**
 * The backup archive's envelope: a sequence of named files sealed under a key derived from a backup
 * password (scrypt, as the keystore), with AES-256-GCM in the STREAM construction (as age does):
 *
 *   line 1   a JSON header (format, version, scrypt parameters and salt, chunk size, nonce prefix)
 *   then     chunks of CHUNK bytes of plaintext, each followed by its 16-byte GCM tag
 *
 * Chunk i is sealed with the nonce `prefix(7) ‖ i (u32 BE) ‖ final (1 byte)` and the header's SHA-256
 * as associated data, so a chunk cannot be moved, dropped, duplicated or replayed from another archive,
 * the archive cannot be cut at a chunk boundary (the last chunk must say it is last), and no header
 * field (the KDF cost, the chunk size) can be changed. Every tag is the full 16 bytes. Reading yields
 * plaintext only after its chunk's tag verified, with memory bounded by one chunk, whatever the size.
 *
 * The plaintext: a u32 BE length, the manifest (JSON), then each file's bytes in the manifest's order;
 * the manifest gives each file's size and SHA-256, which the reader checks.
 */
import {createCipheriv, createDecipheriv, createHash, randomBytes} from 'node:crypto'
import {open, type FileHandle} from 'node:fs/promises'
import {SshcaError} from '../../errors.ts'
import {deriveKey, KDF, newSalt, reasonableKdf} from './keystore.ts'

const FORMAT = 'sshca-backup'
const TAG = 16
const PREFIX = 7
export const CHUNK = 1 << 20
const MAX_HEADER = 4096
const MAX_MANIFEST = 1 << 20

interface Header {
  format: typeof FORMAT
  version: 1
  kdf: {name: 'scrypt'; N: number; r: number; p: number; salt: string}
  cipher: 'aes-256-gcm-stream'
  chunkSize: number
  noncePrefix: string
}

/** One file in the archive, as the manifest lists it. */
export interface ArchivedFile {
  /** Relative to the CA directory, "/"-separated. */
  path: string
  size: number
  sha256: string
}

/** A file to put in an archive: its bytes, or a path to stream them from. */
export type ArchiveInput = {path: string; data: Buffer} | {path: string; file: string}

function nonce(prefix: Buffer, i: number, final: boolean): Buffer {
  if (i > 0xffff_ffff) throw new SshcaError('ERR_INPUT', 'the archive is too large (more than 2^32 chunks)')
  const n = Buffer.alloc(12)
  prefix.copy(n, 0)
  n.writeUInt32BE(i, PREFIX)
  n[11] = final ? 1 : 0
  return n
}

const badArchive = (why: string): SshcaError =>
  new SshcaError('ERR_INPUT', `not a valid sshca backup archive: ${why}`, {details: {reason: 'archive_invalid'}})

/** Sealed output, one chunk at a time; `finish` seals the last chunk (possibly empty) with the final flag. */
class SealingWriter {
  private buffered: Buffer[] = []
  private size = 0
  private index = 0
  private readonly fh: FileHandle
  private readonly key: Buffer
  private readonly prefix: Buffer
  private readonly aad: Buffer
  written = 0

  constructor(fh: FileHandle, key: Buffer, prefix: Buffer, aad: Buffer) {
    this.fh = fh
    this.key = key
    this.prefix = prefix
    this.aad = aad
  }

  async write(data: Buffer): Promise<void> {
    this.buffered.push(data)
    this.size += data.length
    while (this.size > CHUNK) {
      const all = Buffer.concat(this.buffered)
      await this.seal(all.subarray(0, CHUNK), false)
      this.buffered = [all.subarray(CHUNK)]
      this.size = all.length - CHUNK
    }
  }

  async finish(): Promise<void> {
    await this.seal(Buffer.concat(this.buffered), true)
    this.buffered = []
    this.size = 0
  }

  private async seal(plain: Buffer, final: boolean): Promise<void> {
    const c = createCipheriv('aes-256-gcm', this.key, nonce(this.prefix, this.index++, final), {authTagLength: TAG})
    c.setAAD(this.aad)
    const out = Buffer.concat([c.update(plain), c.final(), c.getAuthTag()])
    await this.fh.write(out)
    this.written += out.length
  }
}

/**
 * Writes an archive of `files` with `manifest` (to which the files' sizes and checksums are added) to
 * the open file `fh`. Returns the manifest as written.
 */
export async function writeArchive<M extends object>(
  fh: FileHandle,
  password: string,
  manifest: M,
  files: readonly ArchiveInput[],
  /** Fields to add once the file list is known (a signature over the whole manifest). */
  attest?: (full: M & {files: ArchivedFile[]}) => Partial<M>,
): Promise<M & {files: ArchivedFile[]}> {
  if (!password) throw new TypeError('a backup password is required')
  const listed: ArchivedFile[] = []
  // sizes and checksums first: the manifest comes before the bytes. Streamed files are read twice, so
  // the caller passes only files nobody else writes (its own snapshot copy).
  for (const f of files)
    listed.push({
      path: f.path,
      ...('data' in f ? {size: f.data.length, sha256: sha256(f.data)} : await hashFile(f.file)),
    })
  const listedManifest = {...manifest, files: listed}
  const full = attest ? {...listedManifest, ...attest(listedManifest)} : listedManifest
  const salt = newSalt()
  const header: Header = {
    format: FORMAT,
    version: 1,
    kdf: {name: 'scrypt', ...KDF, salt: salt.toString('base64')},
    cipher: 'aes-256-gcm-stream',
    chunkSize: CHUNK,
    noncePrefix: randomBytes(PREFIX).toString('base64'),
  }
  const headerLine = Buffer.from(`${JSON.stringify(header)}\n`)
  await fh.write(headerLine)
  const key = await deriveKey(password, salt, KDF)
  const w = new SealingWriter(
    fh,
    key,
    Buffer.from(header.noncePrefix, 'base64'),
    createHash('sha256').update(headerLine).digest(),
  )
  const manifestBytes = Buffer.from(JSON.stringify(full))
  const len = Buffer.alloc(4)
  len.writeUInt32BE(manifestBytes.length)
  await w.write(len)
  await w.write(manifestBytes)
  for (const [i, f] of files.entries()) {
    if ('data' in f) {
      await w.write(f.data)
      continue
    }
    const hash = createHash('sha256')
    let size = 0
    const src = await open(f.file, 'r')
    try {
      for await (const chunk of src.createReadStream({
        highWaterMark: CHUNK,
        autoClose: false,
      }) as AsyncIterable<Buffer>) {
        hash.update(chunk)
        size += chunk.length
        await w.write(chunk)
      }
    } finally {
      await src.close()
    }
    if (size !== listed[i]!.size || hash.digest('hex') !== listed[i]!.sha256)
      throw new SshcaError('ERR_INPUT', `${f.file} changed while it was being archived`)
  }
  await w.finish()
  return full
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

async function hashFile(path: string): Promise<{size: number; sha256: string}> {
  const hash = createHash('sha256')
  let size = 0
  const fh = await open(path, 'r')
  try {
    for await (const chunk of fh.createReadStream({highWaterMark: CHUNK, autoClose: false}) as AsyncIterable<Buffer>) {
      hash.update(chunk)
      size += chunk.length
    }
  } finally {
    await fh.close()
  }
  return {size, sha256: hash.digest('hex')}
}

/** Reads and checks the header line; returns it with its byte length. */
async function readHeader(fh: FileHandle): Promise<{header: Header; bytes: Buffer}> {
  const buf = Buffer.alloc(MAX_HEADER)
  const {bytesRead} = await fh.read(buf, 0, MAX_HEADER, 0)
  const nl = buf.subarray(0, bytesRead).indexOf(0x0a)
  if (nl < 0) throw badArchive('no header line')
  let h: Header
  try {
    h = JSON.parse(buf.subarray(0, nl).toString('utf8')) as Header
  } catch {
    throw badArchive('the header is not JSON')
  }
  if (h.format !== FORMAT) throw badArchive('not an sshca backup')
  if (h.version !== 1 || h.cipher !== 'aes-256-gcm-stream' || h.kdf?.name !== 'scrypt')
    throw badArchive('a format version this sshca does not read (a newer sshca made it?)')
  if (!reasonableKdf(h.kdf)) throw badArchive('unreasonable scrypt parameters')
  if (h.chunkSize !== CHUNK) throw badArchive(`chunk size ${h.chunkSize} (this sshca reads ${CHUNK})`)
  const prefix = Buffer.from(h.noncePrefix ?? '', 'base64')
  const salt = Buffer.from(h.kdf.salt ?? '', 'base64')
  if (prefix.length !== PREFIX || salt.length < 16) throw badArchive('bad nonce prefix or salt')
  return {header: h, bytes: buf.subarray(0, nl + 1)}
}

/**
 * The archive's plaintext, chunk by chunk, each yielded only after its tag verified. A wrong password
 * fails on the first chunk (ERR_CA_PASSWORD); any alteration, truncation or reordering fails at the
 * chunk it touches (ERR_INPUT).
 */
async function* openChunks(path: string, password: string): AsyncGenerator<Buffer> {
  const fh = await openArchiveFile(path)
  try {
    const {header, bytes} = await readHeader(fh)
    const size = (await fh.stat()).size
    const body = size - bytes.length
    const sealed = CHUNK + TAG
    const count = Math.max(1, Math.ceil(body / sealed))
    if (body < TAG) throw badArchive('truncated (no sealed data)')
    const key = await deriveKey(password, Buffer.from(header.kdf.salt, 'base64'), header.kdf)
    const prefix = Buffer.from(header.noncePrefix, 'base64')
    const aad = createHash('sha256').update(bytes).digest()
    const buf = Buffer.alloc(sealed)
    for (let i = 0; i < count; i++) {
      const len = Math.min(sealed, body - i * sealed)
      if (len < TAG) throw badArchive('truncated inside a chunk')
      const {bytesRead} = await fh.read(buf, 0, len, bytes.length + i * sealed)
      if (bytesRead !== len) throw badArchive('the file changed while it was read')
      const final = i === count - 1
      const d = createDecipheriv('aes-256-gcm', key, nonce(prefix, i, final), {authTagLength: TAG})
      d.setAAD(aad)
      d.setAuthTag(buf.subarray(len - TAG, len))
      let plain: Buffer
      try {
        plain = Buffer.concat([d.update(buf.subarray(0, len - TAG)), d.final()])
      } catch {
        if (i === 0) {
          throw new SshcaError(
            'ERR_CA_PASSWORD',
            'cannot open the backup: wrong backup password, or the archive was altered',
            {
              details: {reason: 'archive_unauthentic'},
              hint: 'use the password given to `sshca ca backup` (the first line of its --password-file)',
            },
          )
        }
        throw badArchive(`chunk ${i} does not authenticate (altered, truncated or reordered)`)
      }
      yield plain
    }
  } finally {
    await fh.close()
  }
}

async function openArchiveFile(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new SshcaError('ERR_FILE_NOT_FOUND', `no backup archive at ${path}`)
    throw new SshcaError('ERR_INPUT', `cannot read ${path}: ${(err as Error).message}`, {cause: err})
  }
}

/** What a reader does with each file: a sink for its bytes (or undefined to only check it). */
export type FileSink = (
  file: ArchivedFile,
) => Promise<{write(b: Buffer): Promise<void>; close(): Promise<void>} | undefined>

/**
 * Reads an archive end to end: authenticates every chunk, parses the manifest, hands each file's
 * bytes to `sink` and checks its size and SHA-256 against the manifest. `checkManifest` sees the
 * manifest before any file byte is handed out and may refuse it. Returns the manifest.
 */
export async function readArchive<M extends {files: ArchivedFile[]}>(
  path: string,
  password: string,
  checkManifest: (m: unknown) => M,
  sink?: FileSink,
): Promise<M> {
  type Open = {
    file: ArchivedFile
    left: number
    hash: ReturnType<typeof createHash>
    out: Awaited<ReturnType<FileSink>>
  }
  const st: {pending: Buffer; manifest?: M; index: number; current?: Open} = {pending: Buffer.alloc(0), index: 0}
  const endFile = async (): Promise<void> => {
    const c = st.current!
    delete st.current
    await c.out?.close()
    if (c.hash.digest('hex') !== c.file.sha256) throw badArchive(`${c.file.path} does not match its checksum`)
  }
  // opens the next file, skipping (and checking) empty ones
  const nextFile = async (): Promise<void> => {
    while (!st.current && st.manifest && st.index < st.manifest.files.length) {
      const file = st.manifest.files[st.index++]!
      st.current = {file, left: file.size, hash: createHash('sha256'), out: sink ? await sink(file) : undefined}
      if (file.size === 0) await endFile()
    }
  }
  const take = async (chunk: Buffer): Promise<void> => {
    st.pending = st.pending.length ? Buffer.concat([st.pending, chunk]) : chunk
    if (!st.manifest) {
      if (st.pending.length < 4) return
      const len = st.pending.readUInt32BE(0)
      if (len > MAX_MANIFEST) throw badArchive('the manifest is too large')
      if (st.pending.length < 4 + len) return
      let parsed: unknown
      try {
        parsed = JSON.parse(st.pending.subarray(4, 4 + len).toString('utf8'))
      } catch {
        throw badArchive('the manifest is not JSON')
      }
      st.manifest = checkManifest(parsed)
      st.pending = st.pending.subarray(4 + len)
      await nextFile()
    }
    while (st.pending.length > 0) {
      const c = st.current
      if (!c) throw badArchive('bytes after the last file')
      const part = st.pending.subarray(0, Math.min(c.left, st.pending.length))
      c.hash.update(part)
      await c.out?.write(part)
      c.left -= part.length
      st.pending = st.pending.subarray(part.length)
      if (c.left === 0) {
        await endFile()
        await nextFile()
      }
    }
  }
  try {
    for await (const chunk of openChunks(path, password)) await take(chunk)
  } catch (err) {
    await st.current?.out?.close().catch(() => undefined)
    throw err
  }
  if (!st.manifest) throw badArchive('no manifest')
  if (st.current || st.index < st.manifest.files.length) throw badArchive('it ends before its last file')
  return st.manifest
}
