/**
 * `sshca login`: an ID token (refresh grant first, else browser or device flow; or a token given by
 * file, or GitHub Actions' own) → an ephemeral key in memory → POST /ssh/sign → the certificate
 * checked (our key, the CA's user key, a valid signature) → key + certificate into ssh-agent for
 * exactly the certificate's remaining validity, or into 0600 files with --no-agent --out.
 */
import {isSshcaError, SshcaError} from '../errors.ts'
import {SshSignResponse, type Provisioner} from '../protocol/api.ts'
import {checkCertificate} from '../ssh/checker.ts'
import {AgentClient, type AgentOptions} from '../ssh/agent.ts'
import {certificateLine, nowSeconds, parseCertificate, type Certificate} from '../ssh/cert.ts'
import {PublicKey} from '../ssh/keys.ts'
import {formatOpenSshPrivateKey, generatePrivateKey, type PrivateKey} from '../ssh/private-key.ts'
import {refuseSymlink, writeFileAtomic} from '../util/fs.ts'
import {CaClient} from './ca-client.ts'
import {loadContext, type Context} from './home.ts'
import {refreshContextKrl, type ContextKrl} from './krl.ts'
import {listProvisioners} from './provisioners.ts'
import type {InteractiveDeps, OidcProvisioner} from './oidc.ts'
import type {TokenStore} from './token-store.ts'

export interface LoginOptions {
  context?: string
  /** Login hint, and the identity a certificate already in the agent must name. */
  identity?: string
  provisioner?: string
  console?: boolean
  force?: boolean
  kty?: 'ed25519' | 'ecdsa'
  /** Write the key here (0600) and the certificate to <out>-cert.pub instead of using the agent. */
  out?: string
  /** An ID token obtained elsewhere (--identity-token-file). */
  identityToken?: string
  githubActions?: boolean
  audience?: string
}

export interface LoginDeps {
  home: string
  env: NodeJS.ProcessEnv
  agent: AgentOptions
  clock: () => number
  tokenStore: () => Promise<TokenStore>
  interactive: InteractiveDeps
  /** Asks the person to pick a provisioner; absent when there is no terminal. */
  choose?: (names: string[]) => Promise<string>
}

export type LoginMethod = 'browser' | 'device' | 'refresh' | 'identity-token' | 'github-actions'

export interface LoginResult {
  context: string
  caUrl: string
  provisioner: string | null
  method: LoginMethod | 'existing'
  /** True when a valid certificate was already in the agent and nothing was done. */
  skipped: boolean
  certificate: {keyId: string; principals: string[]; serial: string; validAfter: string; validBefore: string; secondsLeft: number; fingerprint: string}
  agent: {added: boolean; socket: string | null; lifetimeSeconds: number | null}
  files: {key: string; certificate: string} | null
  refreshTokenStore: 'keyring' | 'file' | null
  /** The context's KRL for ssh's RevokedHostKeys, refreshed alongside (its failure never fails a login). */
  krl: ContextKrl
}

/** The agent comment of certificates sshca adds: what `login` recognizes and `logout` reports. */
export const agentComment = (context: string, provisioner: string | null): string => `sshca:${context}:${provisioner ?? 'token'}`

/** Re-login is skipped while an existing certificate has more than this left. */
export const REUSE_MARGIN_SECONDS = 600

function userCaFingerprints(ctx: Context): Set<string> {
  return new Set(ctx.userCaKeys.map((l) => PublicKey.parseLine(l).key.fingerprint()))
}

function certView(cert: Certificate, now: bigint): LoginResult['certificate'] {
  return {
    keyId: cert.keyId,
    principals: [...cert.principals],
    serial: cert.serial.toString(),
    validAfter: new Date(Number(cert.validAfter) * 1000).toISOString(),
    validBefore: new Date(Number(cert.validBefore) * 1000).toISOString(),
    secondsLeft: Number(cert.validBefore - now),
    fingerprint: cert.publicKey.fingerprint(),
  }
}

