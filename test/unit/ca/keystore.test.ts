/**
 * CA keys at rest (src/ca/keys/keystore.ts): AES-256-GCM under scrypt, in a JSON envelope. Each attack
 * on a sealed file is performed and refused: a wrong password, any altered byte, a shortened tag, a
 * crafted cost that would spend gigabytes, an envelope of another format; and the password rules.
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync} from 'node:crypto'
import {chmodSync, mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {
  deriveKey,
  KDF,
  MIN_PASSWORD_LENGTH,
  openPrivateKey,
  passwordProblem,
  readPasswordFile,
  readSealedKey,
  reasonableKdf,
  sealPrivateKey,
  writeSealedKey,
} from '../../../src/ca/keys/keystore.ts'
import {rejectsCode} from '../../helpers/assert.ts'

const PASSWORD = 'correct horse battery'
const SALT = Buffer.alloc(16, 7)

describe('CA keys at rest: sealed with scrypt and AES-256-GCM', function () {
  this.timeout(60_000)
  let key: ReturnType<typeof generateKeyPairSync>['privateKey']
  let sealed: string
  before(async () => {
    key = generateKeyPairSync('ed25519').privateKey
    sealed = await sealPrivateKey(key, PASSWORD, SALT)
  })
  const env = () => JSON.parse(sealed) as Record<string, unknown> & {kdf: Record<string, unknown>}
  const der = (k: {export(o: object): Buffer | string}) => k.export({type: 'pkcs8', format: 'der'}) as Buffer

  it('opens with the password it was sealed with; the envelope names its format, cipher and cost, never the key', async () => {
    assert.deepEqual(der(await openPrivateKey(sealed, PASSWORD)), der(key))
    const e = env()
    assert.deepEqual(
      [e.format, e.version, e.cipher, e.kdf.name, e.kdf.N, e.kdf.r, e.kdf.p, e.kdf.salt],
      ['sshca-encrypted-key', 1, 'aes-256-gcm', 'scrypt', KDF.N, KDF.r, KDF.p, SALT.toString('base64')],
    )
    assert.equal(KDF.N, 1 << 17, "OWASP's floor for scrypt")
    assert.equal(Buffer.from(e.iv as string, 'base64').length, 12)
    assert.equal(Buffer.from(e.tag as string, 'base64').length, 16)
    assert.ok(!sealed.includes(der(key).subarray(-32).toString('base64')))
    // two seals of one key differ (a fresh IV each time), and both open
    const again = await sealPrivateKey(key, PASSWORD, SALT)
    assert.notEqual(JSON.parse(again).iv, e.iv)
    assert.deepEqual(der(await openPrivateKey(again, PASSWORD)), der(key))
    await assert.rejects(sealPrivateKey(key, ''), TypeError)
  })

  it('a file sealed by an earlier sshca still opens (the format, the associated data and the scrypt cost are fixed)', async () => {
    // sealed once with this password, salt 0x07 × 16 and a random IV; the key is a fixed ed25519 key
    const file = {
      format: 'sshca-encrypted-key',
      version: 1,
      kdf: {name: 'scrypt', N: 131072, r: 8, p: 1, salt: 'BwcHBwcHBwcHBwcHBwcHBw=='},
      cipher: 'aes-256-gcm',
      iv: 'w3sozKrLs8RDo1of',
      tag: 'EQKIXMr6K0PIEplfmOcQfQ==',
      ciphertext: 'x+NMf4vvQuSSjeQAY7ldTsULE17uZUSR52iYdwHUmeJ6VVHSogOmtFEnFb/YvCDX',
    }
    const opened = await openPrivateKey(JSON.stringify(file), PASSWORD)
    assert.equal(der(opened).toString('base64'), 'MC4CAQAwBQYDK2VwBCIEIJ+qHiD+VOTt0vwCVWiumd9TDxTp7YnS8wReC6bWo1vO')
  })

  it('a salt of its own when none is given: two seals of one key with one password use two salts, and each opens', async () => {
    const [a, b] = [await sealPrivateKey(key, PASSWORD), await sealPrivateKey(key, PASSWORD)]
    const salt = (t: string) => (JSON.parse(t) as {kdf: {salt: string}}).kdf.salt
    assert.notEqual(salt(a), salt(b))
    assert.equal(Buffer.from(salt(a), 'base64').length, 16)
    assert.deepEqual(der(await openPrivateKey(a, PASSWORD)), der(key))
  })

  it('a wrong password, or any altered ciphertext, tag or IV byte: ERR_CA_PASSWORD, never a key', async () => {
    await rejectsCode(openPrivateKey(sealed, `${PASSWORD}!`), 'ERR_CA_PASSWORD')
    for (const field of ['ciphertext', 'tag', 'iv'] as const) {
      const e = env()
      const b = Buffer.from(e[field] as string, 'base64')
      b[0]! ^= 1
      e[field] = b.toString('base64')
      await rejectsCode(openPrivateKey(JSON.stringify(e), PASSWORD), 'ERR_CA_PASSWORD', {}, undefined)
    }
    // the salt is part of the key: the same file with another salt does not open
    const e = env()
    e.kdf = {...e.kdf, salt: Buffer.alloc(16, 8).toString('base64')}
    await rejectsCode(openPrivateKey(JSON.stringify(e), PASSWORD), 'ERR_CA_PASSWORD')
  })

  it('a tag cut short (GCM would check fewer bytes, easier to forge) or an IV of another length is refused before decrypting', async () => {
    for (const [field, len] of [
      ['tag', 12],
      ['tag', 4],
      ['iv', 16],
      ['iv', 0],
    ] as const) {
      const e = env()
      e[field] = Buffer.from(e[field] as string, 'base64')
        .subarray(0, len)
        .toString('base64')
      if (len > 12) e[field] = Buffer.alloc(len, 1).toString('base64')
      await rejectsCode(openPrivateKey(JSON.stringify(e), PASSWORD), 'ERR_INPUT')
    }
    const e = env()
    delete e.tag
    await rejectsCode(openPrivateKey(JSON.stringify(e), PASSWORD), 'ERR_INPUT')
  })

  it('another format, version, KDF or cipher, or no JSON at all: ERR_INPUT', async () => {
    await rejectsCode(openPrivateKey('-----BEGIN PRIVATE KEY-----', PASSWORD), 'ERR_INPUT')
    for (const change of [
      {format: 'other'},
      {version: 2},
      {cipher: 'aes-128-gcm'},
      {kdf: {...env().kdf, name: 'pbkdf2'}},
      {kdf: undefined},
    ])
      await rejectsCode(openPrivateKey(JSON.stringify({...env(), ...change}), PASSWORD), 'ERR_INPUT')
  })

  it('a crafted cost (gigabytes of memory, minutes of work, or nonsense) is refused before any derivation', async () => {
    assert.equal(reasonableKdf(KDF), true)
    // up to twice the memory (256 MiB) and four times the work of what sshca writes
    assert.equal(reasonableKdf({N: 1 << 18, r: 8, p: 1}), true)
    assert.equal(reasonableKdf({N: 1 << 17, r: 8, p: 4}), true)
    assert.equal(reasonableKdf({N: 1 << 16, r: 16, p: 2}), true)
    for (const k of [
      // what the old bound let a crafted backup header ask for: 4 GiB and ~500 times the work
      {N: 1 << 20, r: 32, p: 16},
      {N: 1 << 19, r: 8, p: 1},
      {N: 1 << 17, r: 17, p: 1},
      {N: 1 << 17, r: 8, p: 5},
      {N: (1 << 20) + 1, r: 8, p: 1},
      {N: 1 << 17, r: 33, p: 1},
      {N: 1 << 17, r: 8, p: 17},
      {N: 0, r: 8, p: 1},
      {N: 1 << 17, r: 0, p: 1},
      {N: 1 << 17, r: 8, p: 0},
      {N: 1.5, r: 8, p: 1},
      {N: '131072', r: 8, p: 1},
      {r: 8, p: 1},
    ])
      assert.equal(reasonableKdf(k), false, JSON.stringify(k))
    const e = env()
    e.kdf = {...e.kdf, N: 1 << 30}
    await rejectsCode(openPrivateKey(JSON.stringify(e), PASSWORD), 'ERR_INPUT')
  })

  it('derived keys are cached per password, salt and cost (one CA opens its keys with one scrypt)', async () => {
    const cheap = {N: 1 << 10, r: 8, p: 1}
    const a = deriveKey('password one!', SALT, cheap)
    assert.equal(deriveKey('password one!', SALT, cheap), a)
    assert.notEqual(deriveKey('password two!', SALT, cheap), a)
    assert.notEqual(deriveKey('password one!', Buffer.alloc(16, 9), cheap), a)
    assert.notEqual(deriveKey('password one!', SALT, {...cheap, r: 4}), a)
    assert.equal((await a).length, 32)
    assert.notDeepEqual(await a, await deriveKey('password two!', SALT, cheap))
  })

  it('key files: written 0600, read only when private', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sshca-keystore-'))
    const path = join(dir, 'user_ca_key')
    await writeSealedKey(path, key, PASSWORD, SALT)
    assert.deepEqual(der(await readSealedKey(path, PASSWORD)), der(key))
    chmodSync(path, 0o640)
    await rejectsCode(readSealedKey(path, PASSWORD), 'ERR_FILE_PERMISSIONS')
  })
})

describe('CA passwords', () => {
  it(`at least ${MIN_PASSWORD_LENGTH} characters, counted as characters, not bytes`, () => {
    assert.equal(passwordProblem('x'.repeat(MIN_PASSWORD_LENGTH)), undefined)
    assert.match(passwordProblem('x'.repeat(MIN_PASSWORD_LENGTH - 1))!, /at least 12/)
    // 11 emoji are 44 bytes and still too short
    assert.ok(passwordProblem('🔑'.repeat(MIN_PASSWORD_LENGTH - 1)))
  })

  it('a password file: its first line, private, not empty, long enough; each refusal ERR_CA_PASSWORD', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sshca-pw-'))
    const file = (name: string, text: string, mode = 0o600) => {
      const p = join(dir, name)
      writeFileSync(p, text, {mode})
      chmodSync(p, mode)
      return p
    }
    assert.equal(await readPasswordFile(file('ok', `${PASSWORD}\r\nsecond line\n`)), PASSWORD)
    assert.equal(await readPasswordFile(file('bare', PASSWORD)), PASSWORD)
    await rejectsCode(readPasswordFile(join(dir, 'missing')), 'ERR_CA_PASSWORD')
    await rejectsCode(readPasswordFile(file('empty', '\nsecond line long enough\n')), 'ERR_CA_PASSWORD')
    await rejectsCode(readPasswordFile(file('short', 'short\n')), 'ERR_CA_PASSWORD')
    await rejectsCode(readPasswordFile(file('shared', `${PASSWORD}\n`, 0o640)), 'ERR_FILE_PERMISSIONS')
    await rejectsCode(readPasswordFile(dir), 'ERR_CA_PASSWORD')
  })
})
