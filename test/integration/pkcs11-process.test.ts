/**
 * The token's process (src/ca/keys/pkcs11-token.ts) seen from the process that holds the CA's keys:
 * what it does when the process cannot be started, when the code loaded there (the vendor's module)
 * writes what it likes on the channel to the CA, and when the CA's process ends while an operation
 * runs there. SoftHSM 2 directly, or through p11-kit's server stopped with SIGSTOP (a token that
 * never answers: the module's call never returns).
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {pkcs11Backend} from '../../src/ca/keys/pkcs11.ts'
import {onCleanup, run, runOk, waitFor} from '../helpers/proc.ts'
import {initSoftHsmToken, SOFTHSM_MODULE, softHsmPresent} from '../helpers/softhsm.ts'
import {tempDir} from '../helpers/tmp.ts'

const CLIENT = '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so'
const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'pkcs11-backend.ts')

/** Whether `pid` still runs (a zombie its new parent does not reap has ended). */
const alive = (pid: number): boolean => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

describe('the PKCS#11 token process', function () {
  this.timeout(60_000)
  const base = tempDir('sshca-hsm-proc-')
  const socket = join(base, 'p11-kit.sock')
  let env: NodeJS.ProcessEnv
  let pinFile: string
  let server: ReturnType<typeof spawn> | undefined
  const kms = (module: string, timeout = 2) => ({
    type: 'pkcs11' as const,
    module,
    token: 'sshca-proc',
    pinFile,
    uri: '',
    timeoutSeconds: timeout,
  })
  /** The fixture process (test/fixtures/pkcs11-backend.ts) in `mode`, with `extra` in its environment. */
  const fixture = (
    mode: string,
    module: string,
    extra: NodeJS.ProcessEnv = {},
    timeout = 2,
    more: Record<string, unknown> = {},
  ) =>
    // `timeout` is the fixture's name for keys.timeout (it read none, and every fixture waited 10 s)
    spawn(process.execPath, [FIXTURE, JSON.stringify({...kms(module, timeout), timeout, mode, ...more})], {
      env: {...process.env, ...env, ...extra},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
  const firstLine = (child: ReturnType<typeof spawn>): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      let out = ''
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString()
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as Record<string, unknown>)
      })
      child.on('exit', () => reject(new Error(`the fixture ended without a line: ${out}`)))
    })
  const signal = async (sig: 'STOP' | 'CONT') => {
    process.kill(server!.pid!, `SIG${sig}`)
    await runOk('sh', ['-c', `pkill -${sig} -P ${server!.pid} || true`])
  }

  before(async function () {
    if (!softHsmPresent()) this.skip()
    ;({env, pinFile} = await initSoftHsmToken(base, 'sshca-proc', {P11_KIT_SERVER_ADDRESS: `unix:path=${socket}`}))
    if (!existsSync(CLIENT)) return
    const srv = spawn(
      'p11-kit',
      ['server', '-f', '-n', socket, '--provider', SOFTHSM_MODULE, 'pkcs11:token=sshca-proc'],
      {
        env: {...process.env, ...env},
        stdio: 'ignore',
      },
    )
    server = srv
    onCleanup(async () => {
      srv.kill('SIGCONT')
      srv.kill('SIGTERM')
    })
    await waitFor('p11-kit server to listen', () => existsSync(socket), 10_000)
  })
  afterEach(async () => {
    if (server) await signal('CONT').catch(() => undefined)
  })

  for (const [how, mode] of [
    ['exits (process.exit: a CLI command, an uncaught error)', 'exit'],
    ['is killed (SIGKILL: a stop past its deadline, the OOM killer)', 'hold'],
  ] as const)
    it(`the process holding the keys ${how} while the token hangs: its token process does not outlive it`, async function () {
      if (!server) this.skip()
      await signal('STOP')
      // the open hangs in the module: p11-kit's client waits on the stopped server
      const child = fixture(mode, CLIENT, {}, 30)
      const {tokenPid} = (await firstLine(child)) as {tokenPid: number}
      assert.ok(alive(tokenPid))
      if (mode === 'hold') child.kill('SIGKILL')
      await new Promise((r) => child.once('exit', r))
      // the token never answers: nothing but the CA's end can end its process
      try {
        await waitFor('the token process to end', () => !alive(tokenPid), 5_000)
      } finally {
        if (alive(tokenPid)) process.kill(tokenPid, 'SIGKILL')
      }
    })

  it("what the token process sends that is not an answer (code loaded there: the vendor's module) does not bring the CA down", async () => {
    // a module runs in the token process with its powers: it can write on the channel to the CA.
    // Loaded there before the token's script (NODE_OPTIONS, which the process inherits), as a module would be
    const evil = join(base, 'evil-module.mjs')
    writeFileSync(
      evil,
      `if (process.argv[1]?.includes('pkcs11-token')) {
        for (const m of [null, 42, 'x', [], {id: null}, {id: 1, error: null}, {id: 1, error: 'x'}]) process.send(m)
      }\n`,
    )
    const child = fixture('create', SOFTHSM_MODULE, {NODE_OPTIONS: `--import ${evil}`})
    const exit = new Promise<number | null>((r) => child.once('exit', r))
    const said = await firstLine(child)
    assert.equal(said.ok, false, JSON.stringify(said))
    assert.equal(said.code, 'ERR_KEY_STORE', JSON.stringify(said))
    assert.match(String(said.message), /not an answer/)
    assert.equal(await exit, 0)
  })

  /** What the fixture's `signs` mode says: each signature asked at once, one more after them, and whether one token process made them all. */
  type Signs = {outcomes: {ok: boolean; code?: string; message?: string}[]; after: {ok: boolean}; sameProcess: boolean}

  it('answers out of turn (two signatures sent ahead, answered in the other order) are refused, never matched to the wrong request', async () => {
    // the CA sends a few operations ahead of their answers: code in the token process that swaps two
    // answers would hand one request the signature made for another (its certificate's bytes)
    const swap = join(base, 'swap-answers.mjs')
    writeFileSync(
      swap,
      `if (process.argv[1]?.includes('pkcs11-token')) {
        const send = process.send.bind(process)
        let n = 0
        let held
        // init, create, find pass; the first signature's answer is held and sent after the second's
        process.send = (m, ...rest) => {
          n++
          if (n === 4) return void (held = [m, ...rest])
          send(m, ...rest)
          if (n === 5 && held) send(...held)
        }
      }\n`,
    )
    const child = fixture('signs', SOFTHSM_MODULE, {NODE_OPTIONS: `--import ${swap}`}, 2, {count: 2})
    const said = (await firstLine(child)) as unknown as Signs
    assert.equal(said.outcomes.length, 2)
    for (const r of said.outcomes) {
      assert.equal(r.ok, false, JSON.stringify(said))
      assert.equal(r.code, 'ERR_KEY_STORE')
      assert.match(String(r.message), /not an answer to the operation/)
    }
    // that process was ended; the next signature is a new one's
    assert.deepEqual([said.after, said.sameProcess], [{ok: true}, false])
  })

  /** Code in the token process that makes its operations slow: SSHCA_TEST_SLOW, the milliseconds each answer takes, init first. */
  const slowToken = (): string => {
    const slow = join(base, 'slow-token.mjs')
    writeFileSync(
      slow,
      `if (process.argv[1]?.includes('pkcs11-token')) {
        const send = process.send.bind(process)
        const pause = new Int32Array(new SharedArrayBuffer(4))
        const ms = JSON.parse(process.env.SSHCA_TEST_SLOW)
        let n = 0
        // this thread blocked before the answer goes, as in a module's call: the next operation waits
        process.send = (m, ...rest) => {
          const wait = ms[Math.min(n++, ms.length - 1)]
          if (wait) Atomics.wait(pause, 0, 0, wait)
          return send(m, ...rest)
        }
      }\n`,
    )
    return slow
  }

  it('a slow token (0.8 s an operation, keys.timeout 2 s) signs three requests made at once, in the same process: the wait behind the others in it is not a hang', async () => {
    // sent ahead, the third waited 1.6 s behind the two others in the token's process and was
    // answered 2.4 s after it was sent: that ended the process at 2 s, and failed it and the others
    // sent, though the token answered each of its operations within 0.8 s
    const child = fixture(
      'signs',
      SOFTHSM_MODULE,
      {NODE_OPTIONS: `--import ${slowToken()}`, SSHCA_TEST_SLOW: '[0, 800]'},
      2,
      {count: 3},
    )
    const said = (await firstLine(child)) as unknown as Signs
    assert.deepEqual(said, {outcomes: [{ok: true}, {ok: true}, {ok: true}], after: {ok: true}, sameProcess: true})
  })

  it('an operation that waits behind others in the token process past its deadline (2 × keys.timeout) fails alone; the process goes on, its late answer is dropped, the next is answered', async () => {
    // keys.timeout 3 s; init, create and find fast, then three signatures of 2.4 s each (none a hang):
    // answered at 2.4 s and 4.8 s, the third would be at 7.2 s, past 6 s from its request
    const child = fixture(
      'signs',
      SOFTHSM_MODULE,
      {NODE_OPTIONS: `--import ${slowToken()}`, SSHCA_TEST_SLOW: '[0, 0, 0, 2400, 2400, 2400, 0]'},
      3,
      {count: 3},
    )
    const said = (await firstLine(child)) as unknown as Signs
    assert.deepEqual(said.outcomes.slice(0, 2), [{ok: true}, {ok: true}], JSON.stringify(said))
    assert.equal(said.outcomes[2]!.ok, false)
    assert.equal(said.outcomes[2]!.code, 'ERR_KEY_STORE')
    assert.match(String(said.outcomes[2]!.message), /did not get to it within 6s/)
    assert.deepEqual(said.after, {ok: true}, JSON.stringify(said))
    assert.equal(said.sameProcess, true, 'the token process was not ended')
  })

  it('a PIN the token refuses when a lost session logs in again (the PIN changed meanwhile) is not tried again: one failed login, not one per signature', async () => {
    // in the token process: the second signature fails as a session lost (the HSM restarted), and every
    // login after the first is refused as a changed PIN would be; each login is counted in a file
    const logins = join(base, 'logins')
    const changed = join(base, 'pin-changed.mjs')
    writeFileSync(
      changed,
      `import {appendFileSync} from 'node:fs'
      import {createRequire} from 'node:module'
      if (process.argv[1]?.includes('pkcs11-token')) {
        const {PKCS11, CKR_PIN_INCORRECT, CKR_DEVICE_ERROR} = createRequire(process.argv[1])('pkcs11js')
        const login = PKCS11.prototype.C_Login
        const sign = PKCS11.prototype.C_Sign
        let n = 0
        let signs = 0
        // thrown as the module's errors read (pkcs11js takes the code from NAME:number)
        PKCS11.prototype.C_Login = function (...a) {
          appendFileSync(${JSON.stringify(logins)}, 'login\\n')
          if (++n > 1) throw new Error('CKR_PIN_INCORRECT:' + CKR_PIN_INCORRECT)
          return login.apply(this, a)
        }
        PKCS11.prototype.C_Sign = function (...a) {
          if (++signs === 2) throw new Error('CKR_DEVICE_ERROR:' + CKR_DEVICE_ERROR)
          return sign.apply(this, a)
        }
      }\n`,
    )
    const child = fixture('serial', SOFTHSM_MODULE, {NODE_OPTIONS: `--import ${changed}`})
    const said = (await firstLine(child)) as unknown as {ok: boolean; code?: string; message?: string}[]
    assert.deepEqual(
      said.map((r) => r.ok),
      [true, false, false, false],
      JSON.stringify(said),
    )
    for (const r of said.slice(1)) {
      assert.equal(r.code, 'ERR_KEY_STORE')
      assert.match(String(r.message), /cannot log in .*wrong PIN/)
    }
    assert.equal(readFileSync(logins, 'utf8').trim().split('\n').length, 2, 'the first login, and the one refused')
  })

  it('a token process that could not be started (E2BIG) does not leave the backend refusing every operation after it', async () => {
    const saved = {...process.env}
    Object.assign(process.env, env)
    const backend = await pkcs11Backend(kms(SOFTHSM_MODULE))
    try {
      // an environment execve refuses: the start fails at once, synchronously
      process.env.SSHCA_TEST_TOO_BIG = 'x'.repeat(256 * 1024)
      await assert.rejects(backend.create('user', 'e2big-1'), /E2BIG|could not be started/)
      delete process.env.SSHCA_TEST_TOO_BIG
      // past the pause after a failed start, the next operation starts a process that works
      await sleep(1200)
      const made = await backend.create('user', 'e2big-2')
      assert.equal(made.ref.type, 'pkcs11')
    } finally {
      // the real environment, restored key by key: a plain object put in process.env's place is not the
      // environment a native module (SoftHSM's getenv) reads, for this file's tests and every later one
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k]
      Object.assign(process.env, saved)
      await backend.close()
    }
  })

  it('a PIN the token refuses is not tried again: no login a second until the HSM locks the PIN', async () => {
    const saved = {...process.env}
    Object.assign(process.env, env)
    const wrong = join(base, 'wrong-pin')
    writeFileSync(wrong, '00000000\n', {mode: 0o600})
    const backend = await pkcs11Backend({...kms(SOFTHSM_MODULE), pinFile: wrong})
    const tokenProcesses = async () =>
      (await run('ps', ['-o', 'args=', '--ppid', String(process.pid)])).stdout
        .split('\n')
        .filter((l) => l.includes('pkcs11-token'))
    try {
      await assert.rejects(backend.create('user', 'pin-1'), {code: 'ERR_KEY_STORE', message: /CKR_PIN_INCORRECT/})
      // past the pause after a failed start, which a failure of another kind waits for
      await sleep(1200)
      await assert.rejects(backend.create('user', 'pin-2'), {
        code: 'ERR_KEY_STORE',
        message: /does not log in again until it restarts/,
      })
      assert.deepEqual(await tokenProcesses(), [], 'no token process was started for the second operation')
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k]
      Object.assign(process.env, saved)
      await backend.close()
    }
  })
})
