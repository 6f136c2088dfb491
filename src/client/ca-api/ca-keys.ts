/**
 * The CA's published SSH keys, kept current on every machine without hand edits: a rotation
 * publishes the next key beside the active one on /ssh/roots, and every command that talks to the
 * CA anyway (config, login, the host's KRL timer and renewal) refreshes its copy:
 *   - the context's cached user and host CA keys (what login and renew check certificates against);
 *   - the known_hosts block `sshca config` wrote (its @cert-authority lines, one per host CA key);
 *   - on a server, the TrustedUserCAKeys file `sshca config --host` wrote (`sshca krl --user-ca-keys`).
 * During an overlap both keys are trusted; after the old key is retired, only the new one.
 */
import {readFile, stat} from 'node:fs/promises'
import {homedir} from 'node:os'
import {dirname, join} from 'node:path'
import {SshcaError} from '../../errors.ts'
import {SshRootsResponse, type CaKeyInfo} from '../../protocol/api.ts'
import {caHostPattern, effectivePattern} from '../../ssh/host-pattern.ts'
import {PublicKey} from '../../ssh/keys.ts'
import {exists, privateDir, readUtf8File, writeFileAtomic} from '../../util/fs.ts'
import {CaClient} from './ca-client.ts'
import {readContext, type Context} from '../home/home.ts'
import {mergeKnownHosts, mergeManagedBlock} from '../local/known-hosts.ts'
import {followRootRotation} from './roots.ts'
import {homeOf, updateContext, withSettingsLock} from '../home/settings-lock.ts'

export interface RefreshedRoots {
  ctx: Context
  /** Each published key's rotation state, when the CA says (sshca does; step-ca does not). */
  keys: {user: CaKeyInfo[]; host: CaKeyInfo[]} | undefined
  changed: boolean
}

/**
 * The CA's current SSH keys and host pattern over pinned TLS; the context's cached copy is updated
 * when they changed. A CA that sends no host pattern names no hosts (step-ca's /ssh/roots has none).
 */
export async function fetchSshRoots(ctx: Context, client?: CaClient): Promise<RefreshedRoots> {
  const ca = client ?? new CaClient(ctx.caUrl, ctx.rootPem)
  try {
    // a root rotation travels the same way: the new root, vouched for by the pinned one
    const [roots, followed] = await Promise.all([
      ca.call('GET', '/ssh/roots', SshRootsResponse),
      followRootRotation(ctx, ca),
    ])
    const line = (b64: string, what: string) =>
      PublicKey.fromBlob(Buffer.from(b64, 'base64')).toLine(`${ctx.name} ${what}`)
    const next: Context = {
      ...followed.ctx,
      userCaKeys: roots.userKey.map((k) => line(k, 'user CA')),
      hostCaKeys: roots.hostKey.map((k) => line(k, 'host CA')),
      hostPattern: caHostPattern(roots.hostPattern),
    }
    const changed =
      followed.changed ||
      JSON.stringify([next.userCaKeys, next.hostCaKeys, next.hostPattern]) !==
        JSON.stringify([ctx.userCaKeys, ctx.hostCaKeys, ctx.hostPattern])
    // only what the CA publishes, over the settings as saved now (config may have saved its own since);
    // the roots only when they moved here from the ones saved now: a rotation another login saved
    // meanwhile stays (the next refresh follows the CA from there)
    if (changed)
      await updateContext(ctx, (saved) => ({
        ...saved,
        ...(followed.changed && saved.rootPem === ctx.rootPem
          ? {rootPem: next.rootPem, rootFingerprint: next.rootFingerprint}
          : {}),
        userCaKeys: next.userCaKeys,
        hostCaKeys: next.hostCaKeys,
        hostPattern: next.hostPattern,
      }))
    return {ctx: next, keys: roots.keys, changed}
  } finally {
    if (!client) ca.close()
  }
}

export async function refreshSshRoots(ctx: Context, client?: CaClient): Promise<Context> {
  return (await fetchSshRoots(ctx, client)).ctx
}

export const defaultKnownHosts = (): string => join(homedir(), '.ssh', 'known_hosts')

