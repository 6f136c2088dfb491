/**
 * CA private keys at rest: PKCS#8 DER sealed with AES-256-GCM under a key derived from the CA
 * password with scrypt, in a small self-describing JSON envelope. PKCS#8's own PEM encryption in
 * node uses PBKDF2 with 2048 iterations, too cheap against offline guessing; step-ca uses JWE.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  randomBytes,
  scrypt,
  type KeyObject,
} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {promisify} from 'node:util'
import {SshcaError} from '../../errors.ts'
import {assertPrivateFile, writeFileAtomic} from '../../util/fs.ts'

const scryptAsync = promisify(scrypt) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: {N: number; r: number; p: number; maxmem: number},
) => Promise<Buffer>
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

/** scrypt cost: 2^17 × 8 × 128 bytes = 128 MiB and ~0.3 s on this class of machine (OWASP's floor). */
export const KDF = {N: 1 << 17, r: 8, p: 1}
export const MIN_PASSWORD_LENGTH = 12
const TAG_LENGTH = 16
const IV_LENGTH = 12

/**
 * Derived keys by (password, salt, cost), for the life of the process: the keys of one CA share a
 * salt (ca init), so opening all of them costs one scrypt. The CA holds the private keys themselves in
 * memory anyway; this holds nothing more valuable.
 */
const derived = new Map<string, Promise<Buffer>>()

export function deriveKey(password: string, salt: Buffer, kdf: {N: number; r: number; p: number}): Promise<Buffer> {
  const id = createHash('sha256')
    .update(JSON.stringify([password, salt.toString('base64'), kdf.N, kdf.r, kdf.p]))
    .digest('base64')
  let k = derived.get(id)
  if (!k) {
    k = scryptAsync(password, salt, 32, {...kdf, maxmem: 256 * kdf.N * kdf.r})
    // Stryker disable next-line ArrowFunction: a derivation that failed fails again with the same arguments; this only frees the entry
    k.catch(() => derived.delete(id))
    derived.set(id, k)
  }
  return k
}

/**
 * scrypt parameters a file may ask for, checked before any derivation (a backup's header is
 * authenticated only by the key they derive): at most twice the memory sshca asks for (128·N·r bytes,
 * 256 MiB) and four times its work (N·r·p), so a crafted file cannot make us spend gigabytes or minutes.
 */
export function reasonableKdf(k: {N?: unknown; r?: unknown; p?: unknown}): k is {N: number; r: number; p: number} {
  const {N, r, p} = k
  if (![N, r, p].every((x) => Number.isSafeInteger(x) && (x as number) > 0)) return false
  const [n, rr, pp] = [N, r, p] as number[]
  return 128 * n! * rr! <= 2 * 128 * KDF.N * KDF.r && n! * rr! * pp! <= 4 * KDF.N * KDF.r * KDF.p
}

/** A salt for a set of keys sealed together (one CA's keys): they then open with one derivation. */
export const newSalt = (): Buffer => randomBytes(16)

