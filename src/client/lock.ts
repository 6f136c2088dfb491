/**
 * One login at a time per context. `ssh` runs `sshca login --ensure` for every connection it opens,
 * and `parallel-ssh`, Ansible or a shell loop open many at once: without a lock each would start
 * its own browser sign-in. The first takes the lock file (created exclusively, holding its pid);
 * the others wait for it to go, then look again for the certificate the first one got. A lock
 * whose process is gone, or older than the longest sign-in, is taken over.
 */
import {open, readFile, rm, stat} from 'node:fs/promises'
import {setTimeout as sleep} from 'node:timers/promises'
import {SshcaError, type ErrorCode} from '../errors.ts'

export interface LockOptions {
  /** How long to wait for another holder (ms). */
  timeoutMs: number
  /** A lock older than this (ms) is stale whatever its pid says. */
  staleMs: number
  pollMs?: number
  clock?: () => number
  /** Whether a process is alive (default: signal 0). */
  alive?: (pid: number) => boolean
  /** Who holds such a lock, for the error when it is held too long (default: another sshca login). */
  holder?: string
  /** The error code then (default ERR_LOGIN_TIMEOUT). */
  code?: ErrorCode
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function staleHolder(path: string, o: LockOptions, now: number): Promise<boolean> {
  try {
    const [text, s] = await Promise.all([readFile(path, 'utf8'), stat(path)])
    const pid = Number(text.trim())
    if (now - s.mtimeMs > o.staleMs) return true
    // a lock file still being written has no pid yet: not stale
    return Number.isInteger(pid) && pid > 0 && !(o.alive ?? isAlive)(pid)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT'
  }
}

/** Runs `fn` holding the lock at `path`; `waited` tells it whether another process held it first. */
export async function withLock<T>(path: string, o: LockOptions, fn: (waited: boolean) => Promise<T>): Promise<T> {
  const clock = o.clock ?? Date.now
  const end = clock() + o.timeoutMs
  let waited = false
  for (;;) {
    try {
      const fh = await open(path, 'wx', 0o600)
      try {
        await fh.writeFile(`${process.pid}\n`)
      } finally {
        await fh.close()
      }
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    waited = true
    if (await staleHolder(path, o, clock())) {
      await rm(path, {force: true})
      continue
    }
    if (clock() >= end)
      throw new SshcaError(
        o.code ?? 'ERR_LOGIN_TIMEOUT',
        `${o.holder ?? 'another sshca login'} (lock ${path}) did not finish in time`,
        {
          hint: `if no other sshca is running, remove the lock: rm ${path}`,
        },
      )
    await sleep(o.pollMs ?? 100)
  }
  try {
    return await fn(waited)
  } finally {
    await rm(path, {force: true})
  }
}
