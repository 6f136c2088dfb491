/**
 * The backup envelope: round trips (an empty file, a file over two chunks streamed from disk), and
 * every way to tamper with a sealed archive: wrong password, a flipped byte, truncation at and inside
 * a chunk boundary, reordered or duplicated chunks, an edited header, a chunk from another archive,
 * and a writer whose manifest lies about a file.
 */
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {open, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {CHUNK, readArchive, writeArchive, type ArchivedFile, type ArchiveInput} from '../../../src/ca/keys/archive.ts'
import {tempDir} from '../../helpers/tmp.ts'

const PASSWORD = 'a backup password of some length'
const SEALED = CHUNK + 16

interface M {
  note: string
  files: ArchivedFile[]
}
const check = (m: unknown): M => m as M

async function write(path: string, files: ArchiveInput[], password = PASSWORD): Promise<M> {
  const fh = await open(path, 'wx', 0o600)
  try {
    return await writeArchive(fh, password, {note: 'test'}, files)
  } finally {
    await fh.close()
  }
}

async function readBack(path: string, password = PASSWORD): Promise<{manifest: M; contents: Map<string, Buffer>}> {
  const contents = new Map<string, Buffer>()
  const manifest = await readArchive(path, password, check, async (f) => {
    const parts: Buffer[] = []
    return {
      write: async (b) => void parts.push(Buffer.from(b)),
      close: async () => void contents.set(f.path, Buffer.concat(parts)),
    }
  })
  return {manifest, contents}
}

describe('backup archive envelope (scrypt + AES-256-GCM STREAM)', function () {
  this.timeout(60_000)
  const dir = tempDir('sshca-archive-')
  const big = randomBytes(2 * CHUNK + 12_345)
  const bigFile = join(dir, 'big.bin')
  let archive: string
  let bytes: Buffer
  let headerLength: number

  before(async () => {
    await writeFile(bigFile, big)
    archive = join(dir, 'a.sshca')
    await write(archive, [
      {path: 'ca.yaml', data: Buffer.from('name: test\n')},
      {path: 'empty', data: Buffer.alloc(0)},
      {path: 'db/sshca.sqlite', file: bigFile},
    ])
    bytes = await readFile(archive)
    headerLength = bytes.indexOf(0x0a) + 1
  })

  const tampered = async (name: string, mutate: (b: Buffer) => Buffer): Promise<string> => {
    const p = join(dir, name)
    await writeFile(p, mutate(Buffer.from(bytes)))
    return p
  }

  it('round-trips every file byte for byte, with sizes and checksums in the manifest', async () => {
    const {manifest, contents} = await readBack(archive)
    assert.equal(manifest.note, 'test')
    assert.deepEqual(
      manifest.files.map((f) => [f.path, f.size]),
      [
        ['ca.yaml', 11],
        ['empty', 0],
        ['db/sshca.sqlite', big.length],
      ],
    )
    assert.equal(contents.get('ca.yaml')!.toString(), 'name: test\n')
    assert.equal(contents.get('empty')!.length, 0)
    assert.ok(contents.get('db/sshca.sqlite')!.equals(big))
    const plain = 4 + Buffer.byteLength(JSON.stringify(manifest)) + 11 + big.length
    assert.equal(
      bytes.length - headerLength,
      plain + 16 * Math.ceil(plain / CHUNK),
      'chunks of 1 MiB, each with its tag, the last one short',
    )
    const header = JSON.parse(bytes.subarray(0, headerLength).toString()) as {kdf: {N: number}; cipher: string}
    assert.equal(header.cipher, 'aes-256-gcm-stream')
    assert.ok(header.kdf.N >= 1 << 17, "the keystore's scrypt cost")
    assert.doesNotMatch(bytes.toString('latin1'), /name: test/, 'nothing in clear')
  })

  it('a wrong password is ERR_CA_PASSWORD, before any file byte is handed out', async () => {
    let handed = 0
    await assert.rejects(
      readArchive(archive, 'not the backup password', check, async () => ({
        write: async () => void handed++,
        close: async () => undefined,
      })),
      {code: 'ERR_CA_PASSWORD', message: /wrong backup password/},
    )
    assert.equal(handed, 0)
  })

  it('a flipped byte in the second chunk fails there (ERR_INPUT), the first chunk having authenticated', async () => {
    const p = await tampered('flip', (b) => {
      b[headerLength + SEALED + 100]! ^= 1
      return b
    })
    await assert.rejects(readBack(p), {code: 'ERR_INPUT', message: /chunk 1 does not authenticate/})
  })

  it('cut at a chunk boundary: the last remaining chunk was not sealed as the last one', async () => {
    const p = await tampered('cut-boundary', (b) => b.subarray(0, headerLength + 2 * SEALED))
    await assert.rejects(readBack(p), {code: 'ERR_INPUT', message: /chunk 1 does not authenticate/})
  })

  it('cut inside a chunk, or down to the header, fails', async () => {
    await assert.rejects(readBack(await tampered('cut-inside', (b) => b.subarray(0, b.length - 5))), {
      code: 'ERR_INPUT',
    })
    await assert.rejects(readBack(await tampered('cut-header', (b) => b.subarray(0, headerLength + 3))), {
      code: 'ERR_INPUT',
      message: /truncated/,
    })
  })

  it('two chunks swapped, or one duplicated, fail', async () => {
    const c = (b: Buffer, i: number) => b.subarray(headerLength + i * SEALED, headerLength + (i + 1) * SEALED)
    const swapped = await tampered('swap', (b) =>
      Buffer.concat([b.subarray(0, headerLength), c(b, 1), c(b, 0), b.subarray(headerLength + 2 * SEALED)]),
    )
    await assert.rejects(readBack(swapped), {code: 'ERR_CA_PASSWORD'}, 'chunk 0 is now chunk 1: nothing authenticates')
    const dup = await tampered('dup', (b) =>
      Buffer.concat([b.subarray(0, headerLength + 2 * SEALED), c(b, 1), b.subarray(headerLength + 2 * SEALED)]),
    )
    await assert.rejects(readBack(dup), {code: 'ERR_INPUT', message: /chunk 2 does not authenticate/})
  })

  it('an edited header (cheaper scrypt, another nonce prefix) fails: the header is bound to every chunk', async () => {
    const header = JSON.parse(bytes.subarray(0, headerLength).toString()) as Record<string, unknown>
    const withHeader = (h: Record<string, unknown>) => (b: Buffer) =>
      Buffer.concat([Buffer.from(`${JSON.stringify(h)}\n`), b.subarray(headerLength)])
    // same derived key, different header bytes: the associated data no longer matches
    const reordered = await tampered('header-keys', withHeader({noncePrefix: header.noncePrefix, ...header}))
    await assert.rejects(readBack(reordered), {code: 'ERR_CA_PASSWORD'})
    const prefix = Buffer.from(header.noncePrefix as string, 'base64')
    prefix[0]! ^= 1
    await assert.rejects(
      readBack(await tampered('header-prefix', withHeader({...header, noncePrefix: prefix.toString('base64')}))),
      {code: 'ERR_CA_PASSWORD'},
    )
    await assert.rejects(readBack(await tampered('header-version', withHeader({...header, version: 2}))), {
      code: 'ERR_INPUT',
      message: /format version/,
    })
    await assert.rejects(
      readBack(await tampered('header-kdf', withHeader({...header, kdf: {...(header.kdf as object), N: 1 << 30}}))),
      {code: 'ERR_INPUT', message: /unreasonable scrypt/},
    )
    // the header is authenticated only by the key its parameters derive: whoever can edit a stored
    // archive must not make a restore (even --dry-run) spend 4 GiB and minutes before the password fails
    await assert.rejects(
      readBack(
        await tampered(
          'header-cost',
          withHeader({...header, kdf: {...(header.kdf as object), N: 1 << 20, r: 32, p: 16}}),
        ),
      ),
      {code: 'ERR_INPUT', message: /unreasonable scrypt/},
    )
  })

  it('a chunk from another archive with the same password does not fit', async () => {
    const other = join(dir, 'other.sshca')
    await write(other, [{path: 'db/sshca.sqlite', file: bigFile}])
    const o = await readFile(other)
    const oh = o.indexOf(0x0a) + 1
    const p = await tampered('foreign', (b) =>
      Buffer.concat([
        b.subarray(0, headerLength + SEALED),
        o.subarray(oh + SEALED, oh + 2 * SEALED),
        b.subarray(headerLength + 2 * SEALED),
      ]),
    )
    await assert.rejects(readBack(p), {code: 'ERR_INPUT', message: /chunk 1/})
  })

  it('an authentic archive whose manifest lies about a file is refused by its checksum', async () => {
    const p = join(dir, 'liar.sshca')
    const data = Buffer.from('the bytes the manifest describes')
    // the writer hashes every file before its first write to the file (the header): change the bytes
    // at that write, through the file handle, so the manifest describes bytes the archive does not hold
    const fh = await open(p, 'wx', 0o600)
    let changed = false
    const lying = new Proxy(fh, {
      get(target, prop, receiver) {
        if (prop === 'write') {
          return (...args: unknown[]) => {
            if (!changed) {
              changed = true
              data.write('THE')
            }
            return (target.write as (...a: unknown[]) => unknown).apply(target, args)
          }
        }
        const v = Reflect.get(target, prop, receiver) as unknown
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
      },
    })
    try {
      await writeArchive(lying, PASSWORD, {note: 'test'}, [{path: 'ca.yaml', data}])
    } finally {
      await fh.close()
    }
    assert.ok(changed)
    await assert.rejects(readBack(p), {code: 'ERR_INPUT', message: /ca\.yaml does not match its checksum/})
  })

  it('a file that is not an archive says so', async () => {
    const p = join(dir, 'not-an-archive')
    await writeFile(p, 'hello\nworld')
    await assert.rejects(readBack(p), {
      code: 'ERR_INPUT',
      message: /not a valid sshca backup archive: the header is not JSON/,
    })
    await assert.rejects(readBack(join(dir, 'missing')), {code: 'ERR_FILE_NOT_FOUND'})
  })
})
