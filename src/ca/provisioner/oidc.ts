/**
 * OIDC token verification: route a token to its provisioner by issuer + audience (and azp), fetch
 * the issuer's discovery document and JWKS (cached; refetched at most once per cooldown on an
 * unknown key id, and at most once per cooldown after a failed refresh; stale keys used for a while
 * when a refresh fails, refreshed in the background meanwhile; denied when none were ever fetched),
 * then verify with jose: asymmetric algorithms only, exp/nbf/iat with 60 s of leeway.
 */
import {createHash} from 'node:crypto'
import {
  createLocalJWKSet,
  errors as joseErrors,
  UnsecuredJWT,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  type ProtectedHeaderParameters,
} from 'jose'
import {SshcaError} from '../../errors.ts'
import {isLoopbackAddress} from '../../util/net.ts'
import type {ProvisionerConfig} from '../config/config.ts'
import {denial} from '../policy/types.ts'
import {verifyJwsSignature} from './jws.ts'

export const ALLOWED_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]
/**
 * Whether a JWT's `typ` says it is no ID token: every explicitly typed JWT (RFC 8725 §3.11: a media
 * type with the `+jwt` suffix, whatever its type or parameters: any `+jwt` in it), as RFC 9068 access
 * tokens, back-channel logout, security events, token introspection responses, DPoP proofs and client
 * assertions are, and a `typ` that is not a string at all. ID tokens carry no media type of their own:
 * no `typ`, or `JWT`.
 */
export function notIdTokenTyp(typ: unknown): boolean {
  if (typ === undefined) return false
  if (typeof typ !== 'string') return true
  return /\+jwt/i.test(typ)
}

export const LEEWAY_SECONDS = 60
/** `{"alg":"none"}`: the header of the unsecured JWT whose claims jose checks (verify() says why). */
const UNSECURED_HEADER = Buffer.from('{"alg":"none"}').toString('base64url')
/** Tokens may live this long (exp − iat) unless a provisioner sets maxTokenAge. */
export const DEFAULT_MAX_TOKEN_AGE = 3600
const MAX_TOKEN_LENGTH = 8192
/** A jti that may key replay protection as it is: 1–256 printable ASCII characters, no space. */
export const USABLE_JTI = /^[\x21-\x7e]{1,256}$/

export interface VerifiedToken {
  provisioner: ProvisionerConfig
  claims: JWTPayload
  /**
   * What replay protection remembers: the issuer with the token's jti, else a hash of what the
   * signature covers (never of the token's text, which has several spellings).
   */
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
  /** Told of every discovery + JWKS fetch and how it ended (the metrics count them). */
  onKeysFetch?: (issuer: string, outcome: 'ok' | 'error') => void
}

