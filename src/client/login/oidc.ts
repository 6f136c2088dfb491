/**
 * Getting an ID token from a person's identity provider, every OIDC step through openid-client:
 * authorization code + PKCE (S256) + state + nonce with a loopback redirect (RFC 8252), the device
 * authorization grant (RFC 8628), and the refresh grant. Plain-HTTP issuers only on loopback.
 */
import type * as Oidc from 'openid-client'
import {SshcaError} from '../../errors.ts'
import {isLoopbackAddress, parseHostPort} from '../../util/net.ts'
import {singleLine} from '../../util/text.ts'
import {startLoopback} from './loopback.ts'

export interface OidcProvisioner {
  name: string
  issuer: string
  clientId: string
  clientSecret?: string
  listenAddress?: string
  scopes?: string[]
}

export type LoginEvent =
  | {type: 'authorization_url'; url: string; browserOpened: boolean}
  | {
      type: 'device_code'
      userCode: string
      verificationUri: string
      verificationUriComplete?: string
      expiresIn: number
    }
  | {type: 'waiting'; timeoutMs: number}
  | {type: 'refreshing'}
  | {type: 'refresh_failed'; reason: string}
  /** The CA refused the ID token of a refresh (step-ca does: it carries the first sign-in's nonce, which it has seen); signing in again. */
  | {type: 'refresh_refused_by_ca'}
  /**
   * A request reached the loopback listener from another user's program (`user`, Linux) or without this
   * sign-in's state (`state`); it was refused and the wait goes on.
   */
  | {type: 'callback_ignored'; why: 'user' | 'state'}
  /** No browser here can reach the loopback listener (`reason`): the device flow is used instead, or (unsupported) the URL must be opened on this machine. */
  | {type: 'no_local_browser'; reason: string; usingDevice: boolean}
  /** The refresh token went to a 0600 file (no OS keyring); said when that file is first written. */
  | {type: 'refresh_token_file'; file: string}

export interface InteractiveDeps {
  openBrowser(url: string): Promise<boolean>
  /**
   * Why no browser on this machine can reach 127.0.0.1 (an SSH session, no display), when that is so:
   * login then prefers the device flow.
   */
  noLocalBrowser?: string
  notify(e: LoginEvent): void
  /** How long to wait for the person (default 5 minutes). */
  timeoutMs?: number
  /** Aborted on Ctrl-C. */
  signal?: AbortSignal
  /** HTTP to the identity provider (default: the global fetch). */
  fetch?: HttpFetch
  /**
   * false: nobody could see a URL or a code, nor a browser open (ssh's Match exec from cron or CI):
   * after the refresh grant, sign-in fails at once instead of waiting for minutes.
   */
  canPrompt?: boolean
}

export interface IdpTokens {
  idToken: string
  refreshToken?: string
}

export const DEFAULT_SCOPES = ['openid', 'email', 'profile', 'offline_access']

/**
 * How the client speaks HTTP to identity providers: the global fetch unless one is passed in
 * (openid-client's customFetch takes the same), so tests and embedders can see every request.
 */
export type HttpFetch = (url: string, init: RequestInit) => Promise<Response>

async function configure(
  p: OidcProvisioner,
  http?: HttpFetch,
): Promise<{client: typeof Oidc; config: Oidc.Configuration}> {
  const client = await import('openid-client')
  const issuer = new URL(p.issuer)
  const insecure = issuer.protocol === 'http:'
  if (insecure && !isLoopbackAddress(issuer.hostname)) {
    throw new SshcaError(
      'ERR_IDP_ERROR',
      `the identity provider ${p.issuer} is plain http and not on loopback; refusing`,
    )
  }
  try {
    const config = await client.discovery(
      issuer,
      p.clientId,
      p.clientSecret ? {client_secret: p.clientSecret} : undefined,
      p.clientSecret ? client.ClientSecretPost(p.clientSecret) : client.None(),
      {
        execute: insecure ? [client.allowInsecureRequests] : [],
        timeout: 15,
        ...(http ? {[client.customFetch]: http} : {}),
      },
    )
    return {client, config}
  } catch (err) {
    throw idpError(p, err)
  }
}

