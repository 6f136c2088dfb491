/**
 * The restore window, on the process side. `ca restore` leaves `restore-pending.json` in the CA
 * directory; the restored CA's first start moves the store's restore mark to that moment (the mark
 * never moves back) and removes the file, so tokens issued before the restored CA began to serve are
 * refused, also those spent on the old CA between the restore and this start. A file rather than a
 * row because the store may not be reachable when the directory is restored (PostgreSQL is restored
 * with its own tools, perhaps later); `ca restore` also marks a SQLite snapshot itself.
 */
import {readFile, rm} from 'node:fs/promises'
import {SshcaError} from '../errors.ts'
import {caPaths} from './config/layout.ts'
import type {Store} from './store/store.ts'

export interface RestorePending {
  format: 'sshca-restore-pending'
  version: 1
  /** When `ca restore` ran (ISO). */
  restoredAt: string
  /** What the archive says about itself. */
  archive: {createdAt: string; snapshotAt: string | null; store: string; rootFingerprint: string}
}

export async function readRestorePending(dir: string): Promise<RestorePending | undefined> {
  let text: string
  try {
    text = await readFile(caPaths(dir).restorePending, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  try {
    const v = JSON.parse(text) as RestorePending
    if (v.format === 'sshca-restore-pending') return v
  } catch {
    // below
  }
  // present but unreadable: still a restore; fail closed by treating it as one
  return {
    format: 'sshca-restore-pending',
    version: 1,
    restoredAt: 'unknown',
    archive: {createdAt: 'unknown', snapshotAt: null, store: 'unknown', rootFingerprint: 'unknown'},
  }
}

/**
 * At start: when a restore is pending, marks the store (now) under the store's lock, records
 * `ca_restored` for the audit log and removes the file. Returns the mark, or undefined when no
 * restore was pending.
 */
export async function applyPendingRestore(
  dir: string,
  store: Store,
  now: number,
): Promise<{mark: number; pending: RestorePending} | undefined> {
  return store.exclusive('restore-mark', async () => {
    const pending = await readRestorePending(dir)
    if (!pending) return undefined
    const mark = await store.markRestored(now)
    await store.recordAdminEvent(
      'ca_restored',
      {
        restored_at: pending.restoredAt,
        archive: pending.archive,
        restore_mark: new Date(mark * 1000).toISOString(),
        marked_by: 'first start after the restore',
      },
      now,
    )
    await rm(caPaths(dir).restorePending, {force: true})
    return {mark, pending}
  })
}

/**
 * Commands that mint tokens (`ca token`) refuse while the window would refuse what they mint: before
 * the restored CA's first start (which moves the mark to then), and in the leeway after the mark.
 */
export async function assertMintable(dir: string, store: Store, now: number, leeway: number): Promise<void> {
  if (await readRestorePending(dir)) {
    throw new SshcaError(
      'ERR_USAGE',
      'this CA was restored from a backup and has not served since: a token minted now would be refused by its first start, which closes the replay window at that moment',
      {
        hint: 'start the restored CA first (sshca ca serve), then mint tokens',
      },
    )
  }
  const mark = await store.restoredAt()
  if (mark !== null && now < mark + leeway) {
    throw new SshcaError(
      'ERR_USAGE',
      `this CA was restored ${now - mark} s ago; tokens issued within ${leeway} s of the restore are refused (clock skew)`,
      {hint: `try again in ${mark + leeway - now} s`},
    )
  }
}