export function tokenHash(token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

/**
 * The decoded header and payload of a compact JWS whose three parts are canonical base64url: no
 * padding, no whitespace, no stray bits in the last character. One token has one spelling, so the
 * same signed content cannot be sent again as a "new" token (a replay around a text hash).
 */
export function canonicalParts(token: string): {header: Buffer; payload: Buffer; signature: Buffer} | undefined {
  const parts = token.split('.')
  if (parts.length !== 3) return undefined
  const decoded: Buffer[] = []
  for (const part of parts) {
    // the round trip refuses every character outside base64url, padding and stray bits; not an empty part
    if (part === '') return undefined
    const bytes = Buffer.from(part, 'base64url')
    if (bytes.toString('base64url') !== part) return undefined
    decoded.push(bytes)
  }
  return {header: decoded[0]!, payload: decoded[1]!, signature: decoded[2]!}
}

/** UTF-8 JSON that must be an object (a JWS header, a JWT claims set), as jose requires of both. */
function jsonObject<T>(bytes: Buffer, what: string): T {
  const value: unknown = JSON.parse(bytes.toString('utf8'))
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new Error(`its ${what} is not a JSON object`)
  return value as T
}

/** SHA-256 over the signed content (header and payload bytes, length-prefixed), hex. */
export function signedContentHash(parts: {header: Buffer; payload: Buffer}): string {
  const len = Buffer.alloc(4)
  len.writeUInt32BE(parts.header.length)
  return createHash('sha256').update(len).update(parts.header).update(parts.payload).digest('hex')
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
  /** When the last refresh failed (ms) and why: none is tried again within the cooldown. */
  private lastFailure = -Infinity
  private lastError?: SshcaError
  private pending?: Promise<void>
  readonly issuer: string
  private readonly deps: Required<Omit<VerifierDeps, 'fetch' | 'onKeysFetch'>> &
    Pick<VerifierDeps, 'onKeysFetch'> & {fetch: typeof fetch}

  constructor(issuer: string, deps: VerifierDeps) {
    this.issuer = issuer
    this.deps = {
      fetch: deps.fetch ?? fetch,
      clock: deps.clock ?? Date.now,
      maxAgeMs: deps.maxAgeMs ?? 10 * 60_000,
      cooldownMs: deps.cooldownMs ?? 30_000,
      maxStaleMs: deps.maxStaleMs ?? 60 * 60_000,
      timeoutMs: deps.timeoutMs ?? 5000,
      onKeysFetch: deps.onKeysFetch,
    }
  }

  private async getJson(url: string, what: string): Promise<unknown> {
    let res: Response
    try {
      res = await this.deps.fetch(url, {
        signal: AbortSignal.timeout(this.deps.timeoutMs),
        redirect: 'error',
        headers: {accept: 'application/json'},
      })
    } catch (err) {
      throw new SshcaError(
        'ERR_UPSTREAM_UNAVAILABLE',
        `cannot fetch the ${what} of ${this.issuer}: ${(err as Error).message}`,
        {cause: err},
      )
    }
    if (!res.ok)
      throw new SshcaError('ERR_UPSTREAM_UNAVAILABLE', `the ${what} of ${this.issuer} answered HTTP ${res.status}`)
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
      if (meta.issuer !== this.issuer)
        throw new SshcaError(
          'ERR_UPSTREAM_UNAVAILABLE',
          `discovery document of ${this.issuer} names issuer ${String(meta.issuer)}`,
        )
      if (typeof meta.jwks_uri !== 'string')
        throw new SshcaError('ERR_UPSTREAM_UNAVAILABLE', `discovery document of ${this.issuer} has no jwks_uri`)
      assertSecureUrl(meta.jwks_uri, 'jwks_uri')
      const jwks = (await this.getJson(meta.jwks_uri, 'JWKS')) as JSONWebKeySet
      // Stryker disable next-line ConditionalExpression,LogicalOperator: createLocalJWKSet refuses the same (JWKSInvalid, a TypeError for null), and a failure is the issuer's either way: kept for the operator's message
      if (!jwks || !Array.isArray(jwks.keys))
        throw new SshcaError('ERR_UPSTREAM_UNAVAILABLE', `the JWKS of ${this.issuer} has no keys`)
      this.keys = {getKey: createLocalJWKSet(jwks), fetchedAt: this.deps.clock()}
    })()
      .then(
        () => this.deps.onKeysFetch?.(this.issuer, 'ok'),
        (err: unknown) => {
          // the issuer's failure whatever broke (a discovery document that is JSON null, keys jose calls
          // malformed): never a TypeError that would refuse the token as the holder's fault
          const failure =
            err instanceof SshcaError
              ? err
              : new SshcaError(
                  'ERR_UPSTREAM_UNAVAILABLE',
                  `the keys of ${this.issuer} are unusable: ${(err as Error).message}`,
                  {
                    cause: err,
                  },
                )
          this.lastFailure = this.deps.clock()
          this.lastError = failure
          this.deps.onKeysFetch?.(this.issuer, 'error')
          throw failure
        },
      )
      .finally(() => {
        this.pending = undefined
      })
    return this.pending
  }

  /**
   * A jose key resolver: fresh keys when possible, stale ones within limits, none → fail closed.
   * Anyone can make a request reach here (routing reads the unverified iss and aud), so the issuer is
   * asked at most once per cooldown after a failure: otherwise each forged token would cost a
   * discovery + JWKS fetch and, with a hanging issuer, hold its request for timeoutMs.
   */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    const now = this.deps.clock()
    if (!this.keys || now - this.keys.fetchedAt > this.deps.maxAgeMs) {
      const coolingDown = now - this.lastFailure < this.deps.cooldownMs
      if (this.keys && now - this.keys.fetchedAt <= this.deps.maxStaleMs) {
        // stale but usable: used now, refreshed behind the request (its failure is counted and cools down)
        if (!coolingDown) void this.refresh().catch(() => undefined)
      } else if (coolingDown) {
        // what failed last time, again, without asking (the operator's log keeps its cause)
        throw this.lastError!
      } else {
        await this.refresh()
      }
    }
    try {
      return await this.keys!.getKey(header, token)
    } catch (err) {
      // an unknown key id (a rotation) waits for the refresh under way, which may bring it, or starts
      // one at most once per cooldown: forged key ids wait on a hanging issuer only as long as that one
      // refresh takes, once per cooldown
      if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err
      if (!this.pending && now - this.lastAttempt <= this.deps.cooldownMs) throw err
      // the refresh under way, or a new one
      await this.refresh().catch(() => undefined)
      return this.keys!.getKey(header, token)
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
    for (const issuer of new Set(provisioners.map((p) => p.issuer)))
      this.issuers.set(issuer, previous?.issuers.get(issuer) ?? new IssuerKeys(issuer, deps))
  }

  /** The provisioner a token is meant for, read from its unverified claims. */
  route(token: string): {
    provisioner: ProvisionerConfig
    claims: JWTPayload
    header: ProtectedHeaderParameters
    parts: NonNullable<ReturnType<typeof canonicalParts>>
  } {
    if (token.length > MAX_TOKEN_LENGTH) throw denial('ERR_TOKEN_INVALID', 'token_invalid', 'the token is too long')
    const parts = canonicalParts(token)
    if (!parts)
      throw denial('ERR_TOKEN_INVALID', 'token_invalid', 'the token is not a compact JWS in canonical base64url')
    let header: ProtectedHeaderParameters
    let claims: JWTPayload
    try {
      // the bytes canonicalParts decoded, parsed once (jose's decodeProtectedHeader and decodeJwt
      // would decode both again, a tenth of a verification); the claims jose checks come later
      header = jsonObject(parts.header, 'header')
      claims = jsonObject(parts.payload, 'claims set')
    } catch (err) {
      throw denial('ERR_TOKEN_INVALID', 'token_invalid', `the token is not a JWT: ${(err as Error).message}`)
    }
    if (!ALLOWED_ALGORITHMS.some((a) => a === header.alg)) {
      throw denial(
        'ERR_TOKEN_INVALID',
        'token_invalid',
        `the token's algorithm ${JSON.stringify(header.alg)} is not accepted (asymmetric algorithms only)`,
      )
    }
    return {provisioner: routeClaims(this.provisioners, claims), claims, header, parts}
  }

  async verify(token: string): Promise<VerifiedToken> {
    const {provisioner, header, parts} = this.route(token)
    const clock = this.deps.clock ?? Date.now
    const maxTokenAge = provisioner.maxTokenAge ?? DEFAULT_MAX_TOKEN_AGE
    // route() checked: three parts of canonical base64url, a JSON header, an allowed asymmetric alg.
    // No header extensions: jose would take b64 (RFC 7797) and refuse other critical ones; none is
    // needed in an OIDC token, so both are refused
    if (header.crit !== undefined || header.b64 !== undefined)
      throw denial('ERR_TOKEN_INVALID', 'token_invalid', 'the token names header extensions (crit, b64)', {
        provisioner: provisioner.name,
      })
    // an issuer signs more than ID tokens with the same keys: an access token (RFC 9068) or a logout or
    // security event token whose audience names the CA is no sign-in. ID tokens carry "JWT" or nothing
    if (notIdTokenTyp(header.typ))
      throw denial(
        'ERR_TOKEN_INVALID',
        'token_invalid',
        `the token is a ${JSON.stringify(header.typ)}, not an ID token`,
        {
          provisioner: provisioner.name,
        },
      )
    const [encodedHeader, encodedPayload, encodedSignature] = token.split('.') as [string, string, string]
    let claims: JWTPayload
    try {
      // the key by jose's JWKS rules (kid, kty, alg, use), the signature by node:crypto (jws.ts says why).
      // Stryker disable next-line ObjectLiteral: the token's parts, as jwtVerify passes them; jose's JWKS resolvers read only an unprotected header, which a compact JWS has not
      const key = await this.issuers.get(provisioner.issuer)!.getKey(header as Parameters<JWTVerifyGetKey>[0], {
        protected: encodedHeader,
        payload: encodedPayload,
        signature: encodedSignature,
      })
      const signed = verifyJwsSignature(
        header.alg!,
        key,
        Buffer.from(`${encodedHeader}.${encodedPayload}`),
        parts.signature,
      )
      if (!signed) throw new joseErrors.JWSSignatureVerificationFailed()
      // the claims by jose's own checks, on the very payload that was signed (an unsecured JWT is how
      // jose offers them without a signature of its own to check; the header matters to them only for typ)
      ;({payload: claims} = UnsecuredJWT.decode(`${UNSECURED_HEADER}.${encodedPayload}.`, {
        issuer: provisioner.issuer,
        audience: provisioner.audience,
        clockTolerance: LEEWAY_SECONDS,
        currentDate: new Date(clock()),
        requiredClaims: ['exp', 'iat'],
        maxTokenAge,
      }))
    } catch (err) {
      throw verificationError(err, provisioner)
    }
    // jose checked both are numbers, exp not past and iat neither in the future nor older than maxTokenAge
    const iat = claims.iat as number
    const exp = claims.exp as number
    // a token that lives longer than the provisioner allows is refused outright, not trusted for its first hour
    if (exp - iat > maxTokenAge) {
      throw denial(
        'ERR_TOKEN_INVALID',
        'token_lifetime_too_long',
        `the token lives ${exp - iat} s; provisioner "${provisioner.name}" accepts at most ${maxTokenAge} s (maxTokenAge)`,
        {provisioner: provisioner.name},
      )
    }
    // Not the nonce: an ID token from a refresh grant repeats the original nonce (OIDC Core §12.2),
    // so keying on it would refuse every refreshed sign-in as a replay.
    // a jti that is not 1–256 printable ASCII characters (the IdP's, not ours to refuse) keys on the
    // signed content instead, as a token without one does: the id must be storable as it is
    const id =
      typeof claims.jti === 'string' && USABLE_JTI.test(claims.jti)
        ? `jti:${claims.jti}`
        : `signed:${signedContentHash(parts)}`
    return {
      provisioner,
      claims,
      tokenId: `${provisioner.issuer}#${id}`,
      tokenHash: tokenHash(token),
      // whole seconds (a store keeps integers): rounded up, so the token stays spent at least as long as it is accepted
      expiresAt: Math.ceil(exp) + LEEWAY_SECONDS,
    }
  }
}