function idpError(p: OidcProvisioner, err: unknown): SshcaError {
  if (err instanceof SshcaError) return err
  const e = err as {
    name?: string
    code?: string
    error?: string
    error_description?: string
    message: string
    cause?: {code?: string}
  }
  // the identity provider's words are one line each: a line break in them would print lines that
  // look like sshca's own (a forged error, a forged hint)
  if (e.error)
    return new SshcaError(
      'ERR_IDP_ERROR',
      `the identity provider refused: ${singleLine(String(e.error))}${e.error_description ? ` (${singleLine(String(e.error_description))})` : ''}`,
      {cause: err},
    )
  if (e.name === 'AbortError' || e.code === 'OAUTH_ABORT')
    return new SshcaError('ERR_LOGIN_CANCELLED', 'the sign-in was cancelled', {cause: err})
  const netCode = e.cause?.code ?? e.code
  if (netCode && /ECONN|ENOTFOUND|ETIMEDOUT|UND_ERR|OAUTH_TIMEOUT/.test(netCode)) {
    return new SshcaError(
      'ERR_IDP_UNREACHABLE',
      `cannot reach the identity provider ${p.issuer}: ${singleLine(netCode)}`,
      {
        cause: err,
      },
    )
  }
  return new SshcaError('ERR_IDP_ERROR', `the sign-in with ${p.issuer} failed: ${singleLine(String(e.message))}`, {
    cause: err,
  })
}

function scopeOf(p: OidcProvisioner): string {
  return (p.scopes?.length ? p.scopes : DEFAULT_SCOPES).join(' ')
}

/** Waits for `p`, but not longer than the timeout, and not past Ctrl-C; every exit clears both. */
function withTimeout<T>(p: Promise<T>, deps: InteractiveDeps, what: string): Promise<T> {
  const ms = deps.timeoutMs ?? 5 * 60_000
  return new Promise<T>((resolve, reject) => {
    const settle = (fn: () => void): void => {
      clearTimeout(timer)
      deps.signal?.removeEventListener('abort', onAbort)
      fn()
    }
    const timer = setTimeout(
      () =>
        settle(() =>
          reject(
            new SshcaError('ERR_LOGIN_TIMEOUT', `no ${what} within ${Math.round(ms / 1000)} s`, {
              hint: 'run sshca login again and finish signing in in the browser; use --console on a machine without one',
            }),
          ),
        ),
      ms,
    )
    const onAbort = (): void => settle(() => reject(new SshcaError('ERR_LOGIN_CANCELLED', 'the sign-in was cancelled')))
    if (deps.signal?.aborted) return onAbort()
    deps.signal?.addEventListener('abort', onAbort, {once: true})
    p.then(
      (v) => settle(() => resolve(v)),
      (e: unknown) => settle(() => reject(e)),
    )
  })
}

/** Authorization code + PKCE through the browser; the URL is always handed to notify() to print. */
export async function browserLogin(
  p: OidcProvisioner,
  loginHint: string | undefined,
  deps: InteractiveDeps,
): Promise<IdpTokens> {
  const {client, config} = await configure(p, deps.fetch)
  const state = client.randomState()
  const nonce = client.randomNonce()
  const verifier = client.randomPKCECodeVerifier()
  const fixed = p.listenAddress ? parseHostPort(p.listenAddress) : undefined
  const loopback = await startLoopback(state, fixed, (why) => deps.notify({type: 'callback_ignored', why}))
  try {
    const scope = scopeOf(p)
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: loopback.redirectUri,
      scope,
      state,
      nonce,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      // without prompt=consent, IdPs such as oidc-provider and Google drop offline_access
      ...(scope.split(' ').includes('offline_access') ? {prompt: 'consent'} : {}),
      ...(loginHint ? {login_hint: loginHint} : {}),
    })
    const browserOpened = await deps.openBrowser(url.href).catch(() => false)
    deps.notify({type: 'authorization_url', url: url.href, browserOpened})
    deps.notify({type: 'waiting', timeoutMs: deps.timeoutMs ?? 5 * 60_000})
    const callback = await withTimeout(loopback.callback, deps, 'sign-in')
    try {
      const tokens = await client.authorizationCodeGrant(config, callback, {
        pkceCodeVerifier: verifier,
        expectedState: state,
        expectedNonce: nonce,
        idTokenExpected: true,
      })
      return {idToken: tokens.id_token!, ...(tokens.refresh_token ? {refreshToken: tokens.refresh_token} : {})}
    } catch (err) {
      throw idpError(p, err)
    }
  } finally {
    loopback.close()
  }
}

