/**
 * Host enrollment tokens: `ca token --host` mints a one-time JWT (EdDSA, the CA's enrollment key)
 * bound to host names and, with --key, to one host key (RFC 7800 `cnf.kid`); the CA verifies it when
 * a host asks for its certificate. Issued by `sshca:<root fingerprint>`, so no other CA's token fits.
 */
import {createPublicKey, randomUUID, type KeyObject} from 'node:crypto'
import {errors as joseErrors, jwtVerify, SignJWT, type JWTPayload} from 'jose'
import {
  caIssuer,
  ENROLLMENT_AUDIENCE,
  ENROLLMENT_TYP,
  MAX_ENROLLMENT_TTL,
  TOKEN_LEEWAY as LEEWAY,
} from '../../protocol/tokens.ts'
import {MAX_PRINCIPAL_LENGTH, SAFE_VALUE} from '../policy/policy.ts'
import {denial, type DenialError} from '../policy/types.ts'

export interface EnrollmentToken {
  token: string
  jti: string
  principals: string[]
  expiresAt: number
  /** `SHA256:…` of the one host key the token may enrol, or null when any key may use it. */
  boundKey: string | null
}

/** An OpenSSH SHA-256 fingerprint as ssh-keygen -l prints it. */
export const SSH_FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/

/**
 * A one-time host enrollment token. With `keyFingerprint`, the token is bound to that host key: the
 * CA refuses any other key, so a token read in transit enrols nothing else.
 */
export async function mintEnrollmentToken(
  key: KeyObject,
  o: {
    rootFingerprint: string
    hostname: string
    principals?: string[]
    keyFingerprint?: string
    ttlSeconds: number
    now: number
  },
): Promise<EnrollmentToken> {
  const principals = [...new Set([o.hostname, ...(o.principals ?? [])])]
  for (const p of principals) {
    if (!SAFE_VALUE.test(p) || p.length > MAX_PRINCIPAL_LENGTH)
      throw new TypeError(`"${p}" is not a valid host principal`)
  }
  if (o.keyFingerprint !== undefined && !SSH_FINGERPRINT.test(o.keyFingerprint))
    throw new TypeError(`"${o.keyFingerprint}" is not an SSH key fingerprint (SHA256:…)`)
  const ttl = Math.min(o.ttlSeconds, MAX_ENROLLMENT_TTL)
  const jti = randomUUID()
  const token = await new SignJWT({principals, ...(o.keyFingerprint ? {cnf: {kid: o.keyFingerprint}} : {})})
    .setProtectedHeader({alg: 'EdDSA', typ: ENROLLMENT_TYP})
    .setIssuer(caIssuer(o.rootFingerprint))
    .setAudience(ENROLLMENT_AUDIENCE)
    .setSubject(o.hostname)
    .setJti(jti)
    .setIssuedAt(o.now)
    .setNotBefore(o.now - LEEWAY)
    .setExpirationTime(o.now + ttl)
    .sign(key)
  return {token, jti, principals, expiresAt: o.now + ttl, boundKey: o.keyFingerprint ?? null}
}

/** jose's refusal of one of the CA's own tokens, as a typed denial. */
export function tokenError(err: unknown, what: string): DenialError {
  if (err instanceof joseErrors.JWTExpired)
    return denial('ERR_TOKEN_INVALID', 'token_expired', `the ${what} has expired`)
  if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'nbf')
    return denial('ERR_TOKEN_INVALID', 'token_not_yet_valid', `the ${what} is not valid yet`)
  return denial('ERR_TOKEN_INVALID', 'token_invalid', `the ${what} does not verify: ${(err as Error).message}`)
}

export interface VerifiedEnrollment {
  /** The host name it was minted for. */
  subject: string
  jti: string
  principals: string[]
  /** The host key it is bound to, if any. */
  boundKey: string | undefined
  /** Seconds. */
  expiresAt: number
  /** Seconds: when the token was minted (its iat). */
  issuedAt: number
}

/**
 * Verifies an enrollment token against the CA's enrollment key, and that it may enrol `keyFingerprint`
 * (a bound token names one key; a binding that is present but unusable refuses rather than unbinds).
 */
export async function verifyEnrollmentToken(
  token: string,
  o: {enrollmentKey: KeyObject; rootFingerprint: string | readonly string[]; now: number; keyFingerprint: string},
): Promise<VerifiedEnrollment> {
  let claims: JWTPayload
  try {
    ;({payload: claims} = await jwtVerify(token, createPublicKey(o.enrollmentKey), {
      algorithms: ['EdDSA', 'Ed25519'],
      typ: ENROLLMENT_TYP,
      // every published root names this CA (a root rotation keeps tokens minted before it valid)
      issuer: (typeof o.rootFingerprint === 'string' ? [o.rootFingerprint] : o.rootFingerprint).map(caIssuer),
      audience: ENROLLMENT_AUDIENCE,
      clockTolerance: LEEWAY,
      currentDate: new Date(o.now * 1000),
      requiredClaims: ['exp', 'iat', 'jti', 'sub'],
      maxTokenAge: MAX_ENROLLMENT_TTL + LEEWAY,
    }))
  } catch (err) {
    throw tokenError(err, 'enrollment token')
  }
  // a binding of any shape other than {kid: <this key's fingerprint>} refuses: it never unbinds
  const boundKid = (claims.cnf as {kid?: unknown} | null | undefined)?.kid
  if (claims.cnf !== undefined && boundKid !== o.keyFingerprint) {
    throw denial('ERR_POLICY_DENIED', 'key_not_bound', 'the enrollment token is bound to another host key', {
      bound_key: typeof boundKid === 'string' ? boundKid : null,
      subject: claims.sub,
      jti: claims.jti,
    })
  }
  const principals = Array.isArray(claims.principals)
    ? claims.principals.filter((p): p is string => typeof p === 'string')
    : []
  // a certificate without principals is valid for every host name; `ca token --host` always names one
  if (principals.length === 0)
    throw denial(
      'ERR_TOKEN_INVALID',
      'token_invalid',
      'the enrollment token names no host (principals): mint another with sshca ca token --host',
    )
  return {
    subject: claims.sub!,
    jti: claims.jti!,
    principals,
    // Stryker disable next-line ConditionalExpression: a boundKid that is not a string was refused above
    boundKey: typeof boundKid === 'string' ? boundKid : undefined,
    expiresAt: (claims.exp as number) + LEEWAY,
    issuedAt: claims.iat as number,
  }
}
