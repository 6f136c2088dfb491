/**
 * `sshca login`: an ID token (refresh grant first, else browser or device flow; or a token given by
 * file, or GitHub Actions' own) → an ephemeral key in memory → POST /ssh/sign → the certificate
 * checked (our key, the CA's user key, a valid signature) → the agent cleaned of this context's
 * expired certificates → key + certificate into ssh-agent for exactly the certificate's remaining
 * validity, read back (else 0600 files named in the managed ssh_config: see agent-hygiene.ts) →
 * the certificates it supersedes removed; or into 0600 files with --no-agent --out.
 *
 * `--ensure` is what ssh's `Match exec` runs before every connection: when a valid certificate of
 * the context is at hand (agent, or its files) it returns without a single network request;
 * otherwise it signs in, one process at a time per context (lock.ts).
 */
import {rm} from 'node:fs/promises'
import {join} from 'node:path'
import {isSshcaError, SshcaError} from '../../errors.ts'
import {SshSignResponse, type Provisioner} from '../../protocol/api.ts'
import {checkCertificate} from '../../ssh/checker.ts'
import {AgentClient, type AgentIdentity} from '../../ssh/agent.ts'
import {certificateLine, nowSeconds, parseCertificate, type Certificate} from '../../ssh/cert.ts'
import {PublicKey} from '../../ssh/keys.ts'
import {formatOpenSshPrivateKey, generatePrivateKey, type PrivateKey} from '../../ssh/private-key.ts'
import {refuseSymlink, writeFileAtomic} from '../../util/fs.ts'
import {
  addAndVerify,
  expiredOf,
  probeLifetime,
  removeAll,
  signedByOneOf,
  supersededBy,
  userCaKeys,
  type LifetimeProbe,
  type RemovedCertificate,
} from '../local/agent-hygiene.ts'
import {CaClient} from '../ca-api/ca-client.ts'
import {fetchSshRoots, syncKnownHosts, type RefreshedRoots} from '../ca-api/ca-keys.ts'
import {agentlessFiles, loadContext, saveContext, type Context} from '../home/home.ts'
import {refreshContextKrl, type ContextKrl} from '../ca-api/krl.ts'
import {heldCertificate, loginCertificateView} from './ensure.ts'
import {refuseTokenOfAnotherCa, rememberAudiences} from './token-audiences.ts'
import type {LoginDeps, LoginMethod, LoginOptions, LoginResult} from './login-types.ts'
import {listProvisioners} from '../ca-api/provisioners.ts'
import {withLock} from '../home/lock.ts'
import type {OidcProvisioner} from './oidc.ts'
import {homeOf, sameContext, updateContext, withSettingsLock} from '../home/settings-lock.ts'
import {enableRevokedHostKeys, sshConfigInstalled} from '../local/ssh-config.ts'
import type {TokenStore} from '../home/token-store.ts'

export type {LoginDeps, LoginMethod, LoginOptions, LoginResult} from './login-types.ts'

/** The agent comment of certificates sshca adds: what `login` recognizes and `logout` reports. */
export const agentComment = (context: string, provisioner: string | null): string =>
  `sshca:${context}:${provisioner ?? 'token'}`

/** Re-login is skipped while an existing certificate has more than this left. */
export const REUSE_MARGIN_SECONDS = 600

export function interactiveProvisioners(list: Provisioner[]): Provisioner[] {
  return list.filter(
    (p) =>
      p.type.toUpperCase() === 'OIDC' &&
      typeof p.clientID === 'string' &&
      (p as {interactive?: boolean}).interactive !== false,
  )
}

