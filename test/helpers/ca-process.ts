/**
 * `sshca ca serve` as a real process (crash and disk-full tests, the soak): started on 127.0.0.1:0,
 * ready when its one JSON document ({url, pid, rootFingerprint}) has been printed in full, stopped by
 * pid, and registered with the root hook in case a test fails first.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {Agent, request} from 'undici'
import {BIN} from './cli.ts'
import {onCleanup, waitFor} from './proc.ts'

export interface CaProcess {
  url: string
  pid: number
  child: ChildProcess
  dispatcher: Agent
  stderr(): string
  /** Resolves with the exit code or signal once the process has ended. */
  exited: Promise<{code: number | null; signal: NodeJS.Signals | null}>
  signSsh(body: unknown): Promise<{status: number; json: Record<string, unknown> | undefined}>
  stop(signal?: NodeJS.Signals): Promise<{code: number | null; signal: NodeJS.Signals | null}>
}

export async function startCaProcess(o: {
  config: string
  caDir: string
  passwordFile: string
  env?: NodeJS.ProcessEnv
}): Promise<CaProcess> {
  const child = spawn(
    process.execPath,
    [BIN, 'ca', 'serve', '--config', o.config, '--password-file', o.passwordFile, '--address', '127.0.0.1:0', '--json'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {...process.env, ...o.env},
    },
  )
  let out = ''
  let err = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (err += d))
  const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve) =>
    child.once('exit', (code, signal) => resolve({code, signal})),
  )
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    return exited
  }
  onCleanup(async () => void (await stop('SIGKILL')))
  let started: {url: string; pid: number} | undefined
  await waitFor(
    'ca serve to print its address',
    () => {
      try {
        started = JSON.parse(out) as {url: string; pid: number}
      } catch {
        // not all of it yet
      }
      return started !== undefined || child.exitCode !== null
    },
    60_000,
  )
  if (!started) throw new Error(`ca serve exited ${child.exitCode}:\n${out}\n${err}`)
  const dispatcher = new Agent({connect: {ca: readFileSync(join(o.caDir, 'certs', 'root_ca.crt'))}})
  const url = started.url
  return {
    url,
    pid: started.pid,
    child,
    dispatcher,
    stderr: () => err,
    exited,
    async signSsh(body) {
      const res = await request(`${url}/ssh/sign`, {
        method: 'POST',
        dispatcher,
        headers: {'content-type': 'application/json'},
        body: JSON.stringify(body),
      })
      const text = await res.body.text()
      let json: Record<string, unknown> | undefined
      try {
        json = JSON.parse(text) as Record<string, unknown>
      } catch {
        json = undefined
      }
      return {status: res.statusCode, json}
    },
    async stop(signal) {
      const r = await stop(signal)
      await dispatcher.destroy()
      return r
    },
  }
}
