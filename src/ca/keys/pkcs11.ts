/**
 * CA keys in a PKCS#11 token (an HSM; SoftHSM in the tests) through pkcs11js, a maintained N-API
 * binding of the whole Cryptoki 2.40 interface (graphene-pk11 is a layer over it). Keys are ECDSA
 * P-256: every HSM has it (ed25519 is CKM_EC_EDWARDS in PKCS#11 3.0, which many tokens lack), and
 * OpenSSH takes ecdsa-sha2-nistp256 CA keys everywhere. A key is generated in the token with
 * CKA_SENSITIVE and not CKA_EXTRACTABLE: its private half never leaves it; the CA keeps a reference
 * (CKA_ID, random) and asks the token for each signature (CKM_ECDSA over a SHA-256 it computes).
 *
 * One module load and one logged-in session per process and token, shared by every key; signatures
 * are serialized on the session (a PKCS#11 session runs one operation at a time) and run on libuv's
 * pool (C_SignAsync), so the event loop never waits on the token. A lost session (token removed and
 * reinserted, the HSM restarted) is reopened once per signature before the signature fails.
 */
import {createHash, randomBytes} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import type * as Pkcs11Js from 'pkcs11js'
import {SshcaError} from '../../errors.ts'
import {PublicKey} from '../../ssh/keys.ts'
import {sshSignatureFromRaw, verifySignature, type Signer} from '../../ssh/signature.ts'
import {SshWriter} from '../../ssh/wire.ts'
import {assertPrivateFile} from '../../util/fs.ts'
import type {Pkcs11Kms} from '../config/kms.ts'
import type {CaKeyKind, KeyRef} from './keyring.ts'
import type {KeyBackend} from './backend.ts'

type Lib = typeof Pkcs11Js
type Handle = Buffer

/** DER of OID 1.2.840.10045.3.1.7 (P-256): CKA_EC_PARAMS. */
const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex')

function keyStoreError(what: string, err: unknown): SshcaError {
  const e = err as {message?: string; code?: number}
  return new SshcaError('ERR_KEY_STORE', `PKCS#11: ${what}: ${e.message ?? String(err)}`, {cause: err})
}

async function loadLib(): Promise<Lib> {
  try {
    const mod = (await import('pkcs11js')) as unknown as {default?: Lib} & Lib
    return mod.default ?? mod
  } catch (err) {
    throw new SshcaError('ERR_KEY_STORE', 'keys.kms names a PKCS#11 token, but the pkcs11js module is not installed', {
      cause: err,
      hint: 'npm install pkcs11js (it builds with node-gyp: python3, make and a C++ compiler)',
    })
  }
}

async function readPin(path: string): Promise<string> {
  try {
    await assertPrivateFile(path)
    const pin = (await readFile(path, 'utf8')).split(/\r?\n/)[0] ?? ''
    if (!pin) throw new Error('it is empty')
    return pin
  } catch (err) {
    if (err instanceof SshcaError) throw err
    throw new SshcaError('ERR_KEY_STORE', `cannot read the token PIN from ${path}: ${(err as Error).message}`, {
      cause: err,
      hint: 'pin-source=file:PATH names a 0600 file whose first line is the user PIN',
    })
  }
}

/** A loaded module, shared by every token session of the process (C_Initialize once per module). */
interface LoadedModule {
  lib: Lib
  p11: Pkcs11Js.PKCS11
  refs: number
}
const modules = new Map<string, Promise<LoadedModule>>()

async function acquireModule(path: string): Promise<LoadedModule> {
  let m = modules.get(path)
  if (!m) {
    m = (async () => {
      const lib = await loadLib()
      const p11 = new lib.PKCS11()
      try {
        p11.load(path)
        p11.C_Initialize()
      } catch (err) {
        throw keyStoreError(`cannot load the module ${path}`, err)
      }
      return {lib, p11, refs: 0}
    })()
    m.catch(() => modules.delete(path))
    modules.set(path, m)
  }
  const loaded = await m
  loaded.refs++
  return loaded
}

function releaseModule(path: string, loaded: LoadedModule): void {
  if (--loaded.refs > 0) return
  modules.delete(path)
  try {
    loaded.p11.C_Finalize()
    loaded.p11.close()
  } catch {
    // finalizing a module that lost its token: nothing left to release
  }
}

/** The token's session: opened and logged in lazily, reopened after a failure, one operation at a time. */
class TokenSession {
  private session: Handle | undefined
  private queue: Promise<unknown> = Promise.resolve()
  readonly m: LoadedModule
  private readonly kms: Pkcs11Kms
  private readonly pin: string