async function chooseProvisioner(
  ca: CaClient,
  ctx: Context,
  o: LoginOptions,
  deps: LoginDeps,
): Promise<OidcProvisioner> {
  const provisioners = await listProvisioners(ca)
  const candidates = interactiveProvisioners(provisioners)
  let chosen: Provisioner | undefined
  if (o.provisioner) {
    chosen = provisioners.find((p) => p.name === o.provisioner)
    if (!chosen)
      throw new SshcaError('ERR_PROVISIONER_NOT_FOUND', `the CA has no provisioner "${o.provisioner}"`, {
        hint: `it has: ${provisioners.map((p) => p.name).join(', ') || 'none'}`,
      })
    if (!candidates.includes(chosen))
      throw new SshcaError(
        'ERR_USAGE',
        `provisioner "${o.provisioner}" is not for people signing in (no client id); use --identity-token-file or --github-actions`,
      )
  } else if (candidates.length === 1) {
    chosen = candidates[0]
  } else if (ctx.provisioner && candidates.some((p) => p.name === ctx.provisioner)) {
    // the one this context last signed in with (a person passes --provisioner to change it)
    chosen = candidates.find((p) => p.name === ctx.provisioner)
  } else if (candidates.length === 0) {
    throw new SshcaError('ERR_PROVISIONER_NOT_FOUND', 'the CA has no provisioner people can sign in with', {
      hint: 'ask the CA operator to add an OIDC provisioner with a clientId',
    })
  } else if (deps.choose) {
    const name = await deps.choose(candidates.map((p) => p.name))
    chosen = candidates.find((p) => p.name === name)
  } else {
    throw new SshcaError(
      'ERR_PROVISIONER_AMBIGUOUS',
      `the CA has several provisioners (${candidates.map((p) => p.name).join(', ')}) and none was chosen`,
      {
        hint: `sign in once with sshca login --provisioner NAME --context ${ctx.name}: the context remembers it, and login --ensure and proxycommand then use it`,
      },
    )
  }
  const p = chosen!
  return {
    name: p.name,
    issuer: (p.configurationEndpoint ?? '').replace(/\/\.well-known\/openid-configuration$/, ''),
    clientId: p.clientID!,
    ...(p.clientSecret ? {clientSecret: p.clientSecret} : {}),
    ...(p.listenAddress ? {listenAddress: p.listenAddress} : {}),
    ...(p.scopes ? {scopes: p.scopes} : {}),
  }
}

async function githubAudience(ca: CaClient, o: LoginOptions): Promise<string> {
  if (o.audience) return o.audience
  const provisioners = await listProvisioners(ca)
  const named = o.provisioner ? provisioners.find((p) => p.name === o.provisioner) : undefined
  if (o.provisioner && !named)
    throw new SshcaError('ERR_PROVISIONER_NOT_FOUND', `the CA has no provisioner "${o.provisioner}"`)
  let gh = named
    ? [named]
    : provisioners.filter((p) => p.configurationEndpoint?.startsWith('https://token.actions.githubusercontent.com'))
  // GitHub Enterprise Server has an issuer of its own: then the one provisioner for machines (sshca marks
  // people's provisioners interactive) is the CI provisioner
  if (gh.length === 0) gh = provisioners.filter((p) => p.type === 'OIDC' && p.interactive === false)
  const aud = gh.length === 1 ? (gh[0]!.audience ?? gh[0]!.clientID) : undefined
  if (!aud)
    throw new SshcaError('ERR_USAGE', 'cannot tell which audience to ask GitHub for', {
      hint: "pass --audience (the CI provisioner's audience) or --provisioner NAME",
    })
  return aud
}

/** A certificate from this CA (and provisioner, and identity) with more than the margin left. */
async function existingCertificate(
  agent: AgentClient,
  ctx: Context,
  provisioner: string,
  identity: string | undefined,
  now: bigint,
): Promise<Certificate | undefined> {
  const cas = userCaKeys(ctx)
  const comment = agentComment(ctx.name, provisioner)
  for (const id of await agent.list()) {
    const c = id.certificate
    if (!c || c.type !== 'user' || id.comment !== comment || !signedByOneOf(c, cas)) continue
    if (identity && !c.principals.includes(identity) && c.keyId !== identity) continue
    if (c.validAfter <= now && c.validBefore - now > BigInt(REUSE_MARGIN_SECONDS)) return c
  }
  return undefined
}