/**
 * Takes the context's @cert-authority block out of a known_hosts file (with a backup beside it, as
 * every rewrite of it); null when the file holds none. `write: false` only says whether it would.
 * Call it under the settings lock.
 */
export async function dropKnownHostsBlock(
  file: string,
  context: string,
  o: {write?: boolean} = {},
): Promise<{file: string; backup: string | null} | null> {
  if (!(await exists(file))) return null
  const merged = mergeManagedBlock(await readUtf8File(file), context, () => '', 'known_hosts')
  if (!merged.changed) return null
  return {file, backup: o.write === false ? null : await replaceWithBackup(file, merged.text, 0o644)}
}

/**
 * Writes `text` over `file` atomically, keeping its mode, after saving the old file beside it. The
 * backup is written as `file` is (a new file renamed into place): copying onto its name followed
 * whatever was there, so a link planted in a folder others can write (a shared known_hosts given
 * with --known-hosts, a dotfiles folder) would have had another file of ours overwritten and re-moded.
 */
export async function replaceWithBackup(file: string, text: string, newMode: number): Promise<string | null> {
  await privateDir(dirname(file))
  let mode = newMode
  let backup: string | null = null
  if (await exists(file)) {
    mode = (await stat(file)).mode & 0o777
    backup = `${file}.sshca-backup`
    await writeFileAtomic(backup, await readFile(file), mode)
  }
  await writeFileAtomic(file, text, mode)
  return backup
}

/**
 * Brings the known_hosts block `sshca config` wrote for this context up to the published host CA
 * keys as saved (login calls it after refreshing them). Nothing is written where config never wrote
 * a block, or when the block is already current. The pattern and the file are config's as saved now, read
 * under the settings lock: a login that began before `config --pattern` narrowed the trust cannot
 * widen it back. Returns the file when it changed.
 */
export async function syncKnownHosts(ctx: Pick<Context, 'dir' | 'name'>): Promise<string | null> {
  const update = async () => {
    const saved = await readContext(homeOf(ctx), ctx.name)
    return saved ? knownHostsUpdate(saved) : null
  }
  // most logins: the block is current, and no lock is needed to see that
  if ((await update()) === null) return null
  return withSettingsLock(homeOf(ctx), async () => {
    const u = await update()
    if (u === null) return null
    await replaceWithBackup(u.file, u.text, 0o644)
    return u.file
  })
}

/** The known_hosts file with the context's block brought up to its host CA keys; null when nothing changes. */
async function knownHostsUpdate(ctx: Context): Promise<{file: string; text: string} | null> {
  if (ctx.configuredPattern === undefined || ctx.hostCaKeys.length === 0) return null
  const file = ctx.knownHostsFile ?? defaultKnownHosts()
  if (!(await exists(file))) return null
  const existing = await readUtf8File(file)
  // only a file that already holds this context's block: it is ours to keep current
  if (!existing.includes(`# >>> sshca ${ctx.name} `)) return null
  const pattern = effectivePattern(ctx.hostPattern, ctx.configuredPattern)
  const keys = ctx.hostCaKeys.map((l) => PublicKey.parseLine(l).key.toLine(`${ctx.name} host CA`))
  const {text, changed} = mergeKnownHosts(existing, ctx.name, pattern, keys)
  return changed ? {file, text} : null
}

/**
 * A server's TrustedUserCAKeys file, rewritten when the CA's published user CA keys differ from it.
 * An empty set is refused (sshd would then accept no certificate at all): the file is kept.
 */
export async function syncTrustedUserCaKeys(
  ctx: Context,
  file: string,
): Promise<{file: string; keys: number; changed: boolean}> {
  if (ctx.userCaKeys.length === 0)
    throw new SshcaError('ERR_CA_BAD_RESPONSE', `the CA "${ctx.name}" publishes no user CA key; ${file} was kept`)
  const text = ctx.userCaKeys.map((l) => `${PublicKey.parseLine(l).key.toLine(`${ctx.name} user CA`)}\n`).join('')
  const current = (await exists(file)) ? await readFile(file, 'utf8') : null
  if (current === text) return {file, keys: ctx.userCaKeys.length, changed: false}
  await privateDir(dirname(file))
  await writeFileAtomic(file, text, 0o644)
  return {file, keys: ctx.userCaKeys.length, changed: true}
}
