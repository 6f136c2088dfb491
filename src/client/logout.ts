/** `sshca logout`: this CA's certificates (and their keys) out of the agent; its refresh tokens forgotten. */
import {AgentClient, type AgentOptions} from '../ssh/agent.ts'
import {PublicKey} from '../ssh/keys.ts'
import {listContexts, loadContext, type Context} from './home.ts'
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
  forgottenRefreshTokens: number
}

export async function logout(o: LogoutOptions, deps: {home: string; agent: AgentOptions; tokenStore: () => Promise<TokenStore>}): Promise<LogoutResult> {
  const contexts: Context[] = o.all ? await Promise.all((await listContexts(deps.home)).map((n) => loadContext(deps.home, n))) : [await loadContext(deps.home, o.context)]
  const byCa = new Map<string, string>()
  for (const c of contexts) for (const l of c.userCaKeys) byCa.set(PublicKey.parseLine(l).key.fingerprint(), c.name)
  const removed: LogoutResult['removed'] = []
  await AgentClient.with(deps.agent, async (agent) => {
    for (const id of await agent.list()) {
      const cert = id.certificate
      const context = cert && byCa.get(cert.signatureKey.fingerprint())
      if (!cert || !context) continue
      if (o.identity && !cert.principals.includes(o.identity) && cert.keyId !== o.identity) continue
      await agent.remove(id.blob)
      removed.push({keyId: cert.keyId, principals: [...cert.principals], context})
    }
  })
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
  return {contexts: contexts.map((c) => c.name), removed, forgottenRefreshTokens: forgotten}
}