async function interactiveToken(
  p: OidcProvisioner,
  ctx: Context,
  o: LoginOptions,
  deps: LoginDeps,
  useRefresh = true,
): Promise<{idToken: string; method: LoginMethod; store: TokenStore}> {
  // loaded here, not at the top: the token and CI paths must not pay for node:http and the browser flow
  const {browserLogin, deviceLogin, refreshLogin, supportsDeviceFlow} = await import('./oidc.ts')
  const {refreshKey} = await import('../home/token-store.ts')
  const store = await deps.tokenStore()
  const key = refreshKey(ctx.name, p.name)
  const saved = await store.get(key).catch(() => undefined)
  if (useRefresh && saved && saved.issuer === p.issuer && saved.clientId === p.clientId) {
    deps.interactive.notify({type: 'refreshing'})
    try {
      const t = await refreshLogin(p, saved.refreshToken, deps.interactive.fetch)
      // the IdP's new refresh token, or the same one again (refreshLogin keeps it when none came)
      await store.set(key, {
        ...saved,
        refreshToken: t.refreshToken ?? saved.refreshToken,
        savedAt: new Date(deps.clock()).toISOString(),
      })
      return {idToken: t.idToken, method: 'refresh', store}
    } catch (err) {
      await store.delete(key).catch(() => undefined)
      deps.interactive.notify({type: 'refresh_failed', reason: (err as Error).message})
    }
  }
  if (deps.interactive.canPrompt === false) {
    throw new SshcaError(
      'ERR_LOGIN_NO_TERMINAL',
      `a sign-in to "${ctx.name}" is needed, but there is no terminal to show it on and no browser to open`,
      {
        hint: `sign in from a terminal first (sshca login --context ${ctx.name}), or give this machine a token: sshca config --identity-token-file FILE`,
      },
    )
  }
  // over SSH or without a display, a browser here cannot reach 127.0.0.1: the device flow, when the IdP has it
  let useDevice = Boolean(o.console)
  const why = deps.interactive.noLocalBrowser
  if (!useDevice && why) {
    useDevice = await supportsDeviceFlow(p, deps.interactive.fetch)
    deps.interactive.notify({type: 'no_local_browser', reason: why, usingDevice: useDevice})
  }
  const t = useDevice ? await deviceLogin(p, deps.interactive) : await browserLogin(p, o.identity, deps.interactive)
  if (t.refreshToken) {
    const saved = await store.set(key, {
      refreshToken: t.refreshToken,
      issuer: p.issuer,
      clientId: p.clientId,
      savedAt: new Date(deps.clock()).toISOString(),
    })
    if (saved) deps.interactive.notify({type: 'refresh_token_file', file: saved.created})
  }
  return {idToken: t.idToken, method: useDevice ? 'device' : 'browser', store}
}

/** How far the CA's clock may run ahead of this machine's: a certificate valid from a little later is still taken. */
export const ISSUED_SKEW_SECONDS = 300n

/**
 * Parses and checks what the CA returned: a user certificate for our key, signed by its user CA,
 * valid now by this machine's clock (or starting within ISSUED_SKEW_SECONDS).
 */
export function checkIssued(crtBase64: string, key: PrivateKey, ctx: Context, now: bigint): Certificate {
  let cert: Certificate
  try {
    cert = parseCertificate(Buffer.from(crtBase64, 'base64'))
  } catch (err) {
    throw new SshcaError(
      'ERR_CA_BAD_RESPONSE',
      `the CA returned something that is not a certificate: ${(err as Error).message}`,
      {cause: err},
    )
  }
  const userCas = ctx.userCaKeys.map((l) => PublicKey.parseLine(l).key)
  const problems = checkCertificate(cert, {
    type: 'user',
    publicKey: key.publicKey,
    ...(userCas.length > 0 ? {caKeys: userCas} : {}),
  })
  // an answer that is already over (or starts far ahead) was once reported as a login that worked,
  // the key then held for a second: this machine's clock or the CA's is off, and the person must know
  if (cert.validBefore <= now)
    problems.push({code: 'expired', message: "it has already expired by this machine's clock"})
  else if (cert.validAfter > now + ISSUED_SKEW_SECONDS)
    problems.push({
      code: 'not_yet_valid',
      message: "it is valid only from more than 5 minutes ahead of this machine's clock",
    })
  if (problems.length) {
    const clock = problems.some((p) => p.code === 'expired' || p.code === 'not_yet_valid')
    throw new SshcaError(
      'ERR_CA_BAD_RESPONSE',
      `the CA returned a certificate sshca will not use: ${problems.map((p) => p.message).join('; ')}`,
      clock ? {hint: "check this machine's clock (timedatectl) and the CA's, then sign in again"} : {},
    )
  }
  return cert
}

/** `--out FILE` and `FILE-cert.pub`: refused up front when either is a symlink (before a token is spent). */
export function outFiles(out: string): {key: string; certificate: string} {
  return {key: out, certificate: `${out}-cert.pub`}
}

