/**
 * One writer at a time of what sshca keeps for its contexts: each context.json, the managed
 * ssh_config and the known_hosts blocks. `sshca config`, login's refreshes (the CA's keys, the
 * provisioner, the agentless state, the revocation list in the block, the known_hosts block),
 * logout and `context remove` each read under the lock what they change and write only their own
 * part, so none writes back a copy older than another's: a login that began before a `config
 * --pattern` cannot widen the trust that config narrowed, nor bring back a removed context's block.
 */
import {dirname, join} from 'node:path'
import {writeFileAtomic} from '../../util/fs.ts'
import {readContext, ROOT_FILE, saveContext, type Context} from './home.ts'
import {withLock} from './lock.ts'

const SETTINGS_LOCK = 'settings.lock'

/** The home a context lives in ($SSHCA_HOME/contexts/NAME). */
export const homeOf = (ctx: Pick<Context, 'dir'>): string => dirname(dirname(ctx.dir))

/** Runs `fn` holding $SSHCA_HOME/settings.lock (ERR_BUSY when another sshca holds it over 10 s). */
export function withSettingsLock<T>(home: string, fn: () => Promise<T>): Promise<T> {
  // each holder reads and writes a few small files: a lock older than this was left by a crash
  return withLock(
    join(home, SETTINGS_LOCK),
    {timeoutMs: 10_000, staleMs: 30_000, holder: "another sshca writing its contexts' settings", code: 'ERR_BUSY'},
    fn,
  )
}

/**
 * Saves `change` applied to the context as it is saved now, under the lock: each writer changes only
 * its own fields (the root too: root_ca.crt is written before the fingerprint that names it). Nothing
 * (undefined) when the context was removed meanwhile, or bootstrapped again: that is another trust (a
 * new `bootstrappedAt`, perhaps another CA under the same name), and what a login that began before it
 * learnt from the old CA (its keys, its roots) must not land in it.
 */
export async function updateContext(
  ctx: Pick<Context, 'dir' | 'name' | 'bootstrappedAt'>,
  change: (saved: Context) => Context,
): Promise<Context | undefined> {
  const home = homeOf(ctx)
  return withSettingsLock(home, async () => {
    const saved = await sameContext(ctx)
    if (!saved) return undefined
    const next = change(saved)
    if (next.rootPem !== saved.rootPem) await writeFileAtomic(join(saved.dir, ROOT_FILE), next.rootPem)
    if (JSON.stringify(next) !== JSON.stringify(saved)) await saveContext(next)
    return next
  })
}

/**
 * The context as saved now if it is still the one `ctx` was read from (the same bootstrap); undefined
 * when it was removed or bootstrapped again. Call it under the settings lock, before writing for `ctx`.
 */
export async function sameContext(ctx: Pick<Context, 'dir' | 'name' | 'bootstrappedAt'>): Promise<Context | undefined> {
  const saved = await readContext(homeOf(ctx), ctx.name)
  return saved?.bootstrappedAt === ctx.bootstrappedAt ? saved : undefined
}
