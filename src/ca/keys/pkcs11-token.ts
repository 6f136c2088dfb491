/**
 * The process that talks to one PKCS#11 token for the CA: src/ca/keys/pkcs11.ts starts it (node's
 * fork, a private IPC channel) and sends it operations, a few ahead of their answers; it runs them one
 * at a time, in the order they came, and answers each in that order. It loads the module, opens a
 * session, logs in, and answers each message with the token's result, calling the module
 * synchronously: nothing else runs here.
 *
 * Why a process of its own: the module's calls block the thread that makes them, and a token that
 * stops answering (a network HSM whose link dropped, a wedged daemon) never returns from one. In the
 * CA's event loop that froze everything (TLS, /health, signals: only kill -9 stopped it). Here the CA
 * gives up on an answer after keys.timeout, kills this process (a kill ends it in any call) and starts
 * another for the next operation: the token's hang costs a 503 per signing request, not the CA.
 *
 * Messages, CA -> here: {id, op, args} with op 'init' (module, token, pin: first, once), 'create',
 * 'find', 'sign', 'destroy', 'close'. Here -> CA: {id, value} or {id, error: {message, hint?, pinRefused?}}. The
 * PIN comes by that channel, never argv or the environment.
 */
import {createRequire} from 'node:module'
import {Worker} from 'node:worker_threads'
import type * as Pkcs11Js from 'pkcs11js'

/** How often the watchdog looks whether the CA's process is still this one's parent (ms). */
const WATCHDOG_MS = 250

// The channel's end (the CA exited or was killed) ends this process, but only between two calls: in a
// module's call that never returns (the token hangs) nothing runs on this thread, and the process
// outlived the CA for ever, logged in, holding the PIN and the token's session. A thread of its own
// ends it once its parent is no longer the CA's process (argv[2]: it may be gone before this line runs).
// No operation runs before it says it watches: a call blocking this thread must find it started.
const watchdog = new Worker(
  `const ppid = ${Number(process.argv[2]) || process.ppid}
  setInterval(() => { if (process.ppid !== ppid) process.kill(process.pid, 'SIGKILL') }, ${WATCHDOG_MS})
  require('node:worker_threads').parentPort.postMessage('watching')`,
  {eval: true, stdout: false, stderr: false},
)
watchdog.unref()
const watching = new Promise<void>((resolve) => {
  watchdog.once('message', () => resolve())
  // a thread that cannot start: the operations run without it, as they did before it
  watchdog.once('error', () => resolve())
})

type Lib = typeof Pkcs11Js

// a CommonJS native addon, loaded synchronously on the first operation (the package check reads this name)
const require = createRequire(import.meta.url)
type Handle = Buffer

/** A refusal of ours (not the module's): said as it is, never retried on a new session. */
class Refusal extends Error {
  readonly hint: string | undefined
  /** The token refused the PIN: logging in again with it only counts towards locking the PIN. */
  readonly pinRefused: boolean
  constructor(message: string, hint?: string, pinRefused = false) {
    super(message)
    this.hint = hint
    this.pinRefused = pinRefused
  }
}

const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex')

interface Init {
  module: string
  token: string
  pin: string
}

let lib: Lib
let p11: Pkcs11Js.PKCS11
let init: Init
let session: Handle | undefined

function load(o: Init): void {
  init = o
  try {
    lib = require('pkcs11js') as Lib
  } catch {
    throw new Refusal(
      'keys.kms names a PKCS#11 token, but the pkcs11js module is not installed',
      'npm install pkcs11js (it builds with node-gyp: python3, make and a C++ compiler)',
    )
  }
  p11 = new lib.PKCS11()
  try {
    p11.load(o.module)
  } catch (err) {
    throw new Refusal(`cannot load the module ${o.module}: ${(err as Error).message}`)
  }
  try {
    // the module may use threads of its own (a network HSM's client does): it locks with the OS's
    // primitives. A module that cannot is initialized without: this process calls it from one thread
    p11.C_Initialize({flags: lib.CKF_OS_LOCKING_OK})
  } catch (err) {
    if ((err as {code?: number}).code !== lib.CKR_CANT_LOCK) throw err
    p11.C_Initialize()
  }
  session = open()
}

