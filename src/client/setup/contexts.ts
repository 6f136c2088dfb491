/**
 * `sshca context list|current|use|remove` (step's `context`): the CAs bootstrapped into
 * $SSHCA_HOME, which one commands use by default, and forgetting one completely.
 *
 * Removal undoes what bootstrap, config and login did, in the order that never leaves ssh worse
 * off: the CA's certificates leave the agent and its refresh tokens are forgotten (a failure there
 * leaves the context as it was, to remove again); then, under the settings lock, the @cert-authority
 * block (ssh stops trusting the CA's host certificates), the context's block in the managed
 * ssh_config (its RevokedHostKeys and login exec), only then the KRL file that block named (ssh
 * refuses every host when RevokedHostKeys names a missing file), and the folder.
 */
import {readFile, rm} from 'node:fs/promises'
import {homedir} from 'node:os'
import {join} from 'node:path'
import {SshcaError} from '../../errors.ts'
import {AgentClient, type AgentOptions} from '../../ssh/agent.ts'
import {PublicKey} from '../../ssh/keys.ts'
import {contextOfComment} from '../local/agent-hygiene.ts'
import {exists, writeFileAtomic} from '../../util/fs.ts'
import {dropKnownHostsBlock} from '../ca-api/ca-keys.ts'
import {
  checkHome,
  contextDir,
  currentContextName,
  listContexts,
  loadContext,
  readContext,
  validContextName,
  type Context,
} from '../home/home.ts'
import {contextKrlPath} from '../ca-api/krl.ts'
import {withSettingsLock} from '../home/settings-lock.ts'
import {hasSshConfigBlock, managedSshConfigPath, removeSshConfigBlock} from '../local/ssh-config.ts'
import type {TokenStore} from '../home/token-store.ts'

export interface ContextView {
  name: string
  current: boolean
  caUrl: string
  rootFingerprint: string
  /** The CA's host pattern, and the one `sshca config` wrote (null before config). */
  hostPattern: string
  configuredPattern: string | null
  bootstrappedAt: string
  /** Whether the managed ssh_config has a block for it. */
  sshConfig: boolean
  /** Why its certificates are in files rather than the agent, when they are. */
  agentless: string | null
}

function view(ctx: Context, current: string | undefined, managed: string): ContextView {
  return {
    name: ctx.name,
    current: ctx.name === current,
    caUrl: ctx.caUrl,
    rootFingerprint: ctx.rootFingerprint,
    hostPattern: ctx.hostPattern,
    configuredPattern: ctx.configuredPattern ?? null,
    bootstrappedAt: ctx.bootstrappedAt,
    sshConfig: hasSshConfigBlock(managed, ctx.name),
    agentless: ctx.agentless?.reason ?? null,
  }
}

export async function contextList(
  home: string,
): Promise<{home: string; current: string | null; contexts: ContextView[]}> {
  checkHome(home)
  const current = await currentContextName(home)
  const managed = await readFile(managedSshConfigPath(home), 'utf8').catch(() => '')
  const contexts: ContextView[] = []
  for (const name of await listContexts(home)) {
    const ctx = await readContext(home, name).catch(() => undefined)
    if (ctx) contexts.push(view(ctx, current, managed))
  }
  return {home, current: current ?? null, contexts}
}

export async function contextCurrent(home: string): Promise<ContextView> {
  const ctx = await loadContext(home)
  const managed = await readFile(managedSshConfigPath(home), 'utf8').catch(() => '')
  return view(ctx, ctx.name, managed)
}

export async function contextUse(home: string, name: string): Promise<{previous: string | null; current: ContextView}> {
  if (!validContextName(name))
    throw new SshcaError('ERR_USAGE', `"${name}" is not a context name (letters, digits, . _ -)`)
  const ctx = await loadContext(home, name)
  const previous = (await currentContextName(home)) ?? null
  await writeFileAtomic(join(home, 'current'), `${name}\n`)
  const managed = await readFile(managedSshConfigPath(home), 'utf8').catch(() => '')
  return {previous, current: view(ctx, name, managed)}
}

export interface RemoveResult {
  context: string
  wasCurrent: boolean
  knownHosts: {file: string; backup: string | null} | null
  sshConfig: {file: string} | null
  krl: string | null
  certificates: {keyId: string; serial: string}[]
  /** Why the agent was left alone (none reachable), when it was. */
  agent: string | null
  forgottenRefreshTokens: number
  directory: string
}

