/** Child processes for tests: run to completion; daemons register their stop() for the root hook. */
import {spawn, type SpawnOptions} from 'node:child_process'
import {setTimeout as sleep} from 'node:timers/promises'

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export function run(
  cmd: string,
  args: readonly string[],
  opts: SpawnOptions & {input?: string | Buffer; timeoutMs?: number} = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    // stdin is a pipe only when there is input to send: a child that exits without reading it (ssh-keygen)
    // turns a write into EPIPE, which must not become an uncaught error in the test run
    const input = opts.input
    const child = spawn(cmd, args, {...opts, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000)
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({code, signal, stdout, stderr})
    })
    if (input !== undefined) {
      child.stdin!.on('error', () => undefined)
      child.stdin!.end(input)
    }
  })
}

/** Runs and throws with the output when the exit code is not 0. */
export async function runOk(
  cmd: string,
  args: readonly string[],
  opts: Parameters<typeof run>[2] = {},
): Promise<RunResult> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`)
  return r
}

const cleanups = new Set<() => Promise<void>>()

/** Something else to stop after the run (daemons started through src/demo/openssh.ts). */
export function onCleanup(stop: () => Promise<void>): void {
  cleanups.add(stop)
}

/** Stops everything a test started and left running (mocha root hook). */
export async function stopAll(): Promise<void> {
  await Promise.all([...cleanups].map((c) => c().catch(() => undefined)))
  cleanups.clear()
}

export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await check()) return
    await sleep(25)
  }
  throw new Error(`timed out waiting for ${what}`)
}