export async function login(o: LoginOptions, deps: LoginDeps): Promise<LoginResult> {
  if (o.identityToken !== undefined && o.githubActions)
    throw new SshcaError('ERR_USAGE', '--identity-token-file and --github-actions exclude each other')
  const ctx = await loadContext(deps.home, o.context)
  if (o.out !== undefined) for (const f of Object.values(outFiles(o.out))) await refuseSymlink(f)
  if (!o.ensure) return signInAndStore(ctx, o, deps)
  const held = await heldCertificate(ctx, o, deps)
  if (held) return held
  // the longest a sign-in may take, and a margin: a lock older than that was left by a crash
  const longest = (deps.interactive.timeoutMs ?? 300_000) + 60_000
  return withLock(join(ctx.dir, 'login.lock'), {timeoutMs: longest, staleMs: longest, clock: deps.clock}, async () => {
    // another login may have got what we need: while we waited for the lock, or just before we
    // took it (it let the lock go between our look at the agent and our taking the lock: four ssh
    // connections at once signed in twice that way, the second time with a spent token)
    const fresh = await loadContext(deps.home, ctx.name)
    return (await heldCertificate(fresh, o, deps)) ?? signInAndStore(fresh, o, deps)
  })
}

/**
 * An ID token for this context: the given one, GitHub Actions', or a person's (refresh grant, else
 * browser or device flow). `existing` may short-circuit once the provisioner is known (login skips
 * when the agent has a certificate); `beforeInteractive` runs just before a person is asked.
 */
interface ObtainedToken {
  idToken: string
  method: LoginMethod
  provisioner: string | null
  store: TokenStore | undefined
  chosen?: OidcProvisioner
}

type TokenHooks<T> = {
  existing?: (provisioner: string) => Promise<T | undefined>
  beforeInteractive?: () => Promise<void>
}

/**
 * An ID token for this context's CA (or what `hooks.existing` short-circuits with). Every token a
 * command sends goes through here (login, hosts, check-host): never one that another context's CA is
 * sent tokens for, which this CA could spend there.
 */
export async function obtainIdToken<T = never>(
  ctx: Context,
  ca: CaClient,
  o: LoginOptions,
  deps: LoginDeps,
  hooks: TokenHooks<T> = {},
): Promise<ObtainedToken | T> {
  const got = await idTokenFor(ctx, ca, o, deps, hooks)
  if (typeof got === 'object' && got !== null && 'idToken' in got && typeof got.idToken === 'string')
    await refuseTokenOfAnotherCa(deps.home, ctx, got.idToken)
  return got
}

async function idTokenFor<T>(
  ctx: Context,
  ca: CaClient,
  o: LoginOptions,
  deps: LoginDeps,
  hooks: TokenHooks<T>,
): Promise<ObtainedToken | T> {
  if (o.identityToken !== undefined) {
    const idToken = o.identityToken.trim()
    if (!idToken) throw new SshcaError('ERR_INPUT', 'the identity token file is empty')
    return {idToken, method: 'identity-token', provisioner: o.provisioner ?? null, store: undefined}
  }
  if (o.githubActions) {
    const {githubActionsToken} = await import('./oidc.ts')
    return {
      idToken: await githubActionsToken(deps.env, await githubAudience(ca, o), deps.interactive.fetch),
      method: 'github-actions',
      provisioner: o.provisioner ?? null,
      store: undefined,
    }
  }
  const p = await chooseProvisioner(ca, ctx, o, deps)
  const short = await hooks.existing?.(p.name)
  if (short !== undefined) return short
  await hooks.beforeInteractive?.()
  const t = await interactiveToken(p, ctx, o, deps)
  return {idToken: t.idToken, method: t.method, provisioner: p.name, store: t.store, chosen: p}
}

