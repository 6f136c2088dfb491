/**
 * The context's copy of the CA's key revocation list, for ssh's RevokedHostKeys: so that `ssh`
 * refuses a host certificate the CA revoked. Fetched over TLS pinned to the context's root, parsed
 * before anything is written, then written atomically beside the context's settings. `sshca config`
 * and `sshca login` refresh it; a failure never fails them: the previous copy stays (ssh refuses
 * every host of the pattern when RevokedHostKeys names a missing file) and the result says why.
 */
import {readFileSync, utimesSync} from 'node:fs'
import {mkdtemp, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {isSshcaError, SshcaError} from '../../errors.ts'
import {parseKrl} from '../../ssh/krl.ts'
import {generatePrivateKey} from '../../ssh/private-key.ts'
import {writeFileAtomic} from '../../util/fs.ts'
import type {CaClient} from './ca-client.ts'
import type {Context} from '../home/home.ts'
import {homeOf, sameContext, withSettingsLock} from '../home/settings-lock.ts'

export const CONTEXT_KRL_FILE = 'revoked_host_keys.krl'

export const contextKrlPath = (dir: string): string => join(dir, CONTEXT_KRL_FILE)

export interface ContextKrl {
  /** The KRL ssh should read, when there is one (fresh, or the previous copy); null when none. */
  file: string | null
  /** refreshed: fetched now; unavailable: the CA publishes none (404); failed: kept what was there. */
  status: 'refreshed' | 'unavailable' | 'failed'
  /** When `file` was written (ISO), so a stale copy shows its age. */
  fetchedAt: string | null
  revokedSerials: number | null
  revokedKeyIds: number | null
  /** What a person should know when it is not `refreshed`. */
  note: string | null
}

async function mtime(path: string): Promise<string | null> {
  try {
    return (await stat(path)).mtime.toISOString()
  } catch {
    return null
  }
}

/**
 * Fetches GET /ssh/krl into `dir` (the context's folder by default; `write: false` checks only, for
 * --dry-run). Never throws for a network, CA or format failure: it reports it, keeping the previous copy.
 * A new list is written under the settings lock, and only while the context is still the one `ctx` was
 * read from: a login that began before the context was bootstrapped again (perhaps for another CA)
 * must not put the old CA's list in place of the new one's, which would drop the new CA's revocations.
 * `staged`: `dir` is bootstrap's folder, not yet the context's (nothing else writes in it).
 */
export async function refreshContextKrl(
  ctx: Context,
  ca: CaClient,
  dir: string = ctx.dir,
  o: {write?: boolean; staged?: boolean} = {},
): Promise<ContextKrl> {
  const file = contextKrlPath(dir)
  const kept = async (status: ContextKrl['status'], why: string): Promise<ContextKrl> => {
    const at = await mtime(file)
    const tail = at
      ? `ssh keeps using the copy from ${at}`
      : // Stryker disable next-line StringLiteral: words for a person, with nothing in them a program reads
        'ssh cannot refuse a revoked host certificate of this CA until it can'
    return {
      file: at ? file : null,
      status,
      fetchedAt: at,
      revokedSerials: null,
      revokedKeyIds: null,
      note: `${why}; ${tail}`,
    }
  }
  let bytes: Buffer
  try {
    bytes = await ca.bytes('/ssh/krl')
  } catch (err) {
    if (isSshcaError(err) && err.details?.status === 404)
      return kept('unavailable', `the CA "${ctx.name}" publishes no revocation list (GET /ssh/krl answered 404)`)
    return kept('failed', `could not refresh the revocation list of "${ctx.name}": ${(err as Error).message}`)
  }
  let krl
  // the same list as on disk (most logins) was checked when it was written
  const same = sameBytes(file, bytes)
  try {
    krl = parseKrl(bytes)
  } catch (err) {
    return kept(
      'failed',
      `the CA "${ctx.name}" sent a revocation list that does not parse (${(err as Error).message}); it was not written`,
    )
  }
  try {
    if (!same) await checkKrlLoads(bytes)
  } catch (err) {
    return kept(
      'failed',
      `the CA "${ctx.name}" sent a revocation list that ${(err as Error).message}; it was not written`,
    )
  }
  try {
    // the same list as on disk: its time is brought up to now, without a write and an fsync
    if (o.write !== false) {
      if (same) utimesSync(file, new Date(), new Date())
      else if (o.staged) await writeFileAtomic(file, bytes, 0o600)
      else if (!(await withSettingsLock(homeOf(ctx), () => writeForSameContext(ctx, file, bytes))))
        return kept(
          'failed',
          `the context "${ctx.name}" was removed or bootstrapped again meanwhile; this list was not written`,
        )
    }
  } catch (err) {
    return kept('failed', `could not write ${file}: ${(err as Error).message}`)
  }
  return {
    file,
    status: 'refreshed',
    fetchedAt: new Date().toISOString(),
    revokedSerials: new Set(krl.sections.flatMap((s) => s.serials.map(String))).size,
    revokedKeyIds: new Set(krl.sections.flatMap((s) => s.keyIds)).size,
    note: null,
  }
}

/**
 * The list loaded by this machine's OpenSSH (`ssh-keygen -Q`, the parser ssh and sshd use): one they
 * cannot load makes sshd refuse every public key and ssh every host key, so it is never written.
 * Throws ERR_CA_BAD_RESPONSE ("OpenSSH here cannot load (…)": the caller says whose list and what it
 * kept) when ssh-keygen refuses it; without ssh-keygen here, parseKrl's checks stand alone.
 */
export async function checkKrlLoads(bytes: Buffer): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sshca-krl-check-'))
  try {
    const krlFile = join(dir, 'krl')
    const probe = join(dir, 'probe.pub')
    // in a fresh 0700 folder, created new (wx): nothing planted there is followed
    await writeFile(krlFile, bytes, {mode: 0o600, flag: 'wx'})
    await writeFile(probe, `${generatePrivateKey('ed25519').publicKey.toLine('probe')}\n`, {mode: 0o600, flag: 'wx'})
    // node:child_process only for a list that changed: most logins fetch the one they already have
    const {errorTail, runQuiet, toolEnv} = await import('../../util/run.ts')
    // as root (sshca krl, config --host), the system's ssh-keygen, whatever PATH root was given
    const r = await runQuiet('ssh-keygen', ['-Q', '-f', krlFile, probe], 10_000, toolEnv())
    // 0: the probe is not revoked, 1: it is (it cannot be, but the list loaded); no ssh-keygen: no verdict
    if (r.missing || r.code === 0 || r.code === 1) return
    // killed (its 10 s ran out): no verdict on the list either, but none written unchecked
    if (r.code === null)
      throw new SshcaError('ERR_CA_BAD_RESPONSE', `ssh-keygen here could not check in time (${errorTail(r)})`)
    throw new SshcaError('ERR_CA_BAD_RESPONSE', `OpenSSH here cannot load (ssh-keygen -Q: ${errorTail(r)})`)
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
}

/** Under the settings lock: writes the list unless the context is gone or is another bootstrap now. */
async function writeForSameContext(ctx: Context, file: string, bytes: Buffer): Promise<boolean> {
  if (!(await sameContext(ctx))) return false
  await writeFileAtomic(file, bytes, 0o600)
  return true
}

function sameBytes(file: string, bytes: Buffer): boolean {
  try {
    return readFileSync(file).equals(bytes)
  } catch {
    // no copy yet (or none we can read): write one
  }
  return false
}
