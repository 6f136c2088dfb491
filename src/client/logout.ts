/**
 * `sshca logout`: this CA's certificates (and their keys) out of the agent, and out of the
 * context's files when the agent could not hold them; its refresh tokens forgotten.
 */
import {rm} from 'node:fs/promises'
import {AgentClient, type AgentOptions} from '../ssh/agent.ts'
import {isSshcaError, SshcaError} from '../errors.ts'
import {PublicKey} from '../ssh/keys.ts'
import {exists} from '../util/fs.ts'
import {agentlessFiles, checkHome, listContexts, loadContext, readContext, saveContext, type Context} from './home.ts'
import type {TokenStore} from './token-store.ts'

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
  // logged out, then the damaged ones are reported (an error, whose details say what was done)
  if (o.all) checkHome(deps.home)
  const damaged: SshcaError[] = []
  const readable = async (name: string): Promise<Context | undefined> =>
    readContext(deps.home, name).catch((err: unknown) => {
      if (!isSshcaError(err, 'ERR_INPUT')) throw err
      damaged.push(err)
      return undefined
    })
  const contexts: Context[] = o.all
    ? (await Promise.all((await listContexts(deps.home)).map(readable))).filter((c): c is Context => c !== undefined)
    : [await loadContext(deps.home, o.context)]
  const byCa = new Map<string, string>()
  for (const c of contexts) for (const l of c.userCaKeys) byCa.set(PublicKey.parseLine(l).key.fingerprint(), c.name)
  const removed: LogoutResult['removed'] = []
  const inAgent = AgentClient.with(deps.agent, async (agent) => {
    for (const id of await agent.list()) {
      const cert = id.certificate
      const context = cert && byCa.get(cert.signatureKey.fingerprint())
      if (!cert || !context) continue
      if (o.identity && !cert.principals.includes(o.identity) && cert.keyId !== o.identity) continue
      await agent.remove(id.blob)
      removed.push({keyId: cert.keyId, principals: [...cert.principals], context})
    }
  })
  // a context that keeps its certificate in files logs out without an agent
  await inAgent.catch((err: {code?: string}) => {
    if (err.code !== 'ERR_AGENT_UNAVAILABLE' || !contexts.some((c) => c.agentless)) throw err
  })
  const removedFiles: string[] = []
  if (!o.identity) {
    for (const c of contexts) {
      for (const f of Object.values(agentlessFiles(c))) {
        if (await exists(f)) {
          await rm(f, {force: true})
          removedFiles.push(f)
        }
      }
      if (c.agentless) {
        const {agentless: _gone, ...rest} = c
        await saveContext(rest)
      }
    }
  }
  let forgotten = 0
  if (!o.identity) {
    const store = await deps.tokenStore()
    for (const c of contexts) {
      for (const key of await store.keys(`${c.name}/`)) {
        await store.delete(key)
        forgotten++
      }
    }
  }
  const result = {contexts: contexts.map((c) => c.name), removed, removedFiles, forgottenRefreshTokens: forgotten}
  if (damaged.length > 0) {
    const done = `logged out of ${result.contexts.length} context(s) (${removed.length} certificate(s) removed from the agent)`
    throw new SshcaError(
      'ERR_INPUT',
      `${done}, but not of a damaged one: ${damaged.map((e) => e.message).join('; ')}`,
      {
        hint: `${damaged[0]!.hint ?? 'bootstrap it again with --force'}; until then \`ssh-add -D\` removes every key from the agent`,
        details: {...result},
      },
    )
  }
  return result
}
