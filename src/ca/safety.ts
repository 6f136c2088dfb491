/**
 * The emergency stop and what the CA says about itself: `sshca ca stop-issuance`, `sshca ca
 * resume-issuance` and `sshca ca status`, run on the CA box next to the serving CA(s).
 *
 * A stop is written twice: to the store (every replica on it reads the stop each second, refuses to
 * issue from then on — 503 issuance_stopped — and re-reads ca.yaml), and as `disabled: true` in
 * ca.yaml (so a CA started from this directory against another store, a restored one say, is stopped
 * too). Editing ca.yaml back does not resume: only `ca resume-issuance` lifts the store's stop. Both
 * are recorded as admin events, which the running server writes to its audit log.
 *
 * What a stop promises is bounded by what was issued before it: `status` gives the last moment any
 * certificate this CA ever issued is valid ("after T nothing signed by this CA works"), counting
 * revoked ones too, since a host without the current KRL still accepts them.
 */
import {readFile} from 'node:fs/promises'
import {parseDocument} from 'yaml'
import {SshcaError} from '../errors.ts'
import {writeFileAtomic} from '../util/fs.ts'
import {replayWindowSeconds} from './backup.ts'
import {loadConfig, type CaConfig} from './config/config.ts'
import {caPaths} from './config/layout.ts'
import {certFingerprint, parseCert, pemToDer} from './keys/pki.ts'
import {withStore} from './store/open.ts'
import {RESTORE_LEEWAY, type InventorySummary, type IssuanceStop, type Store} from './store/store.ts'

const iso = (s: number | bigint): string => new Date(Number(s) * 1000).toISOString()
const nowOf = (clock?: () => number): number => Math.floor((clock ?? Date.now)() / 1000)
const MAX_REASON = 500

/** An admin command's --reason, for the audit log: one line of 1 to MAX_REASON characters. */
function oneLineReason(text: string, hint: string): string {
  const reason = text.trim()
  if (reason === '' || reason.length > MAX_REASON || /[\p{Cc}]/u.test(reason))
    throw new SshcaError('ERR_USAGE', `--reason must be one line of 1 to ${MAX_REASON} characters`, {hint})
  return reason
}

export interface IssuanceStatus {
  ca: {name: string; rootFingerprint: string; intermediateNotAfter: string; rootKeyOnline: boolean}
  /** What a monitor alerts on: false while stopped (by the store's stop or by ca.yaml). */
  issuing: boolean
  state: 'issuing' | 'stopped'
  /** The store's emergency stop: when (ISO) and why; null when none. */
  stop: {since: string; reason: string} | null
  /** ca.yaml's `disabled`. */
  configDisabled: boolean
  now: string
  certificates: {
    user: {active: number; lastValidBefore: string | null}
    host: {active: number; lastValidBefore: string | null}
  }
  /**
   * The last moment any certificate this CA issued is valid (ISO): after it nothing signed by this CA
   * works. null when it never issued one.
   */
  lastValidBefore: string | null
  /** True once that moment has passed. */
  nothingValid: boolean
  /** When the store was restored from a backup (the restore window's mark), or null. */
  restoredAt: string | null
}

function summaryView(
  s: InventorySummary,
  now: number,
): Pick<IssuanceStatus, 'certificates' | 'lastValidBefore' | 'nothingValid'> {
  const last = [s.user.lastValidBefore, s.host.lastValidBefore]
    .filter((v): v is bigint => v !== null)
    .reduce<bigint | null>((a, b) => (a === null || b > a ? b : a), null)
  return {
    certificates: {
      user: {
        active: s.user.active,
        lastValidBefore: s.user.lastValidBefore === null ? null : iso(s.user.lastValidBefore),
      },
      host: {
        active: s.host.active,
        lastValidBefore: s.host.lastValidBefore === null ? null : iso(s.host.lastValidBefore),
      },
    },
    lastValidBefore: last === null ? null : iso(last),
    nothingValid: last === null || last <= BigInt(now),
  }
}