async function signInAndStore(ctx: Context, o: LoginOptions, deps: LoginDeps): Promise<LoginResult> {
  let agent: AgentClient | undefined
  /** Why the certificate goes to files without asking the agent, and the agent's socket (null: none). */
  let noAgent: {reason: string; socket: string | null} | undefined
  if (o.out === undefined) {
    try {
      // an agentless context whose agent is the same one that failed it goes straight to its files
      // (a null socket, no agent at all last time, is asked again: connecting then fails at once)
      const same = ctx.agentless && ctx.agentless.socket === (deps.agent.socketPath ?? deps.env.SSH_AUTH_SOCK)
      if (same) noAgent = {reason: ctx.agentless!.reason, socket: ctx.agentless!.socket}
      else agent = await AgentClient.connect(deps.agent)
    } catch (err) {
      // no agent at all: files are as good, but only when ssh is configured to read them
      if (!isSshcaError(err, 'ERR_AGENT_UNAVAILABLE') || !(await sshConfigInstalled(deps.home, ctx.name)).block)
        throw err
      noAgent = {reason: err.message, socket: null}
    }
  }
  deps.trustOnly?.(ctx.rootPem)
  const ca = deps.caClient?.(ctx) ?? new CaClient(ctx.caUrl, ctx.rootPem)
  // the KRL and the published CA keys travel beside the sign-in on the same pinned connection pool (two
  // connections); neither fails the login. They start once the sign request is on its way, so it takes
  // the first connection instead of queueing behind them, or earlier when the sign-in needs the keys
  let beside: {krl: Promise<ContextKrl>; roots: Promise<RefreshedRoots | Error>} | undefined
  const started = () => {
    if (beside) return beside
    // the keys first: the certificate's check waits for them, the KRL only the end of the login
    const roots = fetchSshRoots(ctx, ca).catch((err: unknown) => err as Error)
    return (beside = {krl: refreshContextKrl(ctx, ca), roots})
  }
  try {
    const result = await signIn(o, deps, ctx, ca, agent, noAgent, () => started().roots)
    const caKeys = await caKeysNote(await started().roots)
    // after the keys: both may save the context
    return {...result, krl: await revocationForSsh(deps.home, ctx, await started().krl), caKeys}
  } finally {
    // a refused sign-in waits for them too (neither rejects): closing the client under requests still
    // queued for a connection would let them open new ones after close, and save the context after
    // login has returned
    if (beside) await Promise.all([beside.krl, beside.roots])
    agent?.close()
    ca.close()
  }
}

/** After a sign-in: the KRL at hand, and named in the context's ssh_config block if that was written without one. */
async function revocationForSsh(home: string, ctx: Context, krl: ContextKrl): Promise<LoginResult['krl']> {
  if (!krl.file) return {...krl, enabledIn: null}
  try {
    return {...krl, enabledIn: await enableRevokedHostKeys(home, ctx, krl.file)}
  } catch (err) {
    const why = `could not add RevokedHostKeys to the ssh_config block of "${ctx.name}": ${(err as Error).message}; run sshca config`
    return {...krl, enabledIn: null, note: krl.note ? `${krl.note}; ${why}` : why}
  }
}

/** After a sign-in: the known_hosts block brought up to the published host CA keys. */
async function caKeysNote(roots: RefreshedRoots | Error): Promise<LoginResult['caKeys']> {
  if (roots instanceof Error)
    return {refreshed: false, knownHosts: null, note: `could not refresh the CA's published keys: ${roots.message}`}
  try {
    return {refreshed: true, knownHosts: await syncKnownHosts(roots.ctx), note: null}
  } catch (err) {
    return {refreshed: true, knownHosts: null, note: `could not update known_hosts: ${(err as Error).message}`}
  }
}

