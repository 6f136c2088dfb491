/**
 * CA keys in a PKCS#11 token (an HSM; SoftHSM in the tests) through pkcs11js, a maintained N-API
 * binding of the whole Cryptoki 2.40 interface (graphene-pk11 is a layer over it). Keys are ECDSA
 * P-256: every HSM has it (ed25519 is CKM_EC_EDWARDS in PKCS#11 3.0, which many tokens lack), and
 * OpenSSH takes ecdsa-sha2-nistp256 CA keys everywhere. A key is generated in the token with
 * CKA_SENSITIVE and not CKA_EXTRACTABLE: its private half never leaves it; the CA keeps a reference
 * (CKA_ID, random) and asks the token for each signature (CKM_ECDSA over a SHA-256 it computes).
 *
 * The module is called in a process of its own (pkcs11-token.ts), one per backend, one logged-in
 * session there shared by every key, one operation at a time (a few sent ahead): a module's calls
 * block, and one that a token never answers must not freeze the CA. Each operation has keys.timeout
 * (ca.yaml, 10 s by default) from when the token's process gets to it; past it the operation fails
 * with ERR_KEY_STORE (a signing request: 503, nothing issued, no token spent), as does every one sent
 * or queued behind it, the process is killed, and the next operation starts another. A lost session
 * (token removed and reinserted, the HSM restarted) is reopened there once per operation before the
 * operation fails.
 */
import {fork, type ChildProcess} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {extname} from 'node:path'
import {isSea} from 'node:sea'
import {fileURLToPath} from 'node:url'
import {SshcaError} from '../../errors.ts'
import {PublicKey} from '../../ssh/keys.ts'
import {sshSignatureFromRaw, verifySignature, type Signer} from '../../ssh/signature.ts'
import {SshWriter} from '../../ssh/wire.ts'
import {assertPrivateFile} from '../../util/fs.ts'
import {DEFAULT_KEYS_TIMEOUT_SECONDS, type Pkcs11Kms} from '../config/kms.ts'
import type {CaKeyKind, KeyRef} from './keyring.ts'
import type {KeyBackend} from './backend.ts'

/** After a token process failed to start, the next start waits this long: failures answer at once meanwhile. */
const RESTART_PAUSE_MS = 1000

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

/** CKA_EC_POINT is a DER OCTET STRING around the uncompressed point (some tokens give the point bare). */
function ecPoint(v: Uint8Array): Buffer {
  const b = Buffer.from(v)
  if (b.length === 67 && b[0] === 0x04 && b[1] === 0x41) return b.subarray(2)
  if (b.length === 65 && b[0] === 0x04) return b
  throw new SshcaError(
    'ERR_KEY_STORE',
    `PKCS#11: the token returned an EC point of ${b.length} bytes, not a P-256 point`,
  )
}

function p256PublicKey(point: Buffer): PublicKey {
  return PublicKey.fromBlob(new SshWriter().string('ecdsa-sha2-nistp256').string('nistp256').string(point).toBuffer())
}

type Op = 'init' | 'create' | 'find' | 'sign' | 'destroy' | 'close'
type Answer = {id: number; value?: unknown; error?: {message: string; hint?: string; pinRefused?: true}}
interface Job {
  what: string
  op: Exclude<Op, 'init'>
  args: Record<string, unknown>
  resolve: (v: unknown) => void
  reject: (e: Error) => void
  /** When it was asked for (performance.now()): answered or failed within 2 × keys.timeout of it (its turn, then its answer). */
  at: number
  /** Its wait for its turn (keys.timeout); cleared once sent. */
  turn?: NodeJS.Timeout
}

/** An operation sent to the token's process, not yet answered. */
interface Sent {
  what: string
  op: Op
  child: ChildProcess
  /** Its caller's deadline: 2 × keys.timeout from when it was asked for (its turn, then its answer). */
  timer: NodeJS.Timeout
  settle: (a: Answer) => void
  /** Failed at that deadline while it still waited behind others in the token's process: its answer is dropped. */
  abandoned?: true
}