/** The token refused the PIN once: this process never logs in with it again (an HSM locks a PIN after a few failures). */
let pinRefusal: Refusal | undefined

function open(): Handle {
  if (pinRefusal) throw pinRefusal
  let slot: Handle | undefined
  try {
    slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === init.token)
  } catch (err) {
    throw new Refusal(`cannot list the tokens: ${(err as Error).message}`)
  }
  if (!slot)
    throw new Refusal(
      `no token labelled "${init.token}" in ${init.module}`,
      'check token= in keys.kms (softhsm2-util --show-slots lists them)',
    )
  try {
    const s = p11.C_OpenSession(slot, lib.CKF_SERIAL_SESSION | lib.CKF_RW_SESSION)
    try {
      p11.C_Login(s, lib.CKU_USER, init.pin)
    } catch (err) {
      // the login is the token's, shared by every session of the process
      if ((err as {code?: number}).code !== lib.CKR_USER_ALREADY_LOGGED_IN) {
        p11.C_CloseSession(s)
        throw err
      }
    }
    return s
  } catch (err) {
    const code = (err as {code?: number}).code
    const pin = [
      lib.CKR_PIN_INCORRECT,
      lib.CKR_PIN_INVALID,
      lib.CKR_PIN_LEN_RANGE,
      lib.CKR_PIN_EXPIRED,
      lib.CKR_PIN_LOCKED,
    ]
    const refusal = new Refusal(
      `cannot log in to token "${init.token}" (wrong PIN?): ${(err as Error).message}`,
      undefined,
      code !== undefined && pin.includes(code),
    )
    // a session lost and reopened (the HSM restarted) logs in again: with a PIN changed meanwhile, each
    // operation after it would be one more failed login, until the HSM locked the PIN
    if (refusal.pinRefused) pinRefusal = refusal
    throw refusal
  }
}

function drop(): void {
  if (session === undefined) return
  try {
    p11.C_CloseSession(session)
  } catch {
    // already gone with the token
  }
  session = undefined
}

/** `fn` with the session; a failure of the module's reopens the session once (the token removed and back, the HSM restarted). */
function withSession<T>(fn: (s: Handle) => T): T {
  session ??= open()
  try {
    return fn(session)
  } catch (first) {
    if (first instanceof Refusal) throw first
    drop()
    session = open()
    return fn(session)
  }
}

