/**
 * Whose token this is. An ID token is good at every CA that trusts its issuer and audience, and it is
 * the CA that tells the client which audience to ask for (GET /provisioners: an OIDC client id, a CI
 * provisioner's audience): a hostile or compromised CA could name another CA's, be sent a token for
 * it (single sign-on issues one without a prompt) and spend that token there. So each context
 * remembers the (issuer, audience) pairs of the tokens it sent its CA, and a token with a pair that
 * another context (of another root) remembers is never sent.
 */
import {SshcaError} from '../../errors.ts'
import {listContexts, readContext, type Context, type ContextSettings, type TokenAudience} from '../home/home.ts'
import {peekClaims} from './token-diagnosis.ts'

/** The token's (issuer, audience) pairs, unverified (what it would be good for); none when it has neither. */
export function audiencesOf(token: string): TokenAudience[] {
  const claims = peekClaims(token)
  const iss = claims?.iss
  const aud = claims?.aud
  if (typeof iss !== 'string') return []
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a) => typeof a === 'string') : []
  return audiences.map((audience) => ({issuer: iss, audience}))
}

const same = (a: TokenAudience, b: TokenAudience): boolean => a.issuer === b.issuer && a.audience === b.audience

/**
 * Throws ERR_TRUST_TOKEN_AUDIENCE when another context, trusting another root, has sent its CA a
 * token for one of this token's (issuer, audience) pairs: this context's CA could spend it there.
 */
export async function refuseTokenOfAnotherCa(home: string, ctx: Context, token: string): Promise<void> {
  const mine = audiencesOf(token)
  // Stryker disable next-line ConditionalExpression: a shortcut: a token without a pair shares none, whatever the other contexts remember
  if (mine.length === 0) return
  for (const name of await listContexts(home)) {
    if (name === ctx.name) continue
    const other = await readContext(home, name).catch(() => undefined)
    // the same CA under another name or URL: the same root, the same tokens. Equal pinned roots, not
    // roots in common: a CA can get any root pinned beside its own (GET /roots with a cross-certificate
    // its root signs for another root's subject and key, src/client/ca-api/roots.ts), so a hostile CA
    // would share a root with production's context at will. The price: two contexts of one CA whose
    // roots diverge during a root rotation refuse each other's tokens until both have refreshed.
    if (!other?.tokenAudiences || other.rootPem.trim() === ctx.rootPem.trim()) continue
    const shared = mine.find((a) => other.tokenAudiences!.some((b) => same(a, b)))
    if (shared)
      throw new SshcaError(
        'ERR_TRUST_TOKEN_AUDIENCE',
        `the ID token for "${ctx.name}" (issuer ${shared.issuer}, audience ${shared.audience}) is good at the CA of "${name}" (${other.caUrl}), which is sent tokens for them: ${ctx.caUrl} could spend it there, so it was not sent`,
        {
          hint: `each CA needs an audience (or OIDC client) of its own; ask the operators of ${ctx.caUrl}. If both CAs are yours and accept the same tokens on purpose, keep one context: sshca context remove ${name}`,
        },
      )
  }
}

/** The context's pairs with the token's added; undefined when they are there already (nothing to write). */
export function rememberAudiences(saved: ContextSettings, token: string): TokenAudience[] | undefined {
  const known = saved.tokenAudiences ?? []
  const fresh = audiencesOf(token).filter((a) => !known.some((b) => same(a, b)))
  return fresh.length === 0 ? undefined : [...known, ...fresh]
}