  constructor(m: LoadedModule, kms: Pkcs11Kms, pin: string) {
    this.m = m
    this.kms = kms
    this.pin = pin
  }

  private open(): Handle {
    const {lib, p11} = this.m
    let slot: Handle | undefined
    try {
      slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === this.kms.token)
    } catch (err) {
      throw keyStoreError('cannot list the tokens', err)
    }
    if (!slot)
      throw new SshcaError('ERR_KEY_STORE', `PKCS#11: no token labelled "${this.kms.token}" in ${this.kms.module}`, {
        hint: 'check token= in keys.kms (softhsm2-util --show-slots lists them)',
      })
    try {
      const session = p11.C_OpenSession(slot, lib.CKF_SERIAL_SESSION | lib.CKF_RW_SESSION)
      try {
        p11.C_Login(session, lib.CKU_USER, this.pin)
      } catch (err) {
        // the login is the token's, shared by every session of the process
        if ((err as {code?: number}).code !== lib.CKR_USER_ALREADY_LOGGED_IN) {
          p11.C_CloseSession(session)
          throw err
        }
      }
      return session
    } catch (err) {
      throw keyStoreError(`cannot log in to token "${this.kms.token}" (wrong PIN?)`, err)
    }
  }

  /** Runs `fn` with the session, after every earlier operation; reopens the session once on failure. */
  run<T>(what: string, fn: (s: Handle) => Promise<T> | T): Promise<T> {
    const job = this.queue.then(async () => {
      this.session ??= this.open()
      try {
        return await fn(this.session)
      } catch (first) {
        if (first instanceof SshcaError) throw first
        this.drop()
        try {
          this.session = this.open()
          return await fn(this.session)
        } catch (err) {
          this.drop()
          throw err instanceof SshcaError ? err : keyStoreError(what, err)
        }
      }
    })
    this.queue = job.catch(() => undefined)
    return job
  }

  private drop(): void {
    if (this.session === undefined) return
    try {
      this.m.p11.C_CloseSession(this.session)
    } catch {
      // already gone with the token
    }
    this.session = undefined
  }

  async close(): Promise<void> {
    await this.queue
    this.drop()
  }
}

/** CKA_EC_POINT is a DER OCTET STRING around the uncompressed point (some tokens give the point bare). */
function ecPoint(v: Buffer): Buffer {
  if (v.length === 67 && v[0] === 0x04 && v[1] === 0x41) return v.subarray(2)
  if (v.length === 65 && v[0] === 0x04) return v
  throw new SshcaError(
    'ERR_KEY_STORE',
    `PKCS#11: the token returned an EC point of ${v.length} bytes, not a P-256 point`,
  )
}

function p256PublicKey(point: Buffer): PublicKey {
  return PublicKey.fromBlob(new SshWriter().string('ecdsa-sha2-nistp256').string('nistp256').string(point).toBuffer())
}