/** Whether the provisioner's IdP offers the device authorization grant (its discovery names the endpoint). */
export async function supportsDeviceFlow(p: OidcProvisioner, http?: HttpFetch): Promise<boolean> {
  try {
    const {config} = await configure(p, http)
    return typeof config.serverMetadata().device_authorization_endpoint === 'string'
  } catch {
    return false
  }
}

/** The device authorization grant: prints a code, polls until the person confirms it elsewhere. */
export async function deviceLogin(p: OidcProvisioner, deps: InteractiveDeps): Promise<IdpTokens> {
  const {client, config} = await configure(p, deps.fetch)
  let handle: Awaited<ReturnType<typeof client.initiateDeviceAuthorization>>
  try {
    handle = await client.initiateDeviceAuthorization(config, {scope: scopeOf(p)})
  } catch (err) {
    throw idpError(p, err)
  }
  // the device flow's fields are printed inside sshca's own lines: one line each
  deps.notify({
    type: 'device_code',
    userCode: singleLine(handle.user_code),
    verificationUri: singleLine(handle.verification_uri),
    ...(handle.verification_uri_complete
      ? {verificationUriComplete: singleLine(handle.verification_uri_complete)}
      : {}),
    expiresIn: handle.expires_in,
  })
  const ms = Math.min(deps.timeoutMs ?? 5 * 60_000, handle.expires_in * 1000)
  deps.notify({type: 'waiting', timeoutMs: ms})
  const abort = new AbortController()
  const poll = client
    .pollDeviceAuthorizationGrant(config, handle, undefined, {signal: abort.signal})
    .catch((err: unknown) => {
      throw idpError(p, err)
    })
  try {
    const tokens = await withTimeout(poll, {...deps, timeoutMs: ms}, 'confirmation of the device code')
    if (!tokens.id_token)
      throw new SshcaError(
        'ERR_IDP_ERROR',
        'the identity provider returned no ID token (is the "openid" scope allowed?)',
      )
    return {idToken: tokens.id_token, ...(tokens.refresh_token ? {refreshToken: tokens.refresh_token} : {})}
  } finally {
    abort.abort()
  }
}

/** A fresh ID token from a refresh token, without the person; undefined when it no longer works. */
export async function refreshLogin(p: OidcProvisioner, refreshToken: string, http?: HttpFetch): Promise<IdpTokens> {
  const {client, config} = await configure(p, http)
  try {
    const tokens = await client.refreshTokenGrant(config, refreshToken, {scope: scopeOf(p)})
    if (!tokens.id_token) throw new SshcaError('ERR_IDP_ERROR', 'the refresh returned no ID token')
    return {idToken: tokens.id_token, refreshToken: tokens.refresh_token ?? refreshToken}
  } catch (err) {
    throw idpError(p, err)
  }
}

/** GitHub Actions: the job's OIDC token for `audience` (needs `permissions: id-token: write`). */
export async function githubActionsToken(
  env: NodeJS.ProcessEnv,
  audience: string,
  http: HttpFetch = fetch,
): Promise<string> {
  const url = env.ACTIONS_ID_TOKEN_REQUEST_URL
  const bearer = env.ACTIONS_ID_TOKEN_REQUEST_TOKEN
  if (!url || !bearer) {
    throw new SshcaError(
      'ERR_GITHUB_ACTIONS_ENV',
      'ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set',
      {
        hint: 'run inside a GitHub Actions job whose workflow grants `permissions: id-token: write`',
      },
    )
  }
  const u = new URL(url)
  u.searchParams.set('audience', audience)
  let res: Response
  let text: string
  try {
    // the signal bounds the whole exchange, the body too: it is read inside it
    res = await http(u.toString(), {
      headers: {authorization: `Bearer ${bearer}`, accept: 'application/json'},
      signal: AbortSignal.timeout(15_000),
    })
    text = await res.text()
  } catch (err) {
    throw new SshcaError(
      'ERR_IDP_UNREACHABLE',
      `cannot reach GitHub's token endpoint: ${singleLine((err as Error).message)}`,
      {cause: err},
    )
  }
  let body: {value?: string}
  try {
    body = (JSON.parse(text) ?? {}) as {value?: string}
  } catch {
    body = {}
  }
  if (!res.ok || typeof body.value !== 'string')
    throw new SshcaError('ERR_IDP_ERROR', `GitHub's token endpoint answered ${res.status} without a token`)
  return body.value
}
