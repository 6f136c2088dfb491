/** Files that must never be half-written or readable by others. */
import {closeSync, constants as fsConstants, fstatSync, openSync, readSync} from 'node:fs'
import {lstat, mkdir, open, readFile, rename, rm, stat} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {SshcaError} from '../errors.ts'
import {nodeCrypto} from './node-crypto.ts'

/**
 * What sshca reads from a file it is given (a key, a certificate, a token, claims) unless told
 * otherwise: a few KiB each; a MiB is generous and still stops /dev/zero, /dev/urandom or a mistaken
 * disk image before it fills the memory.
 */
export const INPUT_LIMIT = 1 << 20

export interface ReadTextOptions {
  /** At most this many bytes (default INPUT_LIMIT). */
  limit?: number
  /** What to do instead when the file is larger. */
  largeHint?: string
  /** Said when the file cannot be read for its permissions (ERR_FILE_PERMISSIONS). */
  accessHint?: string
  /**
   * The file is a secret (a token): refused unless it is a regular file with no group or other
   * permission bits (checkOwnerOnly); this is the hint of that refusal.
   */
  ownerOnly?: string
}

/** ERR_INPUT for an input over its limit; `what` names it. */
export const inputTooLarge = (what: string, o: ReadTextOptions): SshcaError =>
  new SshcaError(
    'ERR_INPUT',
    `${what} is larger than ${(o.limit ?? INPUT_LIMIT) >> 20} MiB, more than sshca reads here`,
    {
      hint: o.largeHint ?? 'give the file meant here (a device such as /dev/zero never ends)',
    },
  )

/**
 * The file at `path` (the `what` of a message: "certificate") as UTF-8 text. Read to its end rather
 * than by its size, so a pipe by name (`<(…)`, /dev/stdin) works, and in bounded steps, so a device
 * that never ends is refused rather than read forever. Synchronously: one small file, and no start
 * of libuv's thread pool for it. ERR_FILE_NOT_FOUND, ERR_FILE_PERMISSIONS, else ERR_INPUT.
 */
export function readTextFile(path: string, what: string, o: ReadTextOptions = {}): string {
  const limit = o.limit ?? INPUT_LIMIT
  const failed = (err: unknown): SshcaError => {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return new SshcaError('ERR_FILE_NOT_FOUND', `no ${what} at ${path}`)
    if (code === 'EACCES')
      return new SshcaError('ERR_FILE_PERMISSIONS', `cannot read the ${what} ${path}: permission denied`, {
        ...(o.accessHint ? {hint: o.accessHint} : {}),
      })
    return new SshcaError('ERR_INPUT', `cannot read the ${what} ${path}: ${(err as Error).message}`, {cause: err})
  }
  let fd: number
  try {
    // a secret is checked on the descriptor it is read from; non-blocking, so that a FIFO is refused
    // rather than waited on
    fd = o.ownerOnly === undefined ? openSync(path, 'r') : openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK)
  } catch (err) {
    throw failed(err)
  }
  try {
    if (o.ownerOnly !== undefined) checkOwnerOnly(fd, path, what, o.ownerOnly)
    // one buffer, grown by doubling up to limit + 1 bytes: a pipe that trickles its bytes costs no more
    // memory than a file of the same size (a buffer kept per read held 64 KiB for each byte read)
    let buf = Buffer.allocUnsafe(Math.min(64 * 1024, limit + 1))
    let size = 0
    for (;;) {
      if (size === buf.length) {
        if (size > limit) throw inputTooLarge(path, o)
        const bigger = Buffer.allocUnsafe(Math.min(2 * buf.length, limit + 1))
        buf.copy(bigger, 0, 0, size)
        buf = bigger
      }
      let n: number
      try {
        n = readSync(fd, buf, size, buf.length - size, null)
      } catch (err) {
        throw failed(err)
      }
      if (n === 0) return buf.toString('utf8', 0, size)
      size += n
    }
  } finally {
    closeSync(fd)
  }
}

/**
 * A text file sshca edits in place but does not own (known_hosts, ~/.ssh/config): its text when it is
 * UTF-8, else ERR_INPUT. Rewriting keeps every byte outside sshca's block only if decoding lost none,
 * and a Latin-1 `Host josé` written back as UTF-8 would no longer match what ssh is given.
 */