/** Whether `a` has the shape of the token script's answers: {id, value?: bytes} or {id, error: {message, hint?}}. */
function isAnswer(a: unknown): a is Answer {
  if (typeof a !== 'object' || a === null || Array.isArray(a)) return false
  const {id, value, error} = a as Record<string, unknown>
  if (!Number.isSafeInteger(id)) return false
  if (error === undefined) return value === undefined || value instanceof Uint8Array
  if (typeof error !== 'object' || error === null || value !== undefined) return false
  const {message, hint, pinRefused} = error as Record<string, unknown>
  return (
    typeof message === 'string' &&
    (hint === undefined || typeof hint === 'string') &&
    (pinRefused === undefined || pinRefused === true)
  )
}

/**
 * Operations sent to the token's process before the first of them is answered. The process runs
 * them one at a time, in order; the next is waiting in its channel when one ends, and the answers of
 * a few come back together, so the signatures, and the certificates they complete, reach the store's
 * group commit together rather than one per fsync (CONTRIBUTING.md, `npm run bench -- hsm`).
 */
const PIPELINE = 4

/**
 * The token's process, seen from the CA: started on first use; it runs one operation at a time, up
 * to PIPELINE of them sent ahead (fewer for a token too slow to answer them in time), the others
 * queued here. An operation waits at most keys.timeout for its turn to be sent, and is answered or
 * fails within 2 × keys.timeout of being asked for (a token slower than the requests: that one
 * fails, the token goes on; its answer, if it was sent, is dropped). The operation the token's
 * process runs has keys.timeout from when the process got to it (sent to it idle, or the answer
 * before it came back): a token that does not answer within it has its process killed, every
 * operation sent or queued fails with it, and the next one starts another process. An operation
 * waiting behind another in the token's process is not the token's hang: it never ends the process.
 */
class TokenProcess {
  /** The process that opened the token; undefined until one has, and once it ended or was killed. */
  private child: ChildProcess | undefined
  private starting = false
  private readonly queue: Job[] = []
  /** The operations sent to the token's process, not yet answered, by id, in the order sent. */
  private readonly inFlight = new Map<number, Sent>()
  /** The first of them, the one the token's process runs: since when, and the process's end past keys.timeout. */
  private front: {child: ChildProcess; since: number; timer: NodeJS.Timeout} | undefined
  /** How long the token ran the last operation it answered (ms): how far ahead operations are sent. */
  private lastRun = 0
  private seq = 0
  /** When the last start failed, and why: starts wait RESTART_PAUSE_MS after it. */
  private failed: {at: number; error: SshcaError} | undefined
  private readonly kms: Pkcs11Kms
  private readonly pin: string
  private readonly timeoutMs: number

  constructor(kms: Pkcs11Kms, pin: string) {
    this.kms = kms
    this.pin = pin
    this.timeoutMs = (kms.timeoutSeconds ?? DEFAULT_KEYS_TIMEOUT_SECONDS) * 1000
  }