async function identity(config: CaConfig): Promise<IssuanceStatus['ca']> {
  const p = caPaths(config.dir)
  const [root, intermediate] = await Promise.all([readFile(p.rootCert, 'utf8'), readFile(p.intermediateCert, 'utf8')])
  let rootKeyOnline = true
  try {
    await readFile(p.rootKey)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    rootKeyOnline = false
  }
  return {
    name: config.name,
    rootFingerprint: certFingerprint(pemToDer(root)),
    intermediateNotAfter: parseCert(intermediate).notAfter.toISOString(),
    rootKeyOnline,
  }
}

async function statusOf(config: CaConfig, store: Store, now: number): Promise<IssuanceStatus> {
  const [stop, summary, restoredAt, ca] = await Promise.all([
    store.issuanceStop(),
    store.inventorySummary(now),
    store.restoredAt(),
    identity(config),
  ])
  const issuing = stop === null && !config.disabled
  return {
    ca,
    issuing,
    state: issuing ? 'issuing' : 'stopped',
    stop: stop ? {since: iso(stop.at), reason: stop.reason} : null,
    configDisabled: config.disabled,
    now: iso(now),
    ...summaryView(summary, now),
    restoredAt: restoredAt === null ? null : iso(restoredAt),
  }
}

export async function issuanceStatus(o: {configPath: string; clock?: () => number}): Promise<IssuanceStatus> {
  const {config} = await loadConfig(o.configPath)
  return withStore(config, 'admin', (store) => statusOf(config, store, nowOf(o.clock)))
}

/** Sets `disabled` in ca.yaml, keeping its comments; false when it already said so. */
async function setDisabled(configPath: string, disabled: boolean): Promise<boolean> {
  const doc = parseDocument(await readFile(configPath, 'utf8'))
  if (doc.get('disabled') === disabled) return false
  doc.set('disabled', disabled)
  await writeFileAtomic(configPath, doc.toString())
  return true
}

export interface StopResult extends IssuanceStatus {
  /** False when a stop was already in force (its time and reason are kept). */
  changed: boolean
}

/**
 * Replicas read the stop each second (server.ts), and every issuance checks it once more just before
 * its commit (however long it waited on a webhook or the IdP's keys): a request that commits within
 * this long of the stop may still issue, so the last validity is computed after it, counting those.
 */
export const STOP_SETTLE_MS = 2500

export async function stopIssuance(o: {
  configPath: string
  reason: string
  clock?: () => number
  settleMs?: number
}): Promise<StopResult> {
  const reason = oneLineReason(o.reason, 'say why, for the audit log: --reason "user CA key may be compromised"')
  const {config} = await loadConfig(o.configPath)
  const now = nowOf(o.clock)
  let inStore = false
  try {
    return await withStore(config, 'admin', async (store) => {
      // the store first: it is what every replica reads each second; ca.yaml follows for CAs on other stores
      const changed = await store.exclusive('issuance-stop', async () => {
        const before = await store.issuanceStop()
        if (before) return false
        const stop: IssuanceStop = {at: now, reason}
        await store.setIssuanceStop(stop)
        return true
      })
      inStore = true
      return stopped(store, changed)
    })
  } catch (err) {
    // the database down, or its lock held by a process that stopped with it: the stop is not in the
    // store every replica reads, but ca.yaml still says it, for the CA serving from it (at its next
    // reload) and for whoever reads the file; a stop never waits for the database to come back
    if (inStore || !(err instanceof SshcaError) || err.code !== 'ERR_STORE_UNAVAILABLE') throw err
    const yamlChanged = await setDisabled(config.path, true)
    throw new SshcaError(
      'ERR_STORE_UNAVAILABLE',
      `${err.message}: the stop is not in the store the replicas read. ${config.path} says disabled: true${yamlChanged ? ' now' : ' already'}, so a CA serving from it stops at its next reload`,
      {
        cause: err,
        details: {...err.details, config: config.path, config_changed: yamlChanged},
        hint: 'reload each replica now (SIGHUP: systemctl reload sshca), and run ca stop-issuance again once the database answers',
      },
    )
  }

  async function stopped(store: Store, changed: boolean): Promise<StopResult> {
    const yamlChanged = await setDisabled(config.path, true)
    if (changed) await new Promise((r) => setTimeout(r, o.settleMs ?? STOP_SETTLE_MS))
    const status = await statusOf({...config, disabled: true}, store, nowOf(o.clock))
    await store.recordAdminEvent(
      'issuance_stopped',
      {
        reason,
        already_stopped: !changed,
        stopped_at: status.stop?.since ?? iso(now),
        config: config.path,
        config_changed: yamlChanged,
        last_valid_before: status.lastValidBefore,
      },
      now,
    )
    return {...status, changed}
  }
}

