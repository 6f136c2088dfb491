/**
 * CA private keys at rest: PKCS#8 DER sealed with AES-256-GCM under a key derived from the CA
 * password with scrypt, in a small self-describing JSON envelope. PKCS#8's own PEM encryption in
 * node uses PBKDF2 with 2048 iterations, too cheap against offline guessing; step-ca uses JWE.
 */
import {createCipheriv, createDecipheriv, createPrivateKey, randomBytes, scrypt, type KeyObject} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {promisify} from 'node:util'
import {SshcaError} from '../errors.ts'
import {assertPrivateFile, writeFileAtomic} from '../util/fs.ts'

const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, keylen: number, options: {N: number; r: number; p: number; maxmem: number}) => Promise<Buffer>
const AAD = Buffer.from('sshca encrypted private key v1')

interface Envelope {
  format: 'sshca-encrypted-key'
  version: 1
  kdf: {name: 'scrypt'; N: number; r: number; p: number; salt: string}
  cipher: 'aes-256-gcm'
  iv: string
  tag: string
  ciphertext: string
}

/** scrypt cost: 2^15 × 8 × 128 bytes = 32 MiB and ~60 ms per key on a laptop. */
const KDF = {N: 1 << 15, r: 8, p: 1}

async function deriveKey(password: string, salt: Buffer, kdf: {N: number; r: number; p: number}): Promise<Buffer> {
  return scryptAsync(password, salt, 32, {...kdf, maxmem: 256 * kdf.N * kdf.r})
}

export async function sealPrivateKey(key: KeyObject, password: string): Promise<string> {
  if (!password) throw new TypeError('a password is required to seal a key')
  const salt = randomBytes(16)
  const iv = randomBytes(12)
  const k = await deriveKey(password, salt, KDF)
  const cipher = createCipheriv('aes-256-gcm', k, iv)
  cipher.setAAD(AAD)
  const der = key.export({type: 'pkcs8', format: 'der'})
  const ciphertext = Buffer.concat([cipher.update(der), cipher.final()])
  const env: Envelope = {
    format: 'sshca-encrypted-key',
    version: 1,
    kdf: {name: 'scrypt', ...KDF, salt: salt.toString('base64')},
    cipher: 'aes-256-gcm',
    iv: iv.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
    ciphertext: ciphertext.toString('base64'),
  }
  return `${JSON.stringify(env, null, 2)}\n`
}

export async function openPrivateKey(text: string, password: string, what = 'key'): Promise<KeyObject> {
  let env: Envelope
  try {
    env = JSON.parse(text) as Envelope
  } catch (err) {
    throw new SshcaError('ERR_INPUT', `${what} is not an sshca encrypted key file`, {cause: err})
  }
  if (env.format !== 'sshca-encrypted-key' || env.version !== 1 || env.kdf?.name !== 'scrypt' || env.cipher !== 'aes-256-gcm') {
    throw new SshcaError('ERR_INPUT', `${what} is not an sshca encrypted key file (or a newer version)`)
  }
  const {N, r, p} = env.kdf
  if (![N, r, p].every((x) => Number.isSafeInteger(x) && x > 0) || N > 1 << 20 || r > 32 || p > 16) {
    throw new SshcaError('ERR_INPUT', `${what} asks for unreasonable scrypt parameters`)
  }
  const k = await deriveKey(password, Buffer.from(env.kdf.salt, 'base64'), {N, r, p})
  const decipher = createDecipheriv('aes-256-gcm', k, Buffer.from(env.iv, 'base64'))
  decipher.setAAD(AAD)
  decipher.setAuthTag(Buffer.from(env.tag, 'base64'))
  let der: Buffer
  try {
    der = Buffer.concat([decipher.update(Buffer.from(env.ciphertext, 'base64')), decipher.final()])
  } catch {
    throw new SshcaError('ERR_CA_PASSWORD', `cannot open ${what}: wrong password (or the file was altered)`, {
      hint: 'check --password-file; it must hold the password given to `sshca ca init`',
    })
  }
  return createPrivateKey({key: der, format: 'der', type: 'pkcs8'})
}

export async function writeSealedKey(path: string, key: KeyObject, password: string): Promise<void> {
  await writeFileAtomic(path, await sealPrivateKey(key, password), 0o600)
}

export async function readSealedKey(path: string, password: string): Promise<KeyObject> {
  await assertPrivateFile(path)
  return openPrivateKey(await readFile(path, 'utf8'), password, path)
}

/** Reads a password file: the first line, without its newline. */
export async function readPasswordFile(path: string): Promise<string> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new SshcaError('ERR_CA_PASSWORD', `cannot read the password file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {cause: err})
  }
  const password = text.split(/\r?\n/)[0] ?? ''
  if (password === '') throw new SshcaError('ERR_CA_PASSWORD', `the password file ${path} is empty`)
  return password
}