  /** Runs `op` in the token's process, after the operations before it; `what` names it in errors. */
  call<T>(what: string, op: Job['op'], args: Record<string, unknown> = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const job: Job = {what, op, args, resolve: resolve as (v: unknown) => void, reject, at: performance.now()}
      job.turn = setTimeout(() => {
        this.queue.splice(this.queue.indexOf(job), 1)
        reject(
          this.error(
            what,
            `token "${this.kms.token}" did not get to it within ${this.timeoutMs / 1000}s (${this.queue.length + 1} operations were waiting)`,
            'the token is slower than the requests: a faster token, fewer signing requests, or a longer keys.timeout',
          ),
        )
      }, this.timeoutMs)
      this.queue.push(job)
      this.pump()
    })
  }

  private error(what: string, why: string, hint?: string): SshcaError {
    return new SshcaError('ERR_KEY_STORE', `PKCS#11: ${what}: ${why}`, hint ? {hint} : {})
  }

  /**
   * How many operations may be in the token's process at once: PIPELINE, fewer when the last one ran
   * so long that those sent behind it would wait past half of keys.timeout (one for a token that
   * takes half of it per operation: each then gets its turn as it did one at a time).
   */
  private depth(): number {
    return Math.max(1, Math.min(PIPELINE, Math.floor(this.timeoutMs / (2 * this.lastRun))))
  }

  /** Sends queued operations while fewer than depth() are in the token's process, starting one if none runs. */
  private pump(): void {
    if (this.starting || this.queue.length === 0) return
    // no process while none is starting: nothing was sent to one either (end() forgets what was)
    if (!this.child) return void this.start()
    while (this.child && this.inFlight.size < this.depth() && this.queue.length > 0) {
      const job = this.queue.shift()!
      clearTimeout(job.turn)
      this.send(
        this.child,
        job.what,
        job.op,
        job.args,
        (a) => {
          if (a.error) job.reject(this.error(job.what, a.error.message, a.error.hint))
          else job.resolve(a.value)
          this.pump()
        },
        job.at,
      )
    }
  }

  private send(
    child: ChildProcess,
    what: string,
    op: Op,
    args: Record<string, unknown>,
    settle: (a: Answer) => void,
    /** When its caller asked for it (performance.now()): its deadline is 2 × keys.timeout from then. */
    at = performance.now(),
  ): void {
    const id = ++this.seq
    // sent to a process with nothing to run: it runs this one from now
    if (this.inFlight.size === 0) this.runs(child)
    const timer = setTimeout(() => this.expire(id), Math.max(0, at + 2 * this.timeoutMs - performance.now()))
    this.inFlight.set(id, {what, op, child, timer, settle})
    child.send({id, op, args}, (err) => {
      if (err) this.end(child, `its process cannot be reached (${err.message})`)
    })
  }

  /** The token's process runs the first operation sent to it from now: keys.timeout for its answer, or the process ends. */
  private runs(child: ChildProcess): void {
    clearTimeout(this.front?.timer)
    this.front = {child, since: performance.now(), timer: setTimeout(() => this.hung(child), this.timeoutMs)}
  }

  private hung(child: ChildProcess): void {
    this.end(
      child,
      `token "${this.kms.token}" did not answer within ${this.timeoutMs / 1000}s; the CA asks it again in a new session`,
      'check the HSM and the way to it (network, daemon); keys.timeout in ca.yaml sets the wait',
    )
  }

  /**
   * Operation `id`'s caller has waited its turn and its answer (2 × keys.timeout). One the token has
   * run for keys.timeout is its hang (the process ends); one still behind others in the token's
   * process fails alone, and its answer, when it comes, is dropped: the token goes on.
   */
  private expire(id: number): void {
    const f = this.inFlight.get(id)
    if (!f || f.abandoned) return
    const [first] = this.inFlight.keys()
    if (first === id && this.front && performance.now() - this.front.since >= this.timeoutMs) return this.hung(f.child)
    f.abandoned = true
    f.settle({
      id,
      error: {
        message: `token "${this.kms.token}" did not get to it within ${(2 * this.timeoutMs) / 1000}s of the request (it waited behind other operations)`,
        hint: 'the token is slower than the requests: a faster token, fewer signing requests, or a longer keys.timeout',
      },
    })
  }

  private start(): void {
    if (this.failed && Date.now() - this.failed.at < RESTART_PAUSE_MS) return this.failQueue(this.failed.error)
    // src as .ts, dist as .js: the token's script beside this one
    const script = new URL(`./pkcs11-token${extname(fileURLToPath(import.meta.url))}`, import.meta.url)
    let child: ChildProcess
    try {
      // stdout is the audit log's by default: whatever a module prints goes to stderr
      // its watchdog ends it when this process is gone (pkcs11-token.ts)
      child = fork(fileURLToPath(script), [String(process.pid)], {
        execArgv: [],
        serialization: 'advanced',
        stdio: ['ignore', 2, 2, 'ipc'],
      })
    } catch (err) {
      // some failures to start (E2BIG, ENOMEM) are thrown, not emitted: the operations queued fail now,
      // and `starting` is never set, or it would hold every later operation until its turn ran out
      const what = `open token "${this.kms.token}"`
      this.failed = {
        at: Date.now(),
        error: this.error(what, `its process could not be started (${(err as Error).message})`),
      }
      return this.failQueue(this.failed.error)
    }
    this.starting = true
    // an idle token process does not keep the CA's process alive (an operation's timer does): a command
    // that ends without closing its key store exits, and the token's process with it ('disconnect')
    child.unref()
    child.channel?.unref()
    child.on('message', (a: unknown) => {
      // a process forgotten (killed at its deadline): its late answer settles nothing
      if (this.child !== child && !this.sentTo(child)) return
      // the token's script answers each operation once, in the order sent: anything else (null, a
      // stray or repeated id, an answer out of turn, another shape) is other code of that process
      // writing on its channel, the module's: a throw here was the CA's process ending (an uncaught
      // TypeError); now that process is done with
      const [first] = this.inFlight.entries()
      const f = first?.[1]
      if (!isAnswer(a) || !f || f.child !== child || first[0] !== a.id)
        return this.end(child, 'its process sent what is not an answer to the operation; the CA ended it')
      this.inFlight.delete(a.id)
      clearTimeout(f.timer)
      // the process goes on to the next one sent, if any, from now
      if (this.front) {
        clearTimeout(this.front.timer)
        if (f.op !== 'init') this.lastRun = performance.now() - this.front.since
        this.front = undefined
      }
      if (this.inFlight.size > 0) this.runs(child)
      // a PIN refused when a lost session logged in again: no process logs in with it again until the
      // CA restarts, as at the start (this one refuses by itself; the next would try once more)
      if (a.error?.pinRefused && f.op !== 'init')
        this.failed = this.pinRefused(`open token "${this.kms.token}"`, a.error.message)
      // one failed at its deadline was settled then: its place in the process is free now
      if (f.abandoned) this.pump()
      else f.settle(a)
    })
    child.on('error', () => this.end(child, 'its process could not be started'))
    child.on('exit', (code, signal) => this.end(child, `its process ended (${signal ?? `code ${code}`})`))
    const what = `open token "${this.kms.token}"`
    this.send(child, what, 'init', {module: this.kms.module, token: this.kms.token, pin: this.pin}, (a) => {
      this.starting = false
      if (a.error) {
        // a refused PIN is not tried again: an HSM locks its user PIN after a few failures, and one
        // login a second (a start per signing request past the pause) would lock it within seconds
        this.failed = a.error.pinRefused
          ? this.pinRefused(what, a.error.message)
          : {at: Date.now(), error: this.error(what, a.error.message, a.error.hint)}
        this.end(child, 'it did not open')
        return this.failQueue(this.failed.error)
      }
      this.failed = undefined
      this.child = child
      this.pump()
    })
  }

  /** A refused PIN as `failed`: every start from now fails at once, never another login until the CA restarts. */
  private pinRefused(what: string, message: string): {at: number; error: SshcaError} {
    return {
      at: Number.POSITIVE_INFINITY,
      error: this.error(
        what,
        `${message}; the CA does not log in again until it restarts`,
        'an HSM locks its user PIN after a few failed logins: fix the pin-source file, then restart the CA',
      ),
    }
  }

  private failQueue(err: SshcaError): void {
    for (const job of this.queue.splice(0)) {
      clearTimeout(job.turn)
      job.reject(err)
    }
  }

  /** Whether operations sent to `child` wait for their answers. */
  private sentTo(child: ChildProcess): boolean {
    for (const f of this.inFlight.values()) if (f.child === child) return true
    return false
  }

  /** Forgets `child` (killing it if it still runs): what was sent to it fails, and every operation queued. */
  private end(child: ChildProcess, why: string, hint?: string): void {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    const sent = [...this.inFlight].filter(([, f]) => f.child === child)
    if (this.child !== child && sent.length === 0) return
    if (this.child === child) this.child = undefined
    if (sent.length === 0) return
    if (this.front?.child === child) {
      clearTimeout(this.front.timer)
      this.front = undefined
    }
    for (const [id, f] of sent) {
      this.inFlight.delete(id)
      clearTimeout(f.timer)
    }
    // the queue first: an operation's own settling sends the next one, to a new process
    this.failQueue(this.error(sent[0]![1].what, why, hint))
    // those failed at their deadline were settled then
    for (const [id, f] of sent) if (!f.abandoned) f.settle({id, error: {message: why, ...(hint ? {hint} : {})}})
  }

  /** Closes the session and ends the process once the operations queued are done (a process that does not answer is killed). */
  async close(): Promise<void> {
    if (!this.child && !this.starting) return
    await this.call('close the session', 'close').catch(() => undefined)
  }
}