/** The one provisioner whose issuer and audience (and client id, when azp is present) the claims name. */
export function routeClaims(provisioners: readonly ProvisionerConfig[], claims: JWTPayload): ProvisionerConfig {
  const byIssuer = provisioners.filter((p) => p.issuer === claims.iss)
  if (byIssuer.length === 0)
    throw denial('ERR_TOKEN_INVALID', 'issuer_unknown', `no provisioner trusts issuer ${JSON.stringify(claims.iss)}`)
  // a string or a list of them; anything else names no provisioner
  const aud: unknown[] = [claims.aud].flat()
  let candidates = byIssuer.filter((p) => aud.includes(p.audience))
  if (candidates.length === 0)
    throw denial(
      'ERR_TOKEN_INVALID',
      'audience_mismatch',
      `the token's audience ${JSON.stringify(claims.aud)} names no provisioner of ${claims.iss}`,
    )
  // OIDC Core 3.1.3.7: a token for several audiences must name its client in azp
  if (aud.length > 1 && typeof claims.azp !== 'string') {
    throw denial(
      'ERR_TOKEN_INVALID',
      'audience_mismatch',
      'the token names several audiences but no authorized party (azp)',
    )
  }
  if (typeof claims.azp === 'string') {
    candidates = candidates.filter((p) => (p.clientId ?? p.audience) === claims.azp)
    if (candidates.length === 0)
      throw denial(
        'ERR_TOKEN_INVALID',
        'audience_mismatch',
        `the token's authorized party ${JSON.stringify(claims.azp)} is not this CA's client`,
      )
  }
  // exactly one: a token two provisioners would take (both audiences named, one azp fitting both) is
  // refused, never routed by the order of ca.yaml to whichever comes first
  if (candidates.length > 1)
    throw denial(
      'ERR_TOKEN_INVALID',
      'audience_mismatch',
      `the token fits provisioners ${candidates.map((p) => JSON.stringify(p.name)).join(' and ')} of ${claims.iss} alike (its audiences and authorized party name both)`,
    )
  return candidates[0]!
}

