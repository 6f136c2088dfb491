/**
 * The signer registry (step-ca's kms registry): a key reference from the manifest (keyring.ts) →
 * a Signer, whatever holds the key. Two backends:
 *   file    a sealed PKCS#8 file under secrets/ (keystore.ts), opened with the CA password into memory;
 *   pkcs11  an object in a PKCS#11 token (pkcs11.ts, loaded only when used): the private key is
 *           generated in the token, never extractable, and every signature is the token's.
 * A backend makes keys too (ca init, ca rotate prepare), so rotation works the same on both.
 */
import {readFile, rm} from 'node:fs/promises'
import {basename, dirname, isAbsolute, join, resolve} from 'node:path'
import {SshcaError} from '../../errors.ts'
import type {PublicKey} from '../../ssh/keys.ts'
import {generatePrivateKey} from '../../ssh/private-key.ts'
import {keySigner, type Signer} from '../../ssh/signature.ts'
import {assertPrivateFile, exists} from '../../util/fs.ts'
import {caPaths} from '../config/layout.ts'
import type {Kms} from '../config/kms.ts'
import type {KeyBackend} from './backend.ts'
import type {CaKeyKind, KeyRef} from './keyring.ts'
import {openPrivateKey, readSealedKey, writeSealedKey} from './keystore.ts'

export interface KeyStoreContext {
  /** The CA directory (file references are relative to it). */
  dir: string
  /** The CA password: opens sealed files. */
  password: string
  /** Where new keys are made, and the token pkcs11 references live in. */
  kms: Kms
}

export type {KeyBackend} from './backend.ts'

export type BackendFactory = (ctx: KeyStoreContext) => Promise<KeyBackend>

/** The file backend: sealed PKCS#8 under secrets/, ed25519 keys. */
export const fileBackend: BackendFactory = async (ctx) => ({
  async create(kind, id) {
    const key = generatePrivateKey('ed25519')
    const rel = join('secrets', `ssh_${kind}_ca.${id}.key`)
    const path = join(ctx.dir, rel)
    if (await exists(path)) throw new SshcaError('ERR_FILE_EXISTS', `${path} already exists`)
    // the salt of the keys sealed at init: `ca serve` then opens all of them with one derivation
    await writeSealedKey(path, key.keyObject, ctx.password, await caSalt(ctx.dir, ctx.password))
    return {ref: {type: 'file', path: rel}, publicKey: key.publicKey}
  },
  async open(ref) {
    if (ref.type !== 'file') throw new TypeError(`the file backend cannot open a ${ref.type} key`)
    return keySigner(await readSealedKey(isAbsolute(ref.path) ? ref.path : join(ctx.dir, ref.path), ctx.password))
  },
  async destroy(ref) {
    if (ref.type !== 'file') throw new TypeError(`the file backend cannot destroy a ${ref.type} key`)
    // only an SSH CA key file of the CA's secrets folder, whatever the manifest says: never a file
    // elsewhere, nor the root, intermediate, TLS or enrollment keys beside them
    const path = resolve(ctx.dir, ref.path)
    if (
      dirname(path) !== resolve(ctx.dir, 'secrets') ||
      !/^ssh_(user|host)_ca(\.[A-Za-z0-9-]+)?\.key$/.test(basename(path))
    )
      throw new SshcaError(
        'ERR_KEY_STORE',
        `${path} is not an SSH CA key of the CA's secrets folder: remove it yourself`,
      )
    await rm(path, {force: true})
  },
  async close() {},
})

/**
 * The salt the CA's keys were sealed with at init, taken only from an enrollment key that opens with
 * `password`: a password that is not the CA's (a typo) would otherwise seal a key no `ca serve` can
 * open, and a salt planted by someone who can write the CA directory but lacks the password would be
 * used for the next key. No enrollment key (a directory that is not a whole CA): a fresh salt.
 */
async function caSalt(dir: string, password: string): Promise<Buffer | undefined> {
  const path = caPaths(dir).enrollmentKey
  if (!(await exists(path))) return undefined
  await assertPrivateFile(path)
  // one reading: the salt returned is the salt of the file that opened
  const text = await readFile(path, 'utf8')
  await openPrivateKey(text, password, path)
  return Buffer.from((JSON.parse(text) as {kdf: {salt: string}}).kdf.salt, 'base64')
}

const BACKENDS: Record<KeyRef['type'], BackendFactory> = {
  file: fileBackend,
  pkcs11: async (ctx) => {
    if (ctx.kms.type !== 'pkcs11') {
      throw new SshcaError('ERR_CA_CONFIG', 'a CA key lives in a PKCS#11 token, but keys.kms in ca.yaml names none', {
        hint: "set keys.kms to the token's pkcs11: URI",
      })
    }
    const {pkcs11Backend} = await import('./pkcs11.ts')
    return pkcs11Backend(ctx.kms)
  },
}

/**
 * Opens signers by reference and makes new keys where ca.yaml says (`keys.kms`). Backends are
 * started on first use and shared (one PKCS#11 module and login for every key in the token).
 */
export class SignerRegistry {
  private readonly ctx: KeyStoreContext
  private readonly started = new Map<KeyRef['type'], Promise<KeyBackend>>()
  private readonly factories: Record<KeyRef['type'], BackendFactory>

  constructor(ctx: KeyStoreContext, factories: Partial<Record<KeyRef['type'], BackendFactory>> = {}) {
    this.ctx = ctx
    this.factories = {...BACKENDS, ...factories}
  }

  private backend(type: KeyRef['type']): Promise<KeyBackend> {
    let b = this.started.get(type)
    if (!b) {
      b = this.factories[type](this.ctx)
      b.catch(() => this.started.delete(type))
      this.started.set(type, b)
    }
    return b
  }

  async open(ref: KeyRef): Promise<Signer> {
    return (await this.backend(ref.type)).open(ref)
  }

  /** Removes the key `ref` names from its store for good (a retired key). */
  async destroy(ref: KeyRef): Promise<void> {
    return (await this.backend(ref.type)).destroy(ref)
  }

  /** A new key in the configured key store. */
  async create(kind: CaKeyKind, id: string): Promise<{ref: KeyRef; publicKey: PublicKey}> {
    return (await this.backend(this.ctx.kms.type)).create(kind, id)
  }

  async close(): Promise<void> {
    const all = [...this.started.values()]
    this.started.clear()
    await Promise.all(all.map(async (b) => (await b.catch(() => undefined))?.close()))
  }
}