export async function pkcs11Backend(kms: Pkcs11Kms): Promise<KeyBackend> {
  const pin = await readPin(kms.pinFile)
  const m = await acquireModule(kms.module)
  const token = new TokenSession(m, kms, pin)
  const {lib, p11} = m

  const find = (s: Handle, cls: number, id: Buffer): Handle | undefined => {
    p11.C_FindObjectsInit(s, [
      {type: lib.CKA_CLASS, value: cls},
      {type: lib.CKA_ID, value: id},
    ])
    try {
      return p11.C_FindObjects(s, 1)[0]
    } finally {
      p11.C_FindObjectsFinal(s)
    }
  }

  let closed = false
  return {
    async create(kind: CaKeyKind, id: string) {
      const ckaId = randomBytes(16)
      const label = `sshca ${kind} CA ${id}`
      const point = await token.run('generate a key pair', async (s) => {
        const keys = await p11.C_GenerateKeyPairAsync(
          s,
          {mechanism: lib.CKM_EC_KEY_PAIR_GEN},
          [
            {type: lib.CKA_TOKEN, value: true},
            {type: lib.CKA_VERIFY, value: true},
            {type: lib.CKA_EC_PARAMS, value: P256_PARAMS},
            {type: lib.CKA_LABEL, value: label},
            {type: lib.CKA_ID, value: ckaId},
          ],
          [
            {type: lib.CKA_TOKEN, value: true},
            {type: lib.CKA_PRIVATE, value: true},
            {type: lib.CKA_SENSITIVE, value: true},
            {type: lib.CKA_EXTRACTABLE, value: false},
            {type: lib.CKA_SIGN, value: true},
            {type: lib.CKA_LABEL, value: label},
            {type: lib.CKA_ID, value: ckaId},
          ],
        )
        const [attr] = p11.C_GetAttributeValue(s, keys.publicKey, [{type: lib.CKA_EC_POINT}])
        return ecPoint(attr!.value as Buffer)
      })
      const ref: KeyRef = {type: 'pkcs11', label, id: ckaId.toString('hex')}
      return {ref, publicKey: p256PublicKey(point)}
    },

    async open(ref: KeyRef): Promise<Signer> {
      if (ref.type !== 'pkcs11') throw new TypeError(`the pkcs11 backend cannot open a ${ref.type} key`)
      const id = Buffer.from(ref.id, 'hex')
      const located = await token.run(`find key ${ref.label}`, (s) => {
        const pub = find(s, lib.CKO_PUBLIC_KEY, id)
        const priv = find(s, lib.CKO_PRIVATE_KEY, id)
        if (!pub || !priv)
          throw new SshcaError(
            'ERR_KEY_STORE',
            `PKCS#11: token "${kms.token}" has no key pair "${ref.label}" (CKA_ID ${ref.id})`,
            {hint: 'is keys.kms naming the token the CA was made in?'},
          )
        const [point] = p11.C_GetAttributeValue(s, pub, [{type: lib.CKA_EC_POINT}])
        const [extractable] = p11.C_GetAttributeValue(s, priv, [{type: lib.CKA_EXTRACTABLE}])
        if (Buffer.isBuffer(extractable?.value) && extractable.value[0] !== 0) {
          throw new SshcaError(
            'ERR_KEY_STORE',
            `PKCS#11: key "${ref.label}" is extractable; a CA key in a token must not be`,
          )
        }
        return {point: ecPoint(point!.value as Buffer)}
      })
      const publicKey = p256PublicKey(located.point)
      return {
        publicKey,
        // the private key's handle is looked up per signature: handles do not survive a reopened session
        sign: (data) =>
          token.run(`sign with ${ref.label}`, async (s) => {
            const priv = find(s, lib.CKO_PRIVATE_KEY, id)
            if (!priv)
              throw new SshcaError('ERR_KEY_STORE', `PKCS#11: the key "${ref.label}" is gone from token "${kms.token}"`)
            p11.C_SignInit(s, {mechanism: lib.CKM_ECDSA}, priv)
            const raw = await p11.C_SignAsync(s, createHash('sha256').update(data).digest(), Buffer.alloc(64))
            const signature = sshSignatureFromRaw(publicKey, raw)
            // checked with the key the CA publishes before it leaves the CA: a faulty signature (a fault
            // in the token's arithmetic can give away an ECDSA key to whoever reads the signature) or
            // one by another key (a token whose objects were changed or mixed up) is never issued
            const check = verifySignature(publicKey, data, signature)
            if (!check.valid)
              throw new SshcaError(
                'ERR_KEY_STORE',
                `PKCS#11: token "${kms.token}" returned a signature for "${ref.label}" that its public key does not verify (${check.reason}); nothing was issued`,
                {hint: 'check the token (its health, its objects under this CKA_ID) before the CA signs again'},
              )
            return signature
          }),
      }
    },

    async destroy(ref) {
      if (ref.type !== 'pkcs11') throw new TypeError(`the PKCS#11 backend cannot destroy a ${ref.type} key`)
      // only the pair `create` made: its random 16-byte CKA_ID and its label, never objects another
      // application keeps under a short or empty ID a manifest edited by hand could name
      if (!/^[0-9a-f]{32}$/i.test(ref.id))
        throw new SshcaError('ERR_KEY_STORE', `PKCS#11: "${ref.id}" is not a CKA_ID sshca made; nothing was destroyed`)
      const id = Buffer.from(ref.id, 'hex')
      await token.run(`destroy ${ref.label}`, (s) => {
        for (const cls of [lib.CKO_PRIVATE_KEY, lib.CKO_PUBLIC_KEY]) {
          const h = find(s, cls, id)
          if (!h) continue
          const [label] = p11.C_GetAttributeValue(s, h, [{type: lib.CKA_LABEL}])
          if ((label?.value as Buffer | undefined)?.toString('utf8') !== ref.label)
            throw new SshcaError(
              'ERR_KEY_STORE',
              `PKCS#11: the object under CKA_ID ${ref.id} in token "${kms.token}" is not labelled "${ref.label}"; nothing more was destroyed`,
            )
          p11.C_DestroyObject(s, h)
          // a token that answers yes and keeps the object: said, not looped on
          if (find(s, cls, id))
            throw new SshcaError(
              'ERR_KEY_STORE',
              `PKCS#11: token "${kms.token}" kept "${ref.label}" after destroying it`,
            )
        }
      })
    },

    async close() {
      if (closed) return
      closed = true
      await token.close()
      releaseModule(kms.module, m)
    },
  }
}