function find(s: Handle, cls: number, id: Buffer): Handle | undefined {
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

const pointOf = (s: Handle, pub: Handle): Buffer =>
  p11.C_GetAttributeValue(s, pub, [{type: lib.CKA_EC_POINT}])[0]!.value as Buffer

interface KeyArgs {
  label: string
  /** CKA_ID, hex. */
  id: string
}

const OPS = {
  init: (a: Init) => load(a),

  /** A P-256 pair made in the token: sensitive, never extractable. Returns its CKA_EC_POINT. */
  create(a: KeyArgs): Buffer {
    const id = Buffer.from(a.id, 'hex')
    return withSession((s) => {
      const keys = p11.C_GenerateKeyPair(
        s,
        {mechanism: lib.CKM_EC_KEY_PAIR_GEN},
        [
          {type: lib.CKA_TOKEN, value: true},
          {type: lib.CKA_VERIFY, value: true},
          {type: lib.CKA_EC_PARAMS, value: P256_PARAMS},
          {type: lib.CKA_LABEL, value: a.label},
          {type: lib.CKA_ID, value: id},
        ],
        [
          {type: lib.CKA_TOKEN, value: true},
          {type: lib.CKA_PRIVATE, value: true},
          {type: lib.CKA_SENSITIVE, value: true},
          {type: lib.CKA_EXTRACTABLE, value: false},
          {type: lib.CKA_SIGN, value: true},
          {type: lib.CKA_LABEL, value: a.label},
          {type: lib.CKA_ID, value: id},
        ],
      )
      return pointOf(s, keys.publicKey)
    })
  },

  /** The pair's CKA_EC_POINT; refused when either half is missing or the private half is extractable. */
  find(a: KeyArgs): Buffer {
    const id = Buffer.from(a.id, 'hex')
    return withSession((s) => {
      const pub = find(s, lib.CKO_PUBLIC_KEY, id)
      const priv = find(s, lib.CKO_PRIVATE_KEY, id)
      if (!pub || !priv)
        throw new Refusal(
          `token "${init.token}" has no key pair "${a.label}" (CKA_ID ${a.id})`,
          'is keys.kms naming the token the CA was made in?',
        )
      const [extractable] = p11.C_GetAttributeValue(s, priv, [{type: lib.CKA_EXTRACTABLE}])
      if (Buffer.isBuffer(extractable?.value) && extractable.value[0] !== 0)
        throw new Refusal(`key "${a.label}" is extractable; a CA key in a token must not be`)
      return pointOf(s, pub)
    })
  },

  /** CKM_ECDSA over `digest` (the CA computes the SHA-256): r || s. The private key's handle is looked up each time: handles do not survive a reopened session. */
  sign(a: KeyArgs & {digest: Uint8Array}): Buffer {
    const id = Buffer.from(a.id, 'hex')
    return withSession((s) => {
      const priv = find(s, lib.CKO_PRIVATE_KEY, id)
      if (!priv) throw new Refusal(`the key "${a.label}" is gone from token "${init.token}"`)
      p11.C_SignInit(s, {mechanism: lib.CKM_ECDSA}, priv)
      return p11.C_Sign(s, Buffer.from(a.digest), Buffer.alloc(64))
    })
  },

  /** Destroys the pair under CKA_ID `id` whose objects are labelled `label`, and nothing else. */
  destroy(a: KeyArgs): void {
    const id = Buffer.from(a.id, 'hex')
    withSession((s) => {
      for (const cls of [lib.CKO_PRIVATE_KEY, lib.CKO_PUBLIC_KEY]) {
        const h = find(s, cls, id)
        if (!h) continue
        const [label] = p11.C_GetAttributeValue(s, h, [{type: lib.CKA_LABEL}])
        if ((label?.value as Buffer | undefined)?.toString('utf8') !== a.label)
          throw new Refusal(
            `the object under CKA_ID ${a.id} in token "${init.token}" is not labelled "${a.label}"; nothing more was destroyed`,
          )
        p11.C_DestroyObject(s, h)
        // a token that answers yes and keeps the object: said, not looped on
        if (find(s, cls, id)) throw new Refusal(`token "${init.token}" kept "${a.label}" after destroying it`)
      }
    })
  },

  close(): void {
    drop()
    try {
      p11.C_Finalize()
    } catch {
      // finalizing a module that lost its token: nothing left to release
    }
  },
} as const

type Op = keyof typeof OPS

process.on('message', async (m: {id: number; op: Op; args: never}) => {
  await watching
  let reply: {id: number; value?: unknown; error?: {message: string; hint?: string; pinRefused?: true}}
  try {
    reply = {id: m.id, value: OPS[m.op](m.args)}
  } catch (err) {
    const e = err as Error & {hint?: string; pinRefused?: boolean}
    reply = {
      id: m.id,
      error: {
        message: e.message ?? String(err),
        ...(e.hint ? {hint: e.hint} : {}),
        ...(e.pinRefused ? {pinRefused: true} : {}),
      },
    }
  }
  // the channel is all that keeps this process running: closed after 'close', or by the CA's end (even
  // kill -9), this process ends
  process.send!(reply, () => {
    if (m.op === 'close') process.disconnect()
  })
})
