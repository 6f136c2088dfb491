/**
 * `sshca status` (tsh status's role): is this machine ready to ssh with the current context, and
 * if not, what fixes it. Each check says what it found and, when something is missing or stale,
 * the one command that fixes it. Reads only; nothing is changed.
 */
import {readFile, stat} from 'node:fs/promises'
import {isSshcaError} from '../../errors.ts'
import {object, string} from '../../protocol/check.ts'
import {AgentClient, type AgentOptions} from '../../ssh/agent.ts'
import {nowSeconds, parseCertificateLine, type Certificate} from '../../ssh/cert.ts'
import {PublicKey} from '../../ssh/keys.ts'
import {exists} from '../../util/fs.ts'
import {CaClient} from '../ca-api/ca-client.ts'
import {agentlessFiles, loadContext, type Context} from '../home/home.ts'
import {contextKrlPath} from '../ca-api/krl.ts'
import {sshConfigInstalled} from '../local/ssh-config.ts'
import type {TokenStore} from '../home/token-store.ts'

export type CheckState = 'ok' | 'warn' | 'fail'

export interface StatusCheck {
  state: CheckState
  /** What was found, for a person. */
  detail: string
  /** The command that fixes it, when something needs fixing. */
  fix: string | null
}

export interface StatusResult {
  context: string
  caUrl: string
  /** True when nothing is in `fail`. */
  ready: boolean
  checks: {
    ca: StatusCheck & {latencyMs: number | null}
    certificate: StatusCheck & {
      keyId: string | null
      principals: string[]
      secondsLeft: number | null
      where: 'agent' | 'files' | null
      expiredInAgent: number
    }
    refreshToken: StatusCheck & {store: 'keyring' | 'file' | null}
    sshConfig: StatusCheck & {
      file: string
      block: boolean
      include: boolean
      autoLogin: boolean
      /** The KRL the block tells ssh to read, or null when it names none. */
      revokedHostKeys: string | null
    }
    krl: StatusCheck & {file: string | null; ageSeconds: number | null}
  }
}

/** A KRL older than this is called stale (login and config refresh it; ssh keeps using what it has). */
export const KRL_STALE_SECONDS = 24 * 3600

const check = <T extends object>(state: CheckState, detail: string, fix: string | null, extra: T): StatusCheck & T => ({
  state,
  detail,
  fix,
  ...extra,
})

export async function status(
  home: string,
  o: {context?: string},
  deps: {
    agent: AgentOptions
    tokenStore: () => Promise<TokenStore>
    clock?: () => number
    sshDir?: string
    caTimeoutMs?: number
  },
): Promise<StatusResult> {
  const ctx = await loadContext(home, o.context)
  const flag = o.context ? ` --context ${ctx.name}` : ''
  const clock = deps.clock ?? Date.now
  const [ca, certificate, refreshToken, sshConfig, krl] = await Promise.all([
    caCheck(ctx, flag, clock),
    certificateCheck(ctx, flag, deps.agent, clock),
    tokenCheck(ctx, flag, deps.tokenStore),
    sshConfigCheck(home, ctx, flag, deps.sshDir),
    krlCheck(ctx, flag, clock),
  ])
  const checks = {ca, certificate, refreshToken, sshConfig, krl}
  return {context: ctx.name, caUrl: ctx.caUrl, ready: Object.values(checks).every((c) => c.state !== 'fail'), checks}
}

const Health = object({status: string()})

async function caCheck(ctx: Context, flag: string, clock: () => number): Promise<StatusResult['checks']['ca']> {
  const client = new CaClient(ctx.caUrl, ctx.rootPem)
  const started = clock()
  try {
    await client.call('GET', '/health', Health)
    return check('ok', `reachable over TLS pinned to its root (${ctx.caUrl})`, null, {latencyMs: clock() - started})
  } catch (err) {
    const tls = isSshcaError(err, 'ERR_TRUST_TLS')
    return check(
      'fail',
      (err as Error).message,
      tls
        ? `sshca bootstrap --context ${ctx.name} --ca-url ${ctx.caUrl} --fingerprint <the new root's sha256> --force   (only if the CA was re-created)`
        : 'check the network or VPN, then: sshca status' + flag,
      {latencyMs: null},
    )
  } finally {
    client.close()
  }
}

async function certificateCheck(
  ctx: Context,
  flag: string,
  agentOptions: AgentOptions,
  clock: () => number,
): Promise<StatusResult['checks']['certificate']> {
  const now = nowSeconds(clock)
  const cas = new Set(ctx.userCaKeys.map((l) => PublicKey.parseLine(l).key.fingerprint()))
  const ours = (c: Certificate | undefined): c is Certificate =>
    c !== undefined && c.type === 'user' && cas.has(c.signatureKey.fingerprint())
  const found = (
    c: Certificate,
    where: 'agent' | 'files',
    expired: number,
    extra = '',
  ): StatusResult['checks']['certificate'] => {
    const left = Number(c.validBefore - now)
    return check(
      'ok',
      `${c.keyId} for ${c.principals.join(', ')}, ${formatLeft(left)} left (${where === 'agent' ? 'in the ssh-agent' : 'in files named by the managed ssh_config'})${extra}`,
      expired ? `sshca login${flag}   (also removes the ${expired} expired one(s) in the agent)` : null,
      {keyId: c.keyId, principals: [...c.principals], secondsLeft: left, where, expiredInAgent: expired},
    )
  }
  let expired = 0
  let agentProblem: string | null = null
  try {
    const best = await AgentClient.with(agentOptions, async (a) => {
      const certs = (await a.list()).map((i) => i.certificate).filter(ours)
      expired = certs.filter((c) => c.validBefore <= now).length
      return certs
        .filter((c) => c.validAfter <= now && c.validBefore > now)
        .sort((x, y) => Number(y.validBefore - x.validBefore))[0]
    })
    if (best) return found(best, 'agent', expired)
  } catch (err) {
    agentProblem = (err as Error).message
  }
  if (ctx.agentless) {
    try {
      const {cert} = parseCertificateLine(await readFile(agentlessFiles(ctx).certificate, 'utf8'))
      if (ours(cert) && cert.validBefore > now) return found(cert, 'files', expired, `; ${ctx.agentless.reason}`)
    } catch {
      // no usable file: same as none
    }
  }
  const why = agentProblem
    ? `no ssh-agent (${agentProblem})`
    : `no current certificate of "${ctx.name}"${expired ? ` (${expired} expired one(s) in the agent)` : ''}`
  return check(
    'fail',
    why,
    agentProblem && !ctx.agentless ? 'eval "$(ssh-agent -s)" && sshca login' + flag : `sshca login${flag}`,
    {keyId: null, principals: [], secondsLeft: null, where: null, expiredInAgent: expired},
  )
}