async function signIn(
  o: LoginOptions,
  deps: LoginDeps,
  ctx: Context,
  ca: CaClient,
  agent: AgentClient | undefined,
  noAgent: {reason: string; socket: string | null} | undefined,
  /** Starts (once) and returns the request for the CA's published keys. */
  roots: () => Promise<RefreshedRoots | Error>,
): Promise<Omit<LoginResult, 'krl' | 'caKeys'>> {
  const now = () => nowSeconds(deps.clock)
  let probe: LifetimeProbe | undefined
  const got = await obtainIdToken(ctx, ca, o, deps, {
    // a person signing in takes seconds: long enough to see whether the agent honors lifetimes
    beforeInteractive: async () => {
      if (agent) probe = await probeLifetime(agent, deps.clock)
    },
    existing: async (p): Promise<Omit<LoginResult, 'krl' | 'caKeys'> | undefined> => {
      if (!agent || o.force) return undefined
      // against the keys the CA publishes now: a certificate of a retired key is no reason to skip
      const current = await roots()
      const existing = await existingCertificate(
        agent,
        current instanceof Error ? ctx : current.ctx,
        p,
        o.identity,
        now(),
      )
      if (!existing) return undefined
      return {
        context: ctx.name,
        caUrl: ctx.caUrl,
        provisioner: p,
        method: 'existing',
        skipped: true,
        certificate: loginCertificateView(existing, now()),
        agent: {added: false, socket: agent.socketPath, lifetimeSeconds: null, removed: [], fallback: null},
        files: null,
        refreshTokenStore: null,
      }
    },
  }).catch(async (err) => {
    await probe?.finish().catch(() => undefined)
    throw err
  })
  if ('skipped' in got) return got
  let {idToken, method, store} = got
  const {provisioner, chosen} = got
  // an agent that keeps a key past its lifetime would keep this one past its certificate
  const lifetimesIgnored = probe !== undefined && (await probe.finish()) === 'ignored'

  const key = generatePrivateKey(o.kty ?? 'ed25519')
  /** The agent's identities, read while the CA signs: its expired certificates of this context go below. */
  let listing: Promise<AgentIdentity[] | undefined> | undefined
  const sign = async (ott: string) => {
    // never a token that another context's CA is sent tokens for: this CA could spend it there
    await refuseTokenOfAnotherCa(deps.home, ctx, ott)
    // call() sends the request before it returns: the keys' request, started next, waits its turn
    const signed = ca.call('POST', '/ssh/sign', SshSignResponse, {
      publicKey: key.publicKey.blob.toString('base64'),
      ott,
      certType: 'user',
    })
    void roots()
    // a failed read is read again below (removing one that is already gone is no error)
    listing ??= agent?.list().catch(() => undefined)
    return (await signed).crt
  }
  let crt: string
  try {
    crt = await sign(idToken)
  } catch (err) {
    // step-ca refuses the ID token of a refresh grant: it carries the first sign-in's nonce, which
    // step-ca counts as a used token. Sign in again (once), without the refresh token.
    if (!(method === 'refresh' && chosen && isSshcaError(err, 'ERR_CA_UNAUTHORIZED')))
      throw await explainRefusal(err, idToken, method, ca, Number(now()))
    deps.interactive.notify({type: 'refresh_refused_by_ca'})
    ;({idToken, method, store} = await interactiveToken(chosen, ctx, o, deps, false))
    try {
      crt = await sign(idToken)
    } catch (err2) {
      throw await explainRefusal(err2, idToken, method, ca, Number(now()))
    }
  }
  // checked against the keys the CA publishes now: after a rotation, the new key signs
  const fresh = await roots()
  const keys = fresh instanceof Error ? ctx : fresh.ctx
  const cert = checkIssued(crt, key, keys, now())
  // whatever is saved from here on starts from the context as refreshed with the CA's published keys
  // (saved by fetchSshRoots), never from the copy read before it
  const before = ctx
  ctx = chosen ? {...keys, provisioner: chosen.name} : keys
  // signed in: the context remembers how, for the next login that names no provisioner, and the
  // token's issuer and audience, which no other context's CA is then sent (a write only when new)
  const named = chosen && before.provisioner !== chosen.name
  if (named || rememberAudiences(before, idToken))
    await updateContext(ctx, (saved) => {
      const tokenAudiences = rememberAudiences(saved, idToken)
      return {
        ...saved,
        ...(named ? {provisioner: chosen.name} : {}),
        ...(tokenAudiences ? {tokenAudiences} : {}),
      }
    })
  const comment = agentComment(ctx.name, provisioner)
  const base = {
    context: ctx.name,
    caUrl: ctx.caUrl,
    provisioner,
    method,
    skipped: false,
    certificate: loginCertificateView(cert, now()),
    refreshTokenStore: store?.kind ?? null,
  }
  if (o.out !== undefined) {
    // each written to a fresh temp file and renamed over the name: a symlink planted there (after the
    // check above) is replaced, never followed, and no reader sees half a key
    const files = outFiles(o.out)
    await writeKeyFiles(files, key, cert, comment)
    return {...base, agent: {added: false, socket: null, lifetimeSeconds: null, removed: [], fallback: null}, files}
  }
  const lifetime = Math.max(1, Math.min(0xffff_ffff, Number(cert.validBefore - now())))
  let removed: RemovedCertificate[] = []
  let reason = noAgent?.reason
  if (agent) {
    // this context's certificates: of the keys it trusted before and of those the CA publishes now
    const cas = userCaKeys(before, keys)
    removed = await removeAll(agent, expiredOf((await listing) ?? (await agent.list()), cas, now()), 'expired')
    if (lifetimesIgnored) {
      reason = `the ssh-agent at ${agent.socketPath} accepts a lifetime for a key but keeps the key past it`
    } else {
      const added = await addAndVerify(agent, key, cert, {lifetimeSeconds: lifetime, comment})
      if (added.ok) {
        // what the agent held right after the add (read back to confirm it): no third listing
        removed = [...removed, ...(await removeAll(agent, supersededBy(cert, added.held, cas), 'superseded'))]
        if (ctx.agentless) await leaveAgentless(ctx)
        return {
          ...base,
          agent: {added: true, socket: agent.socketPath, lifetimeSeconds: lifetime, removed, fallback: null},
          files: null,
        }
      }
      reason = added.reason
    }
  }
  // the agent cannot hold it (or there is none): 0600 files that the managed ssh_config names
  const files = agentlessFiles(ctx)
  // the agent that cannot hold it, also when it was not asked again (null: there is none)
  const socket = agent?.socketPath ?? noAgent!.socket
  // Stryker disable next-line StringLiteral: unreachable: without an agent noAgent says why, with one the refused add or the lifetime verdict does
  const why = reason ?? 'no ssh-agent'
  // the files and the state that says they are there in one turn of the settings lock, and only into
  // the context this login began with: not into one bootstrapped again meanwhile (its hosts would be
  // offered the old CA's certificate, and nothing would ever take these files away)
  const written = await withSettingsLock(homeOf(ctx), async () => {
    const saved = await sameContext(ctx)
    if (!saved) return false
    await writeKeyFiles(files, key, cert, comment)
    const agentless = {reason: why, socket, since: saved.agentless?.since ?? new Date(deps.clock()).toISOString()}
    if (JSON.stringify(agentless) !== JSON.stringify(saved.agentless)) await saveContext({...saved, agentless})
    return true
  })
  if (!written)
    throw new SshcaError(
      'ERR_CONTEXT_NOT_FOUND',
      `the context "${ctx.name}" was removed or bootstrapped again while sshca login ran; the certificate was not saved`,
      {hint: `sshca login --context ${ctx.name} again if it is still there`},
    )
  // the managed block always names these files (ssh skips missing ones): ssh finds them even when this
  // login runs from its Match exec, while ssh is still reading that block
  const installed = (await sshConfigInstalled(deps.home, ctx.name)).block
  return {
    ...base,
    agent: {
      added: false,
      socket,
      lifetimeSeconds: null,
      removed,
      fallback: {reason: why, sshConfig: installed ? 'names-them' : 'not-installed'},
    },
    files,
  }
}

