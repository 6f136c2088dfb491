/**
 * Keeping the agent clean, and finding out what the agent can hold.
 *
 * sshd counts every key the client offers against MaxAuthTries (6 by default), and ssh offers every
 * identity of the agent: a week of logins, each leaving a certificate behind, ends in "Too many
 * authentication failures". So `login` removes this context's expired certificates before it adds
 * the new one, and the ones the new one supersedes (same CA, key ID and principals, ending no later)
 * once the new one is confirmed in the agent, so a failed add never leaves the person with nothing.
 * Other CAs' certificates and plain keys are never touched.
 *
 * Not every agent is OpenSSH's: gpg-agent keeps the key and drops the certificate, some agents
 * (Windows', 1Password's) refuse a key with a lifetime, some accept the lifetime and ignore it. So
 * the new identity is added, then read back: no certificate in the agent, or a refused add, means
 * the context falls back to 0600 files named by CertificateFile/IdentityFile in the managed
 * ssh_config. An ignored lifetime can only be seen over time: `probeLifetime` adds a throwaway key
 * that should vanish after a second and, when the sign-in took long enough to tell (a browser or a
 * device code), checks that it did.
 */
import {SshcaError, isSshcaError} from '../../errors.ts'
import type {AgentClient, AgentIdentity} from '../../ssh/agent.ts'
import type {Certificate} from '../../ssh/cert.ts'
import {PublicKey} from '../../ssh/keys.ts'
import {generatePrivateKey, type PrivateKey} from '../../ssh/private-key.ts'

/**
 * The user CA keys of one or more contexts, as a set of wire blobs in base64: a certificate is the
 * context's when its signing key is in it. Keys are compared whole, not by fingerprint, so `login
 * --ensure` (before every ssh connection) never has to load node:crypto to hash them.
 */
export const userCaKeys = (...ctxs: {userCaKeys: readonly string[]}[]): Set<string> =>
  new Set(ctxs.flatMap((c) => c.userCaKeys.map((l) => PublicKey.parseLine(l).key.blob.toString('base64'))))

/** Whether `cert` was signed by one of `cas` (userCaKeys). */
export const signedByOneOf = (cert: Certificate, cas: ReadonlySet<string>): boolean =>
  cas.has(cert.signatureKey.blob.toString('base64'))

export interface RemovedCertificate {
  keyId: string
  serial: string
  principals: string[]
  why: 'expired' | 'superseded'
}

const view = (c: Certificate, why: RemovedCertificate['why']): RemovedCertificate => ({
  keyId: c.keyId,
  serial: c.serial.toString(),
  principals: [...c.principals],
  why,
})

/**
 * The context named by the agent comment sshca gives its certificates (`sshca:CONTEXT:…`, login's
 * agentComment), or undefined for another tool's comment. Two contexts may trust one user CA key (two
 * contexts of one CA; or a CA that publishes another CA's public key as its own, which anyone can): a
 * certificate sshca added for one context is that context's, whichever other trusts its signer, and
 * logging out of or removing the other leaves it in the agent.
 */
export const contextOfComment = (comment: string): string | undefined => /^sshca:([^:]+):/.exec(comment)?.[1]

/** A user certificate signed by one of `cas` (the context's user CA keys: userCaKeys). */
export const fromContext = (
  id: AgentIdentity,
  cas: ReadonlySet<string>,
): id is AgentIdentity & {certificate: Certificate} =>
  id.certificate !== undefined && id.certificate.type === 'user' && signedByOneOf(id.certificate, cas)

/** The context's certificates that have expired at `now` (seconds). */
export function expiredOf(
  ids: readonly AgentIdentity[],
  cas: ReadonlySet<string>,
  now: bigint,
): (AgentIdentity & {certificate: Certificate})[] {
  return ids.filter((id) => fromContext(id, cas) && id.certificate.validBefore <= now) as (AgentIdentity & {
    certificate: Certificate
  })[]
}

/** The context's certificates `fresh` replaces: same CA, key ID and principals, not ending later, not `fresh` itself. */
export function supersededBy(
  fresh: Certificate,
  ids: readonly AgentIdentity[],
  cas: ReadonlySet<string>,
): (AgentIdentity & {certificate: Certificate})[] {
  const same = (a: readonly string[], b: readonly string[]): boolean =>
    a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i])
  return ids.filter(
    (id) =>
      fromContext(id, cas) &&
      !id.blob.equals(fresh.blob) &&
      id.certificate.signatureKey.equals(fresh.signatureKey) &&
      id.certificate.keyId === fresh.keyId &&
      same(id.certificate.principals, fresh.principals) &&
      id.certificate.validBefore <= fresh.validBefore,
  ) as (AgentIdentity & {certificate: Certificate})[]
}