export async function contextRemove(
  home: string,
  name: string,
  deps: {agent: AgentOptions; tokenStore: () => Promise<TokenStore>; knownHostsDefault?: string},
): Promise<RemoveResult> {
  if (!validContextName(name))
    throw new SshcaError('ERR_USAGE', `"${name}" is not a context name (letters, digits, . _ -)`)
  const ctx = await loadContext(home, name)

  // 1. the CA's certificates in the agent
  const cas = new Set(ctx.userCaKeys.map((l) => PublicKey.parseLine(l).key.fingerprint()))
  const certificates: RemoveResult['certificates'] = []
  let agent: string | null = null
  try {
    await AgentClient.with(deps.agent, async (a) => {
      for (const id of await a.list()) {
        const c = id.certificate
        if (!c || !cas.has(c.signatureKey.fingerprint())) continue
        // sshca's certificate of another context that trusts the same CA key: that context's
        const owner = contextOfComment(id.comment)
        if (owner !== undefined && owner !== name) continue
        await a.remove(id.blob)
        certificates.push({keyId: c.keyId, serial: c.serial.toString()})
      }
    })
  } catch (err) {
    if ((err as SshcaError).code !== 'ERR_AGENT_UNAVAILABLE') throw err
    agent = (err as Error).message
  }
  // 2. refresh tokens
  const store = await deps.tokenStore()
  let forgotten = 0
  for (const key of await store.keys(`${name}/`)) {
    await store.delete(key)
    forgotten++
  }
  // 3–6 under the settings lock, which config and login take to write these files: once it is let
  // go, the context is gone, so neither writes back a block removed here or names the KRL removed here
  let knownHosts: RemoveResult['knownHosts'] = null
  let sshConfig: RemoveResult['sshConfig'] = null
  const krlFile = contextKrlPath(ctx.dir)
  let krl: string | null = null
  const directory = contextDir(home, name)
  let wasCurrent = false
  await withSettingsLock(home, async () => {
    // the context as saved now: config may have moved its known_hosts block meanwhile; one bootstrapped
    // again under the name is another CA, not the one this removal began with
    const saved = await readContext(home, name)
    if (saved && (saved.rootFingerprint !== ctx.rootFingerprint || saved.bootstrappedAt !== ctx.bootstrappedAt))
      throw new SshcaError('ERR_INPUT', `the context "${name}" was bootstrapped again while it was being removed`, {
        hint: `run sshca context remove ${name} again to remove the new one too`,
      })
    // 3. trust: the @cert-authority block, in the file saved now and in the one this removal began with
    const fallback = deps.knownHostsDefault ?? join(homedir(), '.ssh', 'known_hosts')
    for (const kh of new Set([saved?.knownHostsFile ?? fallback, ctx.knownHostsFile ?? fallback])) {
      const dropped = await dropKnownHostsBlock(kh, name)
      if (dropped) knownHosts ??= dropped
    }
    // 4. the ssh_config block (RevokedHostKeys, the login exec)
    const managed = managedSshConfigPath(home)
    if (await exists(managed)) {
      const merged = removeSshConfigBlock(await readFile(managed, 'utf8'), name)
      if (merged.changed) {
        await writeFileAtomic(managed, merged.text, 0o600)
        sshConfig = {file: managed}
      }
    }
    // 5. the KRL, now that nothing names it
    if (await exists(krlFile)) {
      await rm(krlFile, {force: true})
      krl = krlFile
    }
    // 6. the folder (root, settings, agentless key files), and `current` when it names this one
    await rm(directory, {recursive: true, force: true})
    wasCurrent = (await currentContextName(home)) === name
    if (wasCurrent) await rm(join(home, 'current'), {force: true})
    // a login that ran while the agent and the keyring were asked (its ssh_config block was still in
    // place) may have saved a refresh token since: it goes too, now that nothing can sign in with it
    for (const key of await store.keys(`${name}/`)) {
      await store.delete(key)
      forgotten++
    }
  })
  return {
    context: name,
    wasCurrent,
    knownHosts,
    sshConfig,
    krl,
    certificates,
    agent,
    forgottenRefreshTokens: forgotten,
    directory,
  }
}