export async function readUtf8File(path: string): Promise<string> {
  const bytes = await readFile(path)
  const text = bytes.toString('utf8')
  if (!Buffer.from(text, 'utf8').equals(bytes))
    throw new SshcaError('ERR_INPUT', `${path} is not UTF-8 text: sshca would change bytes outside its block`, {
      hint: `convert it to UTF-8 (iconv -f latin1 -t utf-8), then run this again`,
    })
  return text
}

/**
 * Writes `data` to a temp file beside `path` (mode `mode`), fsyncs it and renames it over `path`:
 * readers see the old file or the new one, never a mix.
 */
export async function writeFileAtomic(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const tmp = join(dirname(path), `.${nodeCrypto().randomBytes(6).toString('hex')}.tmp`)
  const fh = await open(tmp, 'wx', mode)
  try {
    await fh.writeFile(data)
    await fh.chmod(mode)
    await fh.sync()
  } catch (err) {
    await fh.close()
    await rm(tmp, {force: true})
    throw err
  }
  await fh.close()
  try {
    await rename(tmp, path)
  } catch (err) {
    // Stryker disable next-line ObjectLiteral,BooleanLiteral: a failed rename leaves the temp file; if someone removed it, rename and rm both fail ENOENT
    await rm(tmp, {force: true})
    throw err
  }
}

/**
 * mkdir -p, 0700 for every directory it creates. Existing directories keep their mode: this must
 * never tighten /etc because someone ran `ca init --dir /etc/sshca`.
 */
export async function privateDir(path: string): Promise<void> {
  await mkdir(path, {recursive: true, mode: 0o700})
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw err
  }
}

/**
 * Refuses, on its open descriptor `fd`, a secret file (`what`: "ID token") that is not a regular file
 * or that has any group or other permission bit: another local user who can read a token can spend
 * it first (SECURITY.md row 1). On the descriptor, so the file checked is the file read.
 */
export function checkOwnerOnly(fd: number, path: string, what: string, hint: string): void {
  const s = fstatSync(fd)
  if (!s.isFile()) throw new SshcaError('ERR_INPUT', `${path} holds the ${what} but is not a regular file`, {hint})
  if (s.mode & 0o077) {
    throw new SshcaError(
      'ERR_FILE_PERMISSIONS',
      `${path} holds the ${what} and other users may read or replace it (mode 0${(s.mode & 0o777).toString(8)})`,
      {hint},
    )
  }
}

/**
 * checkOwnerOnly for a file sshca does not read now (a path it records, a token it may not need):
 * opened, checked, closed. A file that does not exist passes: whatever keeps it fresh may not have
 * written it yet, and whoever reads it later checks it again.
 */
export function assertOwnerOnlyFile(path: string, what: string, hint: string): void {
  let fd: number
  try {
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw new SshcaError('ERR_INPUT', `cannot read the ${what} ${path}: ${(err as Error).message}`, {cause: err})
  }
  try {
    checkOwnerOnly(fd, path, what, hint)
  } finally {
    closeSync(fd)
  }
}

/** Refuses a secret file that group or others can read. */
export async function assertPrivateFile(path: string): Promise<void> {
  const s = await stat(path)
  if (s.mode & 0o077) {
    throw new SshcaError(
      'ERR_FILE_PERMISSIONS',
      `${path} is readable by others (mode ${(s.mode & 0o777).toString(8)})`,
      {hint: `chmod 600 ${path}`},
    )
  }
}

/**
 * Refuses a path that is a symbolic link: a file sshca is asked to write (--out) must be written
 * there, not wherever a link planted in a shared folder points (writeFileAtomic's rename would
 * replace the link anyway; this says so before anything is spent).
 */
export async function refuseSymlink(path: string): Promise<void> {
  const link = await lstat(path).then(
    (s) => s.isSymbolicLink(),
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false
      throw err
    },
  )
  if (link) {
    throw new SshcaError(
      'ERR_UNSAFE_PATH',
      `${path} is a symbolic link; sshca writes keys and certificates only to a file of that name, never through a link`,
      {
        hint: `remove the link (rm ${path}) or choose another --out`,
      },
    )
  }
}
