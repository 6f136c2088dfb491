/** Child processes for tests: run to completion, or start in the background and stop by pid. */
import {spawn, type ChildProcess, type SpawnOptions} from 'node:child_process'
import {existsSync} from 'node:fs'
import {setTimeout as sleep} from 'node:timers/promises'

export interface RunResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export function run(cmd: string, args: readonly string[], opts: SpawnOptions & {input?: string | Buffer; timeoutMs?: number} = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {...opts, stdio: ['pipe', 'pipe', 'pipe']})
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
    child.stdin!.end(opts.input ?? '')
  })
}

/** Runs and throws with the output when the exit code is not 0. */
export async function runOk(cmd: string, args: readonly string[], opts: Parameters<typeof run>[2] = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`)
  return r
}

export interface Background {
  readonly pid: number
  readonly child: ChildProcess
  output(): string
  stop(): Promise<void>
}

const running = new Set<Background>()

export function background(cmd: string, args: readonly string[], opts: SpawnOptions = {}): Background {
  const child = spawn(cmd, args, {...opts, stdio: ['ignore', 'pipe', 'pipe']})
  let out = ''
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`)
  const pid = child.pid
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const bg: Background = {
    pid,
    child,
    output: () => out,
    async stop() {
      running.delete(bg)
      if (child.exitCode !== null || child.signalCode !== null) return
      process.kill(pid, 'SIGTERM')
      const t = setTimeout(() => {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }, 3000)
      await exited
      clearTimeout(t)
    },
  }
  running.add(bg)
  return bg
}

const cleanups = new Set<() => Promise<void>>()

/** Something else to stop after the run (daemons started through src/demo/openssh.ts). */
export function onCleanup(stop: () => Promise<void>): void {
  cleanups.add(stop)
}

/** Stops every background process still running (mocha root hook). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((b) => b.stop()))
  await Promise.all([...cleanups].map((c) => c().catch(() => undefined)))
  cleanups.clear()
}

export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await check()) return
    await sleep(25)
  }
  throw new Error(`timed out waiting for ${what}`)
}

export const waitForFile = (path: string, timeoutMs?: number): Promise<void> => waitFor(path, () => existsSync(path), timeoutMs)