export interface MarkRestoredResult {
  /** The store's restore mark: tokens issued before it (and within a minute after) are refused. */
  restoredAt: string
  /** How long, from the mark, a token this CA accepts can still turn up: after that the mark stops mattering. */
  windowSeconds: number
}

/**
 * `ca mark-restored`: the store came back from a copy older than now by other means than `ca restore`
 * (pg_restore of a dump, a file system or VM snapshot). Tokens spent after that copy was taken are
 * missing from it, so they would sign again: the mark makes every CA serving from the store refuse any
 * token issued before now, within a second (each reads the mark every second), as the first start
 * after `ca restore` does. Never moves the mark back. Recorded as ca_restored.
 */
export async function markStoreRestored(o: {
  configPath: string
  reason: string
  clock?: () => number
}): Promise<MarkRestoredResult> {
  const reason = oneLineReason(
    o.reason,
    'say what was restored, for the audit log: --reason "pg_restore of the 02:00 dump"',
  )
  const {config} = await loadConfig(o.configPath)
  const now = nowOf(o.clock)
  return withStore(config, 'admin', (store) =>
    store.exclusive('restore-mark', async () => {
      // the mark is this machine's clock, and never moves back: one behind the store's newest
      // certificate would leave tokens spent since then signing again
      const [newest] = await store.certificates({limit: 1})
      if (newest && now < newest.issuedAt - RESTORE_LEEWAY)
        throw new SshcaError(
          'ERR_USAGE',
          `this machine's clock (${iso(now)}) is behind the store's newest certificate (issued ${iso(newest.issuedAt)}): nothing was marked`,
          {hint: 'set the clock right (NTP), or run it on the CA host, then again'},
        )
      const mark = await store.markRestored(now)
      await store.recordAdminEvent(
        'ca_restored',
        {reason, restore_mark: iso(mark), marked_by: 'sshca ca mark-restored', config: config.path},
        now,
      )
      return {restoredAt: iso(mark), windowSeconds: replayWindowSeconds(config)}
    }),
  )
}

export async function resumeIssuance(o: {
  configPath: string
  reason: string
  clock?: () => number
}): Promise<StopResult> {
  const reason = oneLineReason(o.reason, 'say why issuing is safe again, for the audit log')
  const {config} = await loadConfig(o.configPath)
  const now = nowOf(o.clock)
  return withStore(config, 'admin', async (store) => {
    const before = await store.issuanceStop()
    // ca.yaml first: a replica re-reads it when it sees the store's stop lifted; in the other order it
    // could re-read the old `disabled: true` and stay stopped
    const yamlChanged = await setDisabled(config.path, false)
    await store.exclusive('issuance-stop', () => store.setIssuanceStop(null))
    const status = await statusOf({...config, disabled: false}, store, now)
    await store.recordAdminEvent(
      'issuance_resumed',
      {
        reason,
        was_stopped_since: before ? iso(before.at) : null,
        stop_reason: before?.reason ?? null,
        config: config.path,
        config_changed: yamlChanged,
      },
      now,
    )
    return {...status, changed: before !== null || yamlChanged}
  })
}
