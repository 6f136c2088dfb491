/** A command run to its end, for the few OpenSSH and systemd tools sshca asks (never through a shell). */
import {execFile} from 'node:child_process'

export interface RunResult {
  /** The exit code; null when it was killed (a timeout) or never started. */
  code: number | null
  stderr: string
  /** The command is not installed (ENOENT). */
  missing: boolean
}

/** root's tools, whatever PATH a timer's or sudo's environment has: where sshd, ssh-keygen and systemctl live. */
export const SYSTEM_PATH = '/usr/sbin:/usr/bin:/sbin:/bin'

/**
 * The environment to run an OpenSSH tool by name in: as root, PATH is SYSTEM_PATH (the PATH that root
 * was started with may hold a folder another user can write: `su` without `-`, sudo keeping PATH, a
 * ~/bin first, and their `ssh-keygen` would run as root and answer for the check); a user's own PATH
 * otherwise (their ssh may live in Homebrew's folder).
 */
export function toolEnv(env: NodeJS.ProcessEnv = process.env, euid = process.geteuid?.()): NodeJS.ProcessEnv {
  return euid === 0 ? {...env, PATH: SYSTEM_PATH} : env
}

/** Runs `cmd args` with LANG=C, at most `timeoutMs`; never throws. */
export function runQuiet(cmd: string, args: string[], timeoutMs: number, env = process.env): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, {timeout: timeoutMs, env: {...env, LANG: 'C'}}, (err, _stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0
      resolve({code, stderr: String(stderr || (err?.message ?? '')), missing: err?.code === 'ENOENT'})
    })
  })
}

/** The last two lines a tool wrote to standard error (sshd names the bad line before it gives up), or its exit code. */
export const errorTail = (r: RunResult): string =>
  r.stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(-2)
    .join('; ') || `exit ${r.code}`