/** Removes each identity (one that is already gone is not an error) and reports what went. */
export async function removeAll(
  agent: AgentClient,
  ids: readonly (AgentIdentity & {certificate: Certificate})[],
  why: RemovedCertificate['why'],
): Promise<RemovedCertificate[]> {
  const out: RemovedCertificate[] = []
  for (const id of ids) {
    try {
      await agent.remove(id.blob)
      out.push(view(id.certificate, why))
    } catch (err) {
      if (!isSshcaError(err, 'ERR_AGENT_FAILURE')) throw err
    }
  }
  return out
}

export type AddOutcome =
  /** `held`: the agent's identities as read back right after the add. */
  {ok: true; held: AgentIdentity[]} | {ok: false; problem: 'no-certificates' | 'refused-lifetime'; reason: string}

/**
 * Adds key + certificate under a lifetime, then reads the agent back. The certificate must be there
 * as a certificate; an agent that kept only the key (gpg-agent) has that key removed again.
 */
export async function addAndVerify(
  agent: AgentClient,
  key: PrivateKey,
  cert: Certificate,
  o: {lifetimeSeconds: number; comment: string},
): Promise<AddOutcome> {
  try {
    await agent.addCertificate(key, cert, o)
  } catch (err) {
    if (!isSshcaError(err, 'ERR_AGENT_FAILURE')) throw err
    // which part did it refuse? throwaway plain keys tell (each removed at once)
    const accepts = async (lifetimeSeconds?: number): Promise<boolean> => {
      const probe = generatePrivateKey('ed25519')
      const ok = await agent
        .addKey(probe, {...(lifetimeSeconds ? {lifetimeSeconds} : {}), comment: 'sshca:probe'})
        .then(
          () => true,
          () => false,
        )
      if (ok) await agent.remove(probe.publicKey.blob).catch(() => undefined)
      return ok
    }
    if (await accepts(60))
      return {
        ok: false,
        problem: 'no-certificates',
        reason: `the ssh-agent at ${agent.socketPath} refuses certificates (it holds plain keys only)`,
      }
    if (await accepts())
      return {
        ok: false,
        problem: 'refused-lifetime',
        reason: `the ssh-agent at ${agent.socketPath} refuses a key with a lifetime, and sshca never leaves a key in an agent longer than its certificate lives`,
      }
    throw agentRefusal(`the ssh-agent at ${agent.socketPath} refused to add any key`)
  }
  const now = await agent.list()
  if (now.some((id) => id.blob.equals(cert.blob))) return {ok: true, held: now}
  if (now.some((id) => id.blob.equals(key.publicKey.blob)))
    await agent.remove(key.publicKey.blob).catch(() => undefined)
  return {
    ok: false,
    problem: 'no-certificates',
    reason: `the ssh-agent at ${agent.socketPath} accepted the certificate but does not hold it (gpg-agent and some others keep only the key)`,
  }
}

/** How long a probe key should live, and how long after adding it the verdict can be trusted. */
export const PROBE_LIFETIME_SECONDS = 1
export const PROBE_WINDOW_MS = 2500

export interface LifetimeProbe {
  /** 'ignored': the throwaway key outlived its lifetime; 'honored': it did not; 'unknown': too early to tell, or it could not be added. */
  finish(): Promise<'honored' | 'ignored' | 'unknown'>
}

/**
 * Adds a throwaway key that the agent should forget after a second. `finish` (called when the
 * sign-in is done) reads the agent back when enough time has passed to tell; the key is removed
 * either way, so the probe leaves nothing behind.
 */
export async function probeLifetime(agent: AgentClient, clock: () => number = Date.now): Promise<LifetimeProbe> {
  const key = generatePrivateKey('ed25519')
  const started = clock()
  const added = await agent
    .addKey(key, {lifetimeSeconds: PROBE_LIFETIME_SECONDS, comment: 'sshca:lifetime-probe'})
    .then(
      () => true,
      () => false,
    )
  return {
    async finish() {
      if (!added) return 'unknown'
      const present = (await agent.list()).some((id) => id.blob.equals(key.publicKey.blob))
      if (present) await agent.remove(key.publicKey.blob).catch(() => undefined)
      if (clock() - started < PROBE_WINDOW_MS) return 'unknown'
      return present ? 'ignored' : 'honored'
    },
  }
}

/** A refused add that is not about certificates or lifetimes (the agent is locked, full …). */
export function agentRefusal(reason: string): SshcaError {
  return new SshcaError('ERR_AGENT_FAILURE', reason, {
    hint: 'unlock the agent (ssh-add -X) or start OpenSSH\'s: eval "$(ssh-agent -s)"',
  })
}