async function writeKeyFiles(
  files: {key: string; certificate: string},
  key: PrivateKey,
  cert: Certificate,
  comment: string,
): Promise<void> {
  await writeFileAtomic(files.key, formatOpenSshPrivateKey(key, comment), 0o600)
  await writeFileAtomic(files.certificate, `${certificateLine(cert, comment)}\n`, 0o644)
}

/**
 * The agent holds the context's certificates again: the files go (ssh would offer a stale key), in
 * the same turn of the settings lock as the state, and only from the context this login began with.
 */
async function leaveAgentless(ctx: Context): Promise<void> {
  await withSettingsLock(homeOf(ctx), async () => {
    const saved = await sameContext(ctx)
    if (!saved) return
    const {agentless: _gone, ...rest} = saved
    if (saved.agentless) await saveContext(rest)
    const files = agentlessFiles(saved)
    await rm(files.key, {force: true})
    await rm(files.certificate, {force: true})
  })
}

/** A 401 from the CA, explained from the token's own claims, with the next step for this way of signing in. */
async function explainRefusal(
  err: unknown,
  token: string,
  method: LoginMethod,
  ca: CaClient,
  now: number,
): Promise<unknown> {
  if (!isSshcaError(err, 'ERR_CA_UNAUTHORIZED')) return err
  const {explainTokenRefusal} = await import('./token-diagnosis.ts')
  // the audiences the CA accepts: one more request, only on this failure path
  // Stryker disable all: the audiences, the flow and the limits only choose the explanation's words and its hint (ERR_TOKEN_INVALID or ERR_TOKEN_REPLAYED whatever they are)
  const audiences = await listProvisioners(ca)
    .then((list) => list.flatMap((p) => [p.audience ?? p.clientID ?? ''].filter(Boolean)))
    .catch(() => [])
  const flow =
    method === 'identity-token' ? 'identity-token' : method === 'github-actions' ? 'github-actions' : 'interactive'
  return explainTokenRefusal(err, token, flow, {now, audiences, maxLifetime: 3600})
  // Stryker restore all
}
