/**
 * The version of $SSHCA_HOME's layout, so a home written by an older sshca still loads and one
 * written by a newer sshca is refused instead of misread.
 *
 * `$SSHCA_HOME/layout.json` holds `{"layout": N}`. A home without it is layout 1: what sshca 0.1.0
 * wrote (`current`, `contexts/NAME/{context.json, root_ca.crt, revoked_host_keys.krl}`, `tokens/`,
 * `ssh_config`), before the layout had a number. When the file layout changes, the change becomes
 * the next entry of HOME_MIGRATIONS: it moves a home from layout N to N+1, runs on the first command
 * that reads the home (checkHome), and must be idempotent, writing every file it changes to a temp
 * name and renaming it into place. layout.json is rewritten (atomically) after each step, so a step
 * that was cut short runs again, whole, next time; two sshca processes migrating the same home at
 * once (ssh's Match exec runs one per connection) do the same idempotent renames. Never edit a
 * migration that has shipped: add the next one.
 */
import {closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync} from 'node:fs'
import {join} from 'node:path'
import {SshcaError} from '../../errors.ts'
import {nodeCrypto} from '../../util/node-crypto.ts'

export const LAYOUT_FILE = 'layout.json'

export interface HomeMigration {
  /** The layout this step produces (the previous one is `to - 1`). */
  to: number
  /** What it changes, in words (the result lists it). */
  what: string
  apply(home: string): void
}

/** The layout changes since sshca 0.1.0 (layout 1), oldest first. None yet. */
export const HOME_MIGRATIONS: readonly HomeMigration[] = []

/** The layout this sshca writes and reads. */
export const HOME_LAYOUT = 1 + HOME_MIGRATIONS.length

export interface LayoutResult {
  /** The layout found (1 for a home without layout.json). */
  from: number
  to: number
  /** The `what` of each migration applied. */
  applied: string[]
  /** False when layout.json could not be written (a read-only home that needed no change). */
  stamped: boolean
}

/** Temp file beside `path`, fsync, rename: readers see the old file or the new one. */
export function writeFileAtomicSync(path: string, data: string, mode = 0o600): void {
  const tmp = `${path}.${nodeCrypto().randomBytes(6).toString('hex')}.tmp`
  const fd = openSync(tmp, 'wx', mode)
  try {
    writeSync(fd, data)
    fsyncSync(fd)
  } catch (err) {
    closeSync(fd)
    rmSync(tmp, {force: true})
    throw err
  }
  closeSync(fd)
  try {
    renameSync(tmp, path)
  } catch (err) {
    rmSync(tmp, {force: true})
    throw err
  }
}

/** The layout number recorded in `home`, 1 when none is. Throws ERR_HOME_LAYOUT for a damaged file. */
export function readLayout(home: string): number {
  const path = join(home, LAYOUT_FILE)
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 1
    throw err
  }
  let layout: unknown
  try {
    layout = (JSON.parse(text) as {layout?: unknown} | null)?.layout
  } catch {
    layout = undefined
  }
  if (typeof layout !== 'number' || !Number.isSafeInteger(layout) || layout < 1) {
    throw new SshcaError(
      'ERR_HOME_LAYOUT',
      `${path} is damaged: it should hold {"layout": N}, and holds ${JSON.stringify(text.slice(0, 60))}`,
      {
        hint: `if no newer sshca wrote it, remove it (rm ${path}): the home is then read as the first layout and the file written again`,
      },
    )
  }
  return layout
}

/**
 * Brings `home` to this sshca's layout (see the module comment); a home that does not exist yet is
 * left alone. Refuses (ERR_HOME_LAYOUT) a layout newer than this sshca knows, changing nothing.
 */
export function ensureHomeLayout(home: string, migrations: readonly HomeMigration[] = HOME_MIGRATIONS): LayoutResult {
  const current = 1 + migrations.length
  if (!existsSync(home)) return {from: current, to: current, applied: [], stamped: false}
  const from = readLayout(home)
  if (from > current) {
    throw new SshcaError(
      'ERR_HOME_LAYOUT',
      `${home} was written by a newer sshca (home layout ${from}); this one reads layouts up to ${current} and will not guess at the rest`,
      {
        hint: 'upgrade sshca (sshca --version says how it was installed and how to upgrade it), or point SSHCA_HOME at another folder',
        details: {home, layout: from, supported: current},
      },
    )
  }
  const stamp = (layout: number): void => writeFileAtomicSync(join(home, LAYOUT_FILE), `${JSON.stringify({layout})}\n`)
  const applied: string[] = []
  for (const m of migrations.filter((x) => x.to > from).sort((a, b) => a.to - b.to)) {
    try {
      m.apply(home)
      stamp(m.to)
    } catch (err) {
      if (err instanceof SshcaError) throw err
      throw new SshcaError(
        'ERR_HOME_LAYOUT',
        `could not bring ${home} from layout ${m.to - 1} to ${m.to} (${m.what}): ${(err as Error).message}`,
        {
          cause: err,
          hint: 'fix what the message names and run the command again: each step is safe to repeat',
        },
      )
    }
    applied.push(m.what)
  }
  if (from === current && !existsSync(join(home, LAYOUT_FILE))) {
    // a home from before layouts had numbers, already in the current shape: record it, if we may
    try {
      stamp(current)
    } catch {
      return {from, to: current, applied, stamped: false}
    }
  }
  return {from, to: current, applied, stamped: true}
}