function verificationError(err: unknown, p: ProvisionerConfig): SshcaError {
  const details = {provisioner: p.name}
  if (err instanceof SshcaError)
    return new SshcaError(err.code, err.message, {cause: err, details: {...details, reason: 'jwks_unavailable'}})
  if (err instanceof joseErrors.JWTExpired)
    return denial('ERR_TOKEN_INVALID', 'token_expired', 'the token has expired', details)
  // iss and aud never fail here: route() chose the provisioner by them. A claim that is missing or not
  // a number (exp, iat) makes the token malformed; a timestamp check that failed on nbf or iat (in the
  // future beyond the leeway) makes it early.
  if (
    err instanceof joseErrors.JWTClaimValidationFailed &&
    err.reason === 'check_failed' &&
    // Stryker disable next-line ConditionalExpression: nbf and iat are the only claims whose check can fail here today; kept for a jose that checks more
    (err.claim === 'nbf' || err.claim === 'iat')
  ) {
    return denial(
      'ERR_TOKEN_INVALID',
      'token_not_yet_valid',
      `the token's "${err.claim}" claim is not acceptable: ${err.message}`,
      details,
    )
  }
  return denial(
    'ERR_TOKEN_INVALID',
    'token_invalid',
    err instanceof joseErrors.JWKSNoMatchingKey
      ? 'the token is signed by a key the issuer does not publish'
      : `the token does not verify: ${(err as Error).message}`,
    details,
  )
}