export async function pkcs11Backend(kms: Pkcs11Kms): Promise<KeyBackend> {
  // the executable has no script to start the token's process with, nor the native pkcs11js
  if (isSea())
    throw new SshcaError('ERR_KEY_STORE', 'the single executable cannot use a PKCS#11 token (keys.kms)', {
      hint: 'install the npm package (npm install -g sshca, with pkcs11js) on the CA host',
    })
  const pin = await readPin(kms.pinFile)
  const token = new TokenProcess(kms, pin)
  let closed = false
  return {
    async create(kind: CaKeyKind, id: string) {
      const ckaId = randomBytes(16).toString('hex')
      const label = `sshca ${kind} CA ${id}`
      const point = await token.call<Uint8Array>('generate a key pair', 'create', {label, id: ckaId})
      const ref: KeyRef = {type: 'pkcs11', label, id: ckaId}
      return {ref, publicKey: p256PublicKey(ecPoint(point))}
    },

    async open(ref: KeyRef): Promise<Signer> {
      if (ref.type !== 'pkcs11') throw new TypeError(`the pkcs11 backend cannot open a ${ref.type} key`)
      const key = {label: ref.label, id: ref.id}
      const publicKey = p256PublicKey(ecPoint(await token.call<Uint8Array>(`find key ${ref.label}`, 'find', key)))
      return {
        publicKey,
        async sign(data) {
          const digest = createHash('sha256').update(data).digest()
          const raw = Buffer.from(await token.call<Uint8Array>(`sign with ${ref.label}`, 'sign', {...key, digest}))
          let signature: Buffer
          try {
            signature = sshSignatureFromRaw(publicKey, raw)
          } catch (err) {
            // the token's fault, not the client's: a 503 like any other failure of the key store
            throw new SshcaError(
              'ERR_KEY_STORE',
              `PKCS#11: token "${kms.token}" returned a signature for "${ref.label}" that is not one (${(err as Error).message}); nothing was issued`,
              {hint: 'check the token (its health, its objects under this CKA_ID) before the CA signs again'},
            )
          }
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
        },
      }
    },

    async destroy(ref) {
      if (ref.type !== 'pkcs11') throw new TypeError(`the PKCS#11 backend cannot destroy a ${ref.type} key`)
      // only the pair `create` made: its random 16-byte CKA_ID and its label, never objects another
      // application keeps under a short or empty ID a manifest edited by hand could name
      if (!/^[0-9a-f]{32}$/i.test(ref.id))
        throw new SshcaError('ERR_KEY_STORE', `PKCS#11: "${ref.id}" is not a CKA_ID sshca made; nothing was destroyed`)
      await token.call(`destroy ${ref.label}`, 'destroy', {label: ref.label, id: ref.id})
    },

    async close() {
      if (closed) return
      closed = true
      await token.close()
    },
  }
}
