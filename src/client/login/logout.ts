/**
 * `sshca logout`: this CA's certificates (and their keys) out of the agent, and out of the
 * context's files when the agent could not hold them; its refresh tokens forgotten.
 */
import {rm} from 'node:fs/promises'
import {AgentClient, type AgentOptions} from '../../ssh/agent.ts'
import {isSshcaError, SshcaError} from '../../errors.ts'
import {PublicKey} from '../../ssh/keys.ts'
import {contextOfComment} from '../local/agent-hygiene.ts'
import {exists} from '../../util/fs.ts'
import {
  agentlessFiles,
  checkHome,
  contextDir,
  currentContextName,
  listContexts,
  loadContext,
  readContext,
  validContextName,
  type Context,
} from '../home/home.ts'
import {updateContext} from '../home/settings-lock.ts'
import type {TokenStore} from '../home/token-store.ts'

export interface LogoutOptions {
  context?: string
  /** Only certificates naming this principal or key ID. */
  identity?: string
  /** Every bootstrapped CA, not only the current one. */
  all?: boolean
}

export interface LogoutResult {
  contexts: string[]
  removed: {keyId: string; principals: string[]; context: string}[]
  /** Key and certificate files removed (contexts whose agent could not hold certificates). */
  removedFiles: string[]
  forgottenRefreshTokens: number
}

export async function logout(
  o: LogoutOptions,
  deps: {home: string; agent: AgentOptions; tokenStore: () => Promise<TokenStore>},
): Promise<LogoutResult> {
  // --all: every folder that is a context (a folder without context.json is none: skipped, as context
  // list skips it). A damaged one does not keep the others' certificates in the agent: they are
  // logged out, the damaged one's refresh tokens and key files (found by its name) are removed too,
  // then the damage is reported (an error, whose details say what was done)
  if (o.all) checkHome(deps.home)
  const damaged: {name: string; error: SshcaError}[] = []
  const byCa = new Map<string, string>()
  const contexts: Context[] = []
  for (const name of o.all ? await listContexts(deps.home) : [undefined]) {
    try {
      const c = name === undefined ? await loadContext(deps.home, o.context) : await readContext(deps.home, name)
      if (!c) continue
      for (const [fingerprint, context] of caKeysOf(c)) byCa.set(fingerprint, context)
      contexts.push(c)
    } catch (err) {
      if (!isSshcaError(err, 'ERR_INPUT')) throw err
      // the named or current context, damaged: its refresh tokens and files go all the same (by name)
      const damagedName = name ?? o.context ?? (await currentContextName(deps.home))
      if (damagedName === undefined || !validContextName(damagedName)) throw err
      damaged.push({name: damagedName, error: err})
    }
  }
  const removed: LogoutResult['removed'] = []
  const inAgent = AgentClient.with(deps.agent, async (agent) => {
    for (const id of await agent.list()) {
      const cert = id.certificate
      const owner = contextOfComment(id.comment)
      const context = owner ?? (cert && byCa.get(cert.signatureKey.fingerprint()))
      if (!cert || !context || !byCa.has(cert.signatureKey.fingerprint())) continue
      // sshca's certificate of a context not logged out, whose CA key one of these trusts too (--all
      // logs out every context: one whose folder is gone leaves nothing of its own behind either)
      if (owner !== undefined && !o.all && !contexts.some((c) => c.name === owner)) continue
      if (o.identity && !cert.principals.includes(o.identity) && cert.keyId !== o.identity) continue
      await agent.remove(id.blob)
      removed.push({keyId: cert.keyId, principals: [...cert.principals], context})
    }
  })
  // whatever went wrong with the agent (none, one that never answers, a forwarded socket that hangs
  // up), the files and refresh tokens go first: a saved sign-in must not outlive a logout because the
  // agent could not be asked. Then it is reported, unless every context keeps its certificate in
  // files (those log out without an agent)
  let agentError: unknown
  await inAgent.catch((err: unknown) => {
    if (!fromAgent(err) || contexts.some((c) => !c.agentless)) agentError = err
  })
  const removedFiles: string[] = []
  let forgotten = 0
  if (!o.identity) {
    // the damaged contexts' files are found by their names, as their refresh tokens are below
    const dirs = [...contexts.map((c) => c.dir), ...damaged.map((d) => contextDir(deps.home, d.name))]
    for (const dir of dirs) {
      for (const f of Object.values(agentlessFiles({dir}))) {
        if (await exists(f)) {
          await rm(f, {force: true})
          removedFiles.push(f)
        }
      }
    }
    for (const c of contexts) {
      if (c.agentless) await updateContext(c, ({agentless: _gone, ...rest}) => rest)
    }
    const store = await deps.tokenStore()
    for (const name of [...contexts.map((c) => c.name), ...damaged.map((d) => d.name)]) {
      for (const key of await store.keys(`${name}/`)) {
        await store.delete(key)
        forgotten++
      }
    }
  }
  const result = {contexts: contexts.map((c) => c.name), removed, removedFiles, forgottenRefreshTokens: forgotten}
  if (agentError !== undefined) {
    // not the agent's: a bug, reported as it is (the cleanup above has run all the same)
    if (!fromAgent(agentError)) throw agentError
    const done = o.identity
      ? ''
      : `forgot ${forgotten} saved sign-in(s) and removed ${removedFiles.length} key file(s), but `
    const unread =
      damaged.length > 0 ? `; and not of a damaged context: ${damaged.map((d) => d.error.message).join('; ')}` : ''
    throw new SshcaError(
      agentError.code,
      `${done}could not remove certificates from the ssh-agent: ${agentError.message}${unread}`,
      {
        hint: [
          'if an agent holds certificates of this CA, run sshca logout again where SSH_AUTH_SOCK names it (or ssh-add -D there)',
          ...(damaged.length > 0 ? [damaged[0]!.error.hint ?? 'bootstrap the damaged context again with --force'] : []),
        ].join('; '),
        details: {...result, ...(damaged.length > 0 ? {damaged: damaged.map((d) => d.name)} : {})},
      },
    )
  }
  if (damaged.length > 0) {
    const done = `logged out of ${result.contexts.length} context(s) (${removed.length} certificate(s) removed from the agent)`
    throw new SshcaError(
      'ERR_INPUT',
      `${done}, but not of a damaged one: ${damaged.map((d) => d.error.message).join('; ')}`,
      {
        hint: `${damaged[0]!.error.hint ?? 'bootstrap it again with --force'}; its certificates, if any, are still in the agent: \`ssh-add -D\` removes every key from it`,
        details: {...result, damaged: damaged.map((d) => d.name)},
      },
    )
  }
  return result
}

/** An error of the agent's (none in reach, no answer, a hang-up, a refusal), not of sshca's own. */
const fromAgent = (err: unknown): err is SshcaError => isSshcaError(err) && err.code.startsWith('ERR_AGENT_')

/** The fingerprints of the CA keys `c` trusts for users; a line that does not parse makes it a damaged context. */
function caKeysOf(c: Context): [string, string][] {
  try {
    return c.userCaKeys.map((l) => [PublicKey.parseLine(l).key.fingerprint(), c.name])
  } catch (err) {
    throw new SshcaError(
      'ERR_INPUT',
      `the context "${c.name}" in ${c.dir} is damaged: userCaKeys: ${(err as Error).message}`,
      {
        hint: `bootstrap it again: sshca bootstrap --context ${c.name} --ca-url URL --fingerprint HEX --force`,
      },
    )
  }
}
