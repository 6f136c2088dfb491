/**
 * OIDC token verification: route a token to its provisioner by issuer + audience (and azp), fetch
 * the issuer's discovery document and JWKS (cached; refetched at most once per cooldown on an
 * unknown key id; stale keys used for a while when a refresh fails; denied when none were ever
 * fetched), then verify with jose: asymmetric algorithms only, exp/nbf/iat with 60 s of leeway.
 */
import {createHash} from 'node:crypto'
import {createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey} from 'jose'
import {SshcaError} from '../errors.ts'
import {isLoopbackAddress} from '../util/net.ts'
import type {ProvisionerConfig} from './config.ts'
import {denial} from './policy.ts'

export const ALLOWED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519']
export const LEEWAY_SECONDS = 60
const MAX_TOKEN_LENGTH = 8192

export interface VerifiedToken {
  provisioner: ProvisionerConfig
  claims: JWTPayload
  /** What replay protection remembers: the issuer with the token's jti, else the token's hash. */
  tokenId: string
  /** SHA-256 of the raw token, hex: what the audit log shows instead of the token. */
  tokenHash: string
  /** Seconds since the epoch. */
  expiresAt: number
}

export interface VerifierDeps {
  fetch?: typeof fetch
  /** Milliseconds since the epoch. */
  clock?: () => number
  /** Keys are refetched after this long (ms). */
  maxAgeMs?: number
  /** An unknown key id triggers at most one refetch per cooldown (ms). */
  cooldownMs?: number
  /** When a refresh fails, keys this old (ms) are still used; older ones are not. */
  maxStaleMs?: number
  timeoutMs?: number
}

export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

/** Checks an issuer URL or jwks_uri: https, or http on a loopback address (development). */
export function assertSecureUrl(url: string, what: string): URL {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new SshcaError('ERR_UPSTREAM_UNAVAILABLE', `${what} "${url}" is not a URL`)
  }
  if (u.protocol === 'https:' || (u.protocol === 'http:' && isLoopbackAddress(u.hostname))) return u
  throw new SshcaError('ERR_UPSTREAM_UNAVAILABLE', `${what} ${url} is neither https nor loopback http`)
}

/** Discovery + JWKS of one issuer, shared by every provisioner naming it, kept across reloads. */
export class IssuerKeys {
  private keys?: {getKey: JWTVerifyGetKey; fetchedAt: number}
  private lastAttempt = 0
  private pending?: Promise<void>
  readonly issuer: string
  private readonly deps: Required<Omit<VerifierDeps, 'fetch'>> & {fetch: typeof fetch}

  constructor(issuer: string, deps: VerifierDeps) {
    this.issuer = issuer
    this.deps = {
      fetch: deps.fetch ?? fetch,
      clock: deps.clock ?? Date.now,
      maxAgeMs: deps.maxAgeMs ?? 10 * 60_000,
      cooldownMs: deps.cooldownMs ?? 30_000,
      maxStaleMs: deps.maxStaleMs ?? 60 * 60_000,
      timeoutMs: deps.timeoutMs ?? 5000,
    }
  }

  private async getJson(url: string, what: string): Promise<unknown> {
    let res: Response
    try {
      res = await this.deps.fetch(url, {signal: AbortSignal.timeout(this.deps.timeoutMs), redirect: 'error', headers: {accept: 'application/json'}})
    } catch (err) {
      throw new SshcaError('ERR_UPSTREAM_UNAVAILABLE', `cannot fetch the ${what} of ${this.issuer}: ${(err as Error).message}`, {cause: err})
    }
    if (!res.ok) throw new SshcaError('ERR_UPSTREAM_UNAVAILABLE', `the ${what} of ${this.issuer} answered HTTP ${res.status}`)
    try {
      return await res.json()
    } catch (err) {
      throw new SshcaError('ERR_UPSTREAM_UNAVAILABLE', `the ${what} of ${this.issuer} is not JSON`, {cause: err})
    }
  }