export function interactiveProvisioners(list: Provisioner[]): Provisioner[] {
  return list.filter((p) => p.type.toUpperCase() === 'OIDC' && typeof p.clientID === 'string' && (p as {interactive?: boolean}).interactive !== false)
}

async function chooseProvisioner(ca: CaClient, o: LoginOptions, deps: LoginDeps): Promise<OidcProvisioner> {
  const provisioners = await listProvisioners(ca)
  const candidates = interactiveProvisioners(provisioners)
  let chosen: Provisioner | undefined
  if (o.provisioner) {
    chosen = provisioners.find((p) => p.name === o.provisioner)
    if (!chosen) throw new SshcaError('ERR_PROVISIONER_NOT_FOUND', `the CA has no provisioner "${o.provisioner}"`, {hint: `it has: ${provisioners.map((p) => p.name).join(', ') || 'none'}`})
    if (!candidates.includes(chosen)) throw new SshcaError('ERR_USAGE', `provisioner "${o.provisioner}" is not for people signing in (no client id); use --identity-token-file or --github-actions`)
  } else if (candidates.length === 1) {
    chosen = candidates[0]
  } else if (candidates.length === 0) {
    throw new SshcaError('ERR_PROVISIONER_NOT_FOUND', 'the CA has no provisioner people can sign in with', {hint: 'ask the CA operator to add an OIDC provisioner with a clientId'})
  } else if (deps.choose) {
    const name = await deps.choose(candidates.map((p) => p.name))
    chosen = candidates.find((p) => p.name === name)
  } else {
    throw new SshcaError('ERR_PROVISIONER_AMBIGUOUS', `the CA has several provisioners (${candidates.map((p) => p.name).join(', ')}) and none was chosen`, {hint: 'pass --provisioner NAME'})
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
  if (o.provisioner && !named) throw new SshcaError('ERR_PROVISIONER_NOT_FOUND', `the CA has no provisioner "${o.provisioner}"`)
  let gh = named ? [named] : provisioners.filter((p) => (p.configurationEndpoint ?? '').startsWith('https://token.actions.githubusercontent.com'))
  // GitHub Enterprise Server has an issuer of its own: then the one provisioner for machines (sshca marks
  // people's provisioners interactive) is the CI provisioner
  if (gh.length === 0) gh = provisioners.filter((p) => p.type === 'OIDC' && p.interactive === false)
  const aud = gh.length === 1 ? (gh[0]!.audience ?? gh[0]!.clientID) : undefined
  if (!aud) throw new SshcaError('ERR_USAGE', 'cannot tell which audience to ask GitHub for', {hint: 'pass --audience (the CI provisioner\'s audience) or --provisioner NAME'})
  return aud
}

/** A certificate from this CA (and provisioner, and identity) with more than the margin left. */
async function existingCertificate(agent: AgentClient, ctx: Context, provisioner: string, identity: string | undefined, now: bigint): Promise<Certificate | undefined> {
  const cas = userCaFingerprints(ctx)
  const comment = agentComment(ctx.name, provisioner)
  for (const id of await agent.list()) {
    const c = id.certificate
    if (!c || c.type !== 'user' || id.comment !== comment || !cas.has(c.signatureKey.fingerprint())) continue
    if (identity && !c.principals.includes(identity) && c.keyId !== identity) continue
    if (c.validAfter <= now && c.validBefore - now > BigInt(REUSE_MARGIN_SECONDS)) return c
  }
  return undefined
}

async function interactiveToken(p: OidcProvisioner, ctx: Context, o: LoginOptions, deps: LoginDeps, useRefresh = true): Promise<{idToken: string; method: LoginMethod; store: TokenStore}> {
  // loaded here, not at the top: the token and CI paths must not pay for node:http and the browser flow
  const {browserLogin, deviceLogin, refreshLogin, supportsDeviceFlow} = await import('./oidc.ts')
  const {refreshKey} = await import('./token-store.ts')
  const store = await deps.tokenStore()
  const key = refreshKey(ctx.name, p.name)
  const saved = await store.get(key).catch(() => undefined)
  if (useRefresh && saved && saved.issuer === p.issuer && saved.clientId === p.clientId) {
    deps.interactive.notify({type: 'refreshing'})
    try {
      const t = await refreshLogin(p, saved.refreshToken)
      if (t.refreshToken) await store.set(key, {...saved, refreshToken: t.refreshToken, savedAt: new Date(deps.clock()).toISOString()})
      return {idToken: t.idToken, method: 'refresh', store}
    } catch (err) {
      await store.delete(key).catch(() => undefined)
      deps.interactive.notify({type: 'refresh_failed', reason: (err as Error).message})
    }
  }
  // over SSH or without a display, a browser here cannot reach 127.0.0.1: the device flow, when the IdP has it
  let useDevice = Boolean(o.console)
  const why = deps.interactive.noLocalBrowser
  if (!useDevice && why) {
    useDevice = await supportsDeviceFlow(p)
    deps.interactive.notify({type: 'no_local_browser', reason: why, usingDevice: useDevice})
  }
  const t = useDevice ? await deviceLogin(p, deps.interactive) : await browserLogin(p, o.identity, deps.interactive)
  if (t.refreshToken) {
    const saved = await store.set(key, {refreshToken: t.refreshToken, issuer: p.issuer, clientId: p.clientId, savedAt: new Date(deps.clock()).toISOString()})
    if (saved) deps.interactive.notify({type: 'refresh_token_file', file: saved.created})
  }
  return {idToken: t.idToken, method: useDevice ? 'device' : 'browser', store}
}

/** Parses and checks what the CA returned: a user certificate for our key, signed by its user CA. */
export function checkIssued(crtBase64: string, key: PrivateKey, ctx: Context): Certificate {
  let cert: Certificate
  try {
    cert = parseCertificate(Buffer.from(crtBase64, 'base64'))
  } catch (err) {
    throw new SshcaError('ERR_CA_BAD_RESPONSE', `the CA returned something that is not a certificate: ${(err as Error).message}`, {cause: err})
  }
  const userCas = ctx.userCaKeys.map((l) => PublicKey.parseLine(l).key)
  const problems = checkCertificate(cert, {type: 'user', publicKey: key.publicKey, ...(userCas.length > 0 ? {caKeys: userCas} : {})})
  if (problems.length) throw new SshcaError('ERR_CA_BAD_RESPONSE', `the CA returned a certificate sshca will not use: ${problems.map((p) => p.message).join('; ')}`)
  return cert
}

/** `--out FILE` and `FILE-cert.pub`: refused up front when either is a symlink (before a token is spent). */
export function outFiles(out: string): {key: string; certificate: string} {
  return {key: out, certificate: `${out}-cert.pub`}
}

export async function login(o: LoginOptions, deps: LoginDeps): Promise<LoginResult> {
  if (o.identityToken !== undefined && o.githubActions) throw new SshcaError('ERR_USAGE', '--identity-token-file and --github-actions exclude each other')
  const ctx = await loadContext(deps.home, o.context)
  if (o.out !== undefined) for (const f of Object.values(outFiles(o.out))) await refuseSymlink(f)
  const ca = new CaClient(ctx.caUrl, ctx.rootPem)
  const useAgent = o.out === undefined
  let agent: AgentClient | undefined
  try {
    agent = useAgent ? await AgentClient.connect(deps.agent) : undefined
  } catch (err) {
    ca.close()
    throw err
  }
  // the KRL travels beside the sign-in on the same pinned connection pool; never fails the login
  const krl = refreshContextKrl(ctx, ca)
  try {
    return {...(await signIn(o, deps, ctx, ca, agent)), krl: await krl}
  } finally {
    agent?.close()
    ca.close()
  }
}

async function signIn(o: LoginOptions, deps: LoginDeps, ctx: Context, ca: CaClient, agent: AgentClient | undefined): Promise<Omit<LoginResult, 'krl'>> {
  const now = () => nowSeconds(deps.clock)
  let idToken: string
  let method: LoginMethod
  let provisioner: string | null = o.provisioner ?? null
  let store: TokenStore | undefined
  let chosen: OidcProvisioner | undefined
  if (o.identityToken !== undefined) {
    idToken = o.identityToken.trim()
    if (!idToken) throw new SshcaError('ERR_INPUT', 'the identity token file is empty')
    method = 'identity-token'
  } else if (o.githubActions) {
    const {githubActionsToken} = await import('./oidc.ts')
    idToken = await githubActionsToken(deps.env, await githubAudience(ca, o))
    method = 'github-actions'
  } else {
    const p = await chooseProvisioner(ca, o, deps)
    chosen = p
    provisioner = p.name
    if (agent && !o.force) {
      const existing = await existingCertificate(agent, ctx, p.name, o.identity, now())
      if (existing) {
        return {context: ctx.name, caUrl: ctx.caUrl, provisioner, method: 'existing', skipped: true, certificate: certView(existing, now()), agent: {added: false, socket: agent.socketPath, lifetimeSeconds: null}, files: null, refreshTokenStore: null}
      }
    }
    ;({idToken, method, store} = await interactiveToken(p, ctx, o, deps))
  }

  const key = generatePrivateKey(o.kty ?? 'ed25519')
  const sign = async (ott: string) => (await ca.call('POST', '/ssh/sign', SshSignResponse, {publicKey: key.publicKey.blob.toString('base64'), ott, certType: 'user'})).crt
  let crt: string
  try {
    crt = await sign(idToken)
  } catch (err) {
    // step-ca refuses the ID token of a refresh grant: it carries the first sign-in's nonce, which
    // step-ca counts as a used token. Sign in again (once), without the refresh token.
    if (!(method === 'refresh' && chosen && isSshcaError(err, 'ERR_CA_UNAUTHORIZED'))) throw await explainRefusal(err, idToken, method, ca, Number(now()))
    deps.interactive.notify({type: 'refresh_refused_by_ca'})
    ;({idToken, method, store} = await interactiveToken(chosen, ctx, o, deps, false))
    try {
      crt = await sign(idToken)
    } catch (err2) {
      throw await explainRefusal(err2, idToken, method, ca, Number(now()))
    }
  }
  const cert = checkIssued(crt, key, ctx)
  const comment = agentComment(ctx.name, provisioner)
  const base = {context: ctx.name, caUrl: ctx.caUrl, provisioner, method, skipped: false, certificate: certView(cert, now()), refreshTokenStore: store?.kind ?? null}
  if (!agent) {
    // each written to a fresh temp file and renamed over the name: a symlink planted there (after the
    // check above) is replaced, never followed, and no reader sees half a key
    const files = outFiles(o.out!)
    await writeFileAtomic(files.key, formatOpenSshPrivateKey(key, comment), 0o600)
    await writeFileAtomic(files.certificate, `${certificateLine(cert, comment)}\n`, 0o644)
    return {...base, agent: {added: false, socket: null, lifetimeSeconds: null}, files}
  }
  const lifetime = Math.max(1, Math.min(0xffff_ffff, Number(cert.validBefore - now())))
  await agent.addCertificate(key, cert, {lifetimeSeconds: lifetime, comment})
  return {...base, agent: {added: true, socket: agent.socketPath, lifetimeSeconds: lifetime}, files: null}
}

/** A 401 from the CA, explained from the token's own claims, with the next step for this way of signing in. */
async function explainRefusal(err: unknown, token: string, method: LoginMethod, ca: CaClient, now: number): Promise<unknown> {
  if (!isSshcaError(err, 'ERR_CA_UNAUTHORIZED')) return err
  const {explainTokenRefusal} = await import('./token-diagnosis.ts')
  // the audiences the CA accepts: one more request, only on this failure path
  const audiences = await listProvisioners(ca)
    .then((list) => list.flatMap((p) => [p.audience ?? p.clientID ?? ''].filter(Boolean)))
    .catch(() => [])
  const flow = method === 'identity-token' ? 'identity-token' : method === 'github-actions' ? 'github-actions' : 'interactive'
  return explainTokenRefusal(err, token, flow, {now, audiences, maxLifetime: 3600})
}
