/**
 * One login at a time per context. `ssh` runs `sshca login --ensure` for every connection it opens,
 * and `parallel-ssh`, Ansible or a shell loop open many at once: without a lock each would start
 * its own browser sign-in. The first takes the lock file (created exclusively, holding its pid and a
 * token of its own);
 * the others wait for it to go, then look again for the certificate the first one got. A lock
 * whose process is gone, or older than the longest sign-in, is taken over.
 *
 * A pid means something only in its PID namespace on its machine: a home folder shared with a
 * container, or over NFS, has holders whose pids this process cannot see (a live holder answers
 * ESRCH) or sees as someone else. So the lock also names where its holder runs (lockSite), and a lock
 * from elsewhere is judged by its age alone. An older sshca's lock names no site and is judged by its
 * pid, as that sshca judges every lock: both sides of a shared home need this version.
 */
import {randomUUID} from 'node:crypto'
import {readFileSync, readlinkSync} from 'node:fs'
import {link, open, readFile, rename, rm, stat, writeFile} from 'node:fs/promises'
import {hostname} from 'node:os'
import {setTimeout as sleep} from 'node:timers/promises'
import {SshcaError, type ErrorCode} from '../../errors.ts'

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

let site: string | undefined

/**
 * Where this process's pid can be asked: the machine and its PID namespace, without spaces. The
 * machine by its machine id (systemd's, stable across reboots and renames: the host's own PID namespace
 * has the same number on every Linux machine, and cloned machines often share a name), else by its name
 * (macOS, BSD: no /proc either).
 */
export function lockSite(): string {
  if (site === undefined) {
    const read = (f: string, how: (f: string) => string): string => {
      try {
        return how(f).trim()
      } catch {
        return ''
      }
    }
    const machine =
      read('/etc/machine-id', (f) => readFileSync(f, 'utf8')) ||
      read('/var/lib/dbus/machine-id', (f) => readFileSync(f, 'utf8')) ||
      hostname()
    site = `${machine}/${read('/proc/self/ns/pid', readlinkSync)}`.replace(/\s+/g, '')
  }
  return site
}

/**
 * The lock's text when its holder is gone (its process is dead, or the lock is older than staleMs);
 * null while it is held; undefined when it vanished. Read through one handle, so the age and the text
 * are one file's (two opens could see the old lock's age and a new lock's text).
 */
async function staleText(path: string, o: LockOptions, now: number): Promise<string | null | undefined> {
  let fh
  try {
    fh = await open(path, 'r')
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : null
  }
  try {
    const s = await fh.stat()
    const text = await fh.readFile('utf8')
    // an empty lock (an older sshca's, whose holder died before writing it) is judged by its age alone
    if (now - s.mtimeMs > o.staleMs) return text
    const [pidText, , where] = text.trim().split(/\s+/)
    // a holder elsewhere: its pid cannot be asked here (an older sshca's lock names no site: its pid decides)
    if (where !== undefined && where !== lockSite()) return null
    const pid = Number(pidText)
    return Number.isInteger(pid) && pid > 0 && !(o.alive ?? isAlive)(pid) ? text : null
  } catch {
    // not a file we can read (a folder at its name): held, until the timeout says whose it is to remove
    return null
  } finally {
    await fh.close()
  }
}

/**
 * Takes a stale lock away. Several waiters may judge the same lock stale; the first to remove it may
 * take the lock at once, and no other may then remove that new lock. So one waiter at a time (the one
 * that creates `<lock>.takeover`) moves the lock aside and removes it only when it is still the lock
 * that was judged; another one (a holder that let go and a newcomer that took the name since) is put
 * back. False when another waiter holds the guard: this one waits its turn.
 */
async function removeStale(path: string, judged: string, token: string, clock: () => number): Promise<boolean> {
  const guard = `${path}.takeover`
  try {
    await (await open(guard, 'wx', 0o600)).close()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    // another waiter is taking it over (for microseconds); a guard left by a crash goes after a while
    const s = await stat(guard).catch(() => undefined)
    if (s && clock() - s.mtimeMs > TAKEOVER_STALE_MS) await rm(guard, {force: true})
    return false
  }
  try {
    const aside = `${path}.${token}.stale`
    try {
      await rename(path, aside)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true
      throw err
    }
    if ((await readFile(aside, 'utf8').catch(() => null)) !== judged) await link(aside, path).catch(() => undefined)
    await rm(aside, {force: true})
    return true
  } finally {
    await rm(guard, {force: true})
  }
}

const TAKEOVER_STALE_MS = 2_000

/** Runs `fn` holding the lock at `path`; `waited` tells it whether another process held it first. */
export async function withLock<T>(path: string, o: LockOptions, fn: (waited: boolean) => Promise<T>): Promise<T> {
  const clock = o.clock ?? Date.now
  const end = clock() + o.timeoutMs
  // the pid says whether the holder lives (where it can be asked); the token says which lock is this one's
  const token = randomUUID()
  const mine = `${process.pid} ${token} ${lockSite()}\n`
  let waited = false
  let retried = false
  for (;;) {
    if (await create(path, mine, token)) break
    waited = true
    const stale = await staleText(path, o, clock())
    // gone, or taken away as stale: try again at once (once in a row: a name that cannot be opened,
    // a dangling link, would otherwise be tried without end); else wait for the holder or the guard
    const moved = stale === undefined || (stale !== null && (await removeStale(path, stale, token, clock)))
    if (moved && !retried) {
      retried = true
      continue
    }
    retried = false
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
    // only this one's: a lock taken over as stale (this holder ran past staleMs) is its new holder's
    if ((await readFile(path, 'utf8').catch(() => null)) === mine) await rm(path, {force: true})
  }
}

/**
 * Creates the lock holding `text`, or false when it exists. Written to a file of its own first and
 * linked to the lock's name, so no one ever sees the lock without its holder's pid and token (an
 * empty one could not be told from another empty one). Where hard links are not supported, the lock
 * is created in place and written at once.
 */
async function create(path: string, text: string, token: string): Promise<boolean> {
  const own = `${path}.${token}.new`
  await writeFile(own, text, {mode: 0o600, flag: 'wx'})
  try {
    await link(own, path)
    return true
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') return false
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw err
  } finally {
    await rm(own, {force: true})
  }
  return createInPlace(path, text)
}

async function createInPlace(path: string, text: string): Promise<boolean> {
  let fh
  try {
    fh = await open(path, 'wx', 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  }
  try {
    await fh.writeFile(text)
  } catch (err) {
    // a full disk: an empty lock left here would hold every other sshca back until it is stale
    await fh.close().catch(() => undefined)
    await rm(path, {force: true})
    throw err
  }
  await fh.close()
  return true
}