  private async refresh(): Promise<void> {
    this.pending ??= (async () => {
      this.lastAttempt = this.deps.clock()
      const discoveryUrl = `${this.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`
      assertSecureUrl(discoveryUrl, 'discovery URL')
      const meta = (await this.getJson(discoveryUrl, 'discovery document')) as {issuer?: unknown; jwks_uri?: unknown}
      if (meta.issuer !== this.issuer) throw new SshcaError('ERR_UPSTREAM_UNAVAILABLE', `discovery document of ${this.issuer} names issuer ${String(meta.issuer)}`)
      if (typeof meta.jwks_uri !== 'string') throw new SshcaError('ERR_UPSTREAM_UNAVAILABLE', `discovery document of ${this.issuer} has no jwks_uri`)
      assertSecureUrl(meta.jwks_uri, 'jwks_uri')
      const jwks = (await this.getJson(meta.jwks_uri, 'JWKS')) as JSONWebKeySet
      if (!jwks || !Array.isArray(jwks.keys)) throw new SshcaError('ERR_UPSTREAM_UNAVAILABLE', `the JWKS of ${this.issuer} has no keys`)
      this.keys = {getKey: createLocalJWKSet(jwks), fetchedAt: this.deps.clock()}
    })().finally(() => {
      this.pending = undefined
    })
    return this.pending
  }

  /** A jose key resolver: fresh keys when possible, stale ones within limits, none → fail closed. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    const now = this.deps.clock()
    if (!this.keys || now - this.keys.fetchedAt > this.deps.maxAgeMs) {
      try {
        await this.refresh()
      } catch (err) {
        if (!this.keys || now - this.keys.fetchedAt > this.deps.maxStaleMs) throw err
      }
    }
    try {
      return await this.keys!.getKey(header, token)
    } catch (err) {
      if (err instanceof joseErrors.JWKSNoMatchingKey && now - this.lastAttempt > this.deps.cooldownMs) {
        await this.refresh().catch(() => undefined)
        return this.keys!.getKey(header, token)
      }
      throw err
    }
  }
}

export class TokenVerifier {
  private readonly issuers = new Map<string, IssuerKeys>()
  private readonly provisioners: readonly ProvisionerConfig[]
  private readonly deps: VerifierDeps

  /** `previous` lends its key caches for issuers that are still configured (SIGHUP reloads). */
  constructor(provisioners: readonly ProvisionerConfig[], deps: VerifierDeps = {}, previous?: TokenVerifier) {
    this.provisioners = provisioners
    this.deps = deps
    for (const p of provisioners) {
      if (!this.issuers.has(p.issuer)) this.issuers.set(p.issuer, previous?.issuers.get(p.issuer) ?? new IssuerKeys(p.issuer, deps))
    }
  }

  /** The provisioner a token is meant for, read from its unverified claims. */
  route(token: string): {provisioner: ProvisionerConfig; claims: JWTPayload} {
    if (token.length > MAX_TOKEN_LENGTH) throw denial('ERR_TOKEN_INVALID', 'token_invalid', 'the token is too long')
    let header: ReturnType<typeof decodeProtectedHeader>
    let claims: JWTPayload
    try {
      header = decodeProtectedHeader(token)
      claims = decodeJwt(token)
    } catch (err) {
      throw denial('ERR_TOKEN_INVALID', 'token_invalid', `the token is not a JWT: ${(err as Error).message}`)
    }
    if (typeof header.alg !== 'string' || !ALLOWED_ALGORITHMS.includes(header.alg)) {
      throw denial('ERR_TOKEN_INVALID', 'token_invalid', `the token's algorithm ${JSON.stringify(header.alg)} is not accepted (asymmetric algorithms only)`)
    }
    return {provisioner: routeClaims(this.provisioners, claims), claims}
  }

  async verify(token: string): Promise<VerifiedToken> {
    const {provisioner} = this.route(token)
    const clock = this.deps.clock ?? Date.now
    let claims: JWTPayload
    let alg: string
    try {
      ;({payload: claims, protectedHeader: {alg}} = await jwtVerify(token, this.issuers.get(provisioner.issuer)!.getKey, {
        issuer: provisioner.issuer,
        audience: provisioner.audience,
        algorithms: ALLOWED_ALGORITHMS,
        clockTolerance: LEEWAY_SECONDS,
        currentDate: new Date(clock()),
        requiredClaims: ['exp', 'iat'],
      }))
    } catch (err) {
      throw verificationError(err, provisioner)
    }
    const now = Math.floor(clock() / 1000)
    if (typeof claims.iat !== 'number' || claims.iat > now + LEEWAY_SECONDS) {
      throw denial('ERR_TOKEN_INVALID', 'token_not_yet_valid', 'the token was issued in the future', {provisioner: provisioner.name})
    }
    const hash = tokenHash(token)
    // Not the nonce: an ID token from a refresh grant repeats the original nonce (OIDC Core §12.2),
    // so keying on it would refuse every refreshed sign-in as a replay. Not the token's text either:
    // one signed token has many spellings (see replayKey).
    const id = typeof claims.jti === 'string' && claims.jti ? `jti:${claims.jti}` : `sha256:${replayKey(token, alg!)}`
    return {provisioner, claims, tokenId: `${provisioner.issuer}#${id}`, tokenHash: hash, expiresAt: (claims.exp as number) + LEEWAY_SECONDS}
  }
}