export async function sealPrivateKey(key: KeyObject, password: string, salt: Buffer = newSalt()): Promise<string> {
  if (!password) throw new TypeError('a password is required to seal a key')
  const iv = randomBytes(IV_LENGTH)
  const k = await deriveKey(password, salt, KDF)
  // Stryker disable next-line ObjectLiteral: 16 bytes is GCM's default tag length in node; said here for the reader
  const cipher = createCipheriv('aes-256-gcm', k, iv, {authTagLength: TAG_LENGTH})
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
    // Stryker disable next-line ObjectLiteral: the cause is for a person reading the error
    throw new SshcaError('ERR_INPUT', `${what} is not an sshca encrypted key file`, {cause: err})
  }
  if (
    env.format !== 'sshca-encrypted-key' ||
    env.version !== 1 ||
    env.kdf?.name !== 'scrypt' ||
    env.cipher !== 'aes-256-gcm'
  ) {
    throw new SshcaError('ERR_INPUT', `${what} is not an sshca encrypted key file (or a newer version)`)
  }
  const {N, r, p} = env.kdf
  if (!reasonableKdf(env.kdf)) throw new SshcaError('ERR_INPUT', `${what} asks for unreasonable scrypt parameters`)
  // Stryker disable next-line StringLiteral: any stand-in for a missing field fails the length test below
  const iv = Buffer.from(env.iv ?? '', 'base64')
  // Stryker disable next-line StringLiteral: any stand-in for a missing field fails the length test below
  const tag = Buffer.from(env.tag ?? '', 'base64')
  // a shorter tag would be accepted by GCM and is easier to forge: only the full 16 bytes
  if (iv.length !== IV_LENGTH || tag.length !== TAG_LENGTH)
    throw new SshcaError('ERR_INPUT', `${what} is not an sshca encrypted key file (bad IV or tag length)`)
  const k = await deriveKey(password, Buffer.from(env.kdf.salt, 'base64'), {N, r, p})
  // Stryker disable next-line ObjectLiteral: the tag's length was checked above, so GCM never sees a shorter one
  const decipher = createDecipheriv('aes-256-gcm', k, iv, {authTagLength: TAG_LENGTH})
  decipher.setAAD(AAD)
  decipher.setAuthTag(tag)
  let der: Buffer
  try {
    der = Buffer.concat([decipher.update(Buffer.from(env.ciphertext, 'base64')), decipher.final()])
  } catch {
    throw new SshcaError('ERR_CA_PASSWORD', `cannot open ${what}: wrong password (or the file was altered)`, {
      hint: 'use the password given to `sshca ca init` (on the first line of the password file, if you give one)',
    })
  }
  return createPrivateKey({key: der, format: 'der', type: 'pkcs8'})
}

export async function writeSealedKey(path: string, key: KeyObject, password: string, salt?: Buffer): Promise<void> {
  await writeFileAtomic(path, await sealPrivateKey(key, password, salt), 0o600)
}

export async function readSealedKey(path: string, password: string): Promise<KeyObject> {
  await assertPrivateFile(path)
  // Stryker disable next-line StringLiteral: the path only names the file in messages
  return openPrivateKey(await readFile(path, 'utf8'), password, path)
}

/** The rules every CA password obeys, typed or from a file: undefined when it is acceptable. */
export function passwordProblem(password: string): string | undefined {
  if ([...password].length < MIN_PASSWORD_LENGTH)
    return `the CA password must have at least ${MIN_PASSWORD_LENGTH} characters`
  return undefined
}

/**
 * Reads a password file: the first line, without its newline. The file must be private (no group or
 * other access) and the password as long as a typed one.
 */
export async function readPasswordFile(path: string): Promise<string> {
  let text: string
  try {
    await assertPrivateFile(path)
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (err instanceof SshcaError) throw err
    const code = (err as NodeJS.ErrnoException).code
    // Stryker disable next-line all: both refusals are ERR_CA_PASSWORD; a missing file only gets other words and a hint
    if (code === 'ENOENT') {
      // Stryker disable next-line ObjectLiteral: the cause and the hint are for a person
      throw new SshcaError('ERR_CA_PASSWORD', `the password file ${path} does not exist`, {
        cause: err,
        hint: `create ${path} with the CA password (${MIN_PASSWORD_LENGTH}+ characters) on its first line, mode 0600: (umask 077; cat > ${path})`,
      })
    }
    throw new SshcaError(
      'ERR_CA_PASSWORD',
      `cannot read the password file ${path}: ${code ?? (err as Error).message}`,
      // Stryker disable next-line ObjectLiteral: the cause is for a person reading the error
      {cause: err},
    )
  }
  // Stryker disable next-line StringLiteral: split always yields a first element
  const password = text.split(/\r?\n/)[0] ?? ''
  // Stryker disable next-line ConditionalExpression,StringLiteral: an empty line is refused as too short too (ERR_CA_PASSWORD); this only says so plainly
  if (password === '')
    throw new SshcaError('ERR_CA_PASSWORD', `the password file ${path} is empty`, {
      hint: `put the CA password on its first line`,
    })
  const problem = passwordProblem(password)
  if (problem)
    throw new SshcaError('ERR_CA_PASSWORD', `${problem}; the first line of ${path} has ${[...password].length}`)
  return password
}