async function tokenCheck(
  ctx: Context,
  flag: string,
  storeOf: () => Promise<TokenStore>,
): Promise<StatusResult['checks']['refreshToken']> {
  try {
    const store = await storeOf()
    const keys = await store.keys(`${ctx.name}/`)
    if (keys.length)
      return check(
        'ok',
        `saved for ${keys.map((k) => k.slice(ctx.name.length + 1)).join(', ')} in ${store.kind === 'keyring' ? 'the OS keyring' : `a 0600 file under $SSHCA_HOME/tokens`}: the next sign-in needs no browser while your IdP session lasts`,
        null,
        {store: store.kind},
      )
    return check(
      'warn',
      'none saved: the next sign-in opens the browser (or asks for a device code)',
      `sshca login${flag}`,
      {store: null},
    )
  } catch (err) {
    return check('warn', `the token store cannot be read: ${(err as Error).message}`, null, {store: null})
  }
}

async function sshConfigCheck(
  home: string,
  ctx: Context,
  flag: string,
  sshDir?: string,
): Promise<StatusResult['checks']['sshConfig']> {
  const s = await sshConfigInstalled(home, ctx.name, sshDir)
  const autoLogin = Boolean(ctx.sshConfig?.loginCommand)
  const extra = {file: s.file, block: s.block, include: s.include, autoLogin, revokedHostKeys: s.revokedHostKeys}
  if (s.block && s.include) {
    const named = s.revokedHostKeys
    // ssh refuses every host of the pattern when the list it is told to read is missing
    if (named !== null && !(await present(named)))
      return check(
        'fail',
        `the block of "${ctx.name}" in ${s.file} names the revocation list ${named}, which is missing: ssh refuses every host it matches`,
        `sshca config${flag}`,
        extra,
      )
    // a list at hand that the block does not name: ssh does not refuse the host certificates it revokes
    const own = contextKrlPath(ctx.dir)
    if (named !== own && (await present(own)))
      return check(
        'warn',
        `the block of "${ctx.name}" in ${s.file} ${named === null ? 'has no RevokedHostKeys' : `names ${named}`}, though the CA's revocation list is ${own}: ssh does not refuse the host certificates the CA revoked`,
        `sshca config${flag}`,
        extra,
      )
    const parts = [
      named === null ? 'no revocation list' : 'RevokedHostKeys',
      ...(autoLogin ? ['login when ssh needs it'] : []),
    ]
    return check(
      'ok',
      `${s.file} has the block of "${ctx.name}" (${parts.join(', ')}) and ${s.userConfig} includes it`,
      null,
      extra,
    )
  }
  const missing = !s.block
    ? `${s.file} has no block for "${ctx.name}"`
    : `${s.userConfig} does not include ${s.file} on top`
  return check(
    'fail',
    `${missing}: ssh neither checks the CA's revocation list nor signs you in by itself`,
    `sshca config${flag}`,
    extra,
  )
}

async function krlCheck(ctx: Context, flag: string, clock: () => number): Promise<StatusResult['checks']['krl']> {
  const file = contextKrlPath(ctx.dir)
  try {
    const age = Math.max(0, Math.round((clock() - (await stat(file)).mtimeMs) / 1000))
    if (age > KRL_STALE_SECONDS)
      return check(
        'warn',
        `${file} was fetched ${formatLeft(age)} ago: revocations since then are unknown to ssh`,
        `sshca login${flag}   (or sshca config${flag})`,
        {file, ageSeconds: age},
      )
    return check('ok', `${file}, fetched ${formatLeft(age)} ago`, null, {file, ageSeconds: age})
  } catch {
    const none = ctx.sshConfig && ctx.sshConfig.krlFile === null
    return check(
      'warn',
      none
        ? `the CA publishes no revocation list: ${ctx.sshConfig?.krlNote ?? 'ssh cannot refuse a revoked host certificate'}`
        : 'no revocation list fetched yet',
      none ? null : `sshca config${flag}`,
      {file: null, ageSeconds: null},
    )
  }
}

function formatLeft(seconds: number): string {
  const s = Math.max(0, Math.round(seconds))
  if (s < 120) return `${s}s`
  if (s < 7200) return `${Math.round(s / 60)}m`
  if (s < 172800) return `${Math.floor(s / 3600)}h${Math.round((s % 3600) / 60)}m`
  return `${Math.round(s / 86400)}d`
}

/** Whether a file is there; one that cannot even be looked at counts as missing (as it is to ssh). */
const present = (path: string): Promise<boolean> => exists(path).catch(() => false)