/** ECDSA group orders (SEC 2): (r, s) and (r, n − s) verify alike. */
const ECDSA_ORDERS: Readonly<Record<string, bigint>> = {
  ES256: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  ES384: 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
  ES512: 0x01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409n,
}

/**
 * What names one verified token, however it is spelled: anyone holding a spent token can respell
 * its signature (the spare bits of base64url's last character, whitespace and padding, which the
 * decoder ignores; ECDSA's (r, n − s)) and it still verifies. So: the signed part as sent (any
 * change there breaks the signature), the signature's bytes, and ECDSA's s as min(s, n − s).
 * Two signatures the issuer really made (ECDSA and PSS sign with fresh randomness) stay apart.
 */
export function replayKey(token: string, alg: string): string {
  const dot = token.lastIndexOf('.')
  const sig = Buffer.from(token.slice(dot + 1), 'base64url')
  const n = ECDSA_ORDERS[alg]
  if (n !== undefined && sig.length % 2 === 0 && sig.length > 0) {
    const half = sig.length / 2
    const s = BigInt(`0x${sig.subarray(half).toString('hex')}`)
    if (s < n && n - s < s) Buffer.from((n - s).toString(16).padStart(half * 2, '0'), 'hex').copy(sig, half)
  }
  return createHash('sha256').update(token.slice(0, dot)).update('.').update(sig).digest('hex')
}

/** The one provisioner whose issuer and audience (and client id, when azp is present) the claims name. */
export function routeClaims(provisioners: readonly ProvisionerConfig[], claims: JWTPayload): ProvisionerConfig {
  const byIssuer = provisioners.filter((p) => p.issuer === claims.iss)
  if (byIssuer.length === 0) throw denial('ERR_TOKEN_INVALID', 'issuer_unknown', `no provisioner trusts issuer ${JSON.stringify(claims.iss)}`)
  const aud = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : []
  let candidates = byIssuer.filter((p) => aud.includes(p.audience))
  if (candidates.length === 0) throw denial('ERR_TOKEN_INVALID', 'audience_mismatch', `the token's audience ${JSON.stringify(claims.aud)} names no provisioner of ${claims.iss}`)
  if (typeof claims.azp === 'string') {
    candidates = candidates.filter((p) => (p.clientId ?? p.audience) === claims.azp)
    if (candidates.length === 0) throw denial('ERR_TOKEN_INVALID', 'audience_mismatch', `the token's authorized party ${JSON.stringify(claims.azp)} is not this CA's client`)
  }
  return candidates[0]!
}

function verificationError(err: unknown, p: ProvisionerConfig): SshcaError {
  const details = {provisioner: p.name}
  if (err instanceof SshcaError) return new SshcaError(err.code, err.message, {cause: err, details: {...details, reason: 'jwks_unavailable'}})
  if (err instanceof joseErrors.JWTExpired) return denial('ERR_TOKEN_INVALID', 'token_expired', 'the token has expired', details)
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    const reason = err.claim === 'nbf' ? 'token_not_yet_valid' : err.claim === 'aud' ? 'audience_mismatch' : err.claim === 'iss' ? 'issuer_unknown' : 'token_invalid'
    return denial('ERR_TOKEN_INVALID', reason, `the token's "${err.claim}" claim is not acceptable: ${err.message}`, details)
  }
  if (err instanceof joseErrors.JWKSNoMatchingKey) return denial('ERR_TOKEN_INVALID', 'token_invalid', 'the token is signed by a key the issuer does not publish', details)
  if (err instanceof joseErrors.JOSEError) return denial('ERR_TOKEN_INVALID', 'token_invalid', `the token does not verify: ${err.message}`, details)
  return denial('ERR_TOKEN_INVALID', 'token_invalid', `the token does not verify: ${(err as Error).message}`, details)
}
