/**
 * Why the CA probably refused a token, said by the client: the CA tells an unauthenticated caller
 * nothing beyond "rejected", but the client holds the token and may read its claims (no signature
 * check needed to explain). The result names the likely cause — expired at T, not a JWT, for another
 * audience, issued by another CA, not for this host — with the next step that fits the flow.
 */
import {SshcaError} from '../../errors.ts'

export type TokenFlow = 'interactive' | 'identity-token' | 'github-actions' | 'host-enrollment' | 'host-renewal'

export interface TokenExpectations {
  /** Seconds since the epoch. */
  now: number
  /** Audiences the CA's provisioners accept (when the client knows them). */
  audiences?: readonly string[]
  /** Host enrollment: the token's issuer must be this CA's (`sshca:<root fingerprint>`). */
  issuer?: string
  /** Host enrollment: the names the host asked for. */
  hostnames?: readonly string[]
  /** Host enrollment: the fingerprint of the key being enrolled (a bound token names one). */
  keyFingerprint?: string
  /** The longest token lifetime the CA accepts (its default, maxTokenAge). */
  maxLifetime?: number
}

const LEEWAY = 60

const when = (s: number): string => new Date(s * 1000).toISOString().replace('.000Z', 'Z')

function ago(seconds: number): string {
  const s = Math.abs(seconds)
  const text =
    s < 120
      ? `${s} s`
      : s < 7200
        ? `${Math.round(s / 60)} min`
        : s < 172_800
          ? `${Math.round(s / 3600)} h`
          : `${Math.round(s / 86_400)} days`
  return seconds >= 0 ? `${text} ago` : `in ${text}`
}

/** The claims of a compact JWS, unverified; undefined when it is not one. */
export function peekClaims(token: string): Record<string, unknown> | undefined {
  const parts = token.trim().split('.')
  if (parts.length !== 3) return undefined
  try {
    const payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown
    return typeof payload === 'object' && payload !== null && !Array.isArray(payload)
      ? (payload as Record<string, unknown>)
      : undefined
  } catch {
    return undefined
  }
}

/** The likely reason a token was refused, read from its claims; undefined when nothing stands out. */
export function diagnoseToken(token: string, x: TokenExpectations): string | undefined {
  const c = peekClaims(token)
  if (!c)
    return 'the token is not a JWT (three base64url parts separated by dots): was the right file or variable passed?'
  const num = (k: string) => (typeof c[k] === 'number' ? (c[k] as number) : undefined)
  const exp = num('exp')
  const iat = num('iat')
  const nbf = num('nbf')
  if (exp === undefined) return 'the token has no expiry ("exp"), and the CA accepts none without one'
  if (exp <= x.now - LEEWAY) return `the token expired at ${when(exp)} (${ago(x.now - exp)})`
  if (nbf !== undefined && nbf > x.now + LEEWAY)
    return `the token is not valid before ${when(nbf)} (${ago(x.now - nbf)}): is this machine's clock right?`
  if (iat !== undefined && iat > x.now + LEEWAY)
    return `the token was issued at ${when(iat)}, in the future: is this machine's clock right?`
  if (x.issuer !== undefined && c.iss !== x.issuer)
    return `the token was issued by ${JSON.stringify(c.iss)}, not by this CA (${x.issuer}): it is another CA's token`
  if (x.maxLifetime !== undefined && iat !== undefined && exp - iat > x.maxLifetime) {
    return `the token lives ${exp - iat} s (issued ${when(iat)}, expires ${when(exp)}); the CA accepts tokens that live at most ${x.maxLifetime} s`
  }
  if (x.maxLifetime !== undefined && iat !== undefined && x.now - iat > x.maxLifetime + LEEWAY)
    return `the token was issued at ${when(iat)} (${ago(x.now - iat)}), longer ago than the CA accepts`
  const aud =
    typeof c.aud === 'string'
      ? [c.aud]
      : Array.isArray(c.aud)
        ? c.aud.filter((a): a is string => typeof a === 'string')
        : []
  if (x.audiences && x.audiences.length > 0 && !aud.some((a) => x.audiences!.includes(a))) {
    return `the token is for audience ${aud.length ? aud.map((a) => JSON.stringify(a)).join(', ') : '(none)'}, but the CA's provisioners want ${x.audiences.map((a) => JSON.stringify(a)).join(' or ')}`
  }
  if (aud.length > 1 && typeof c.azp !== 'string')
    return `the token names several audiences (${aud.join(', ')}) but no authorized party ("azp"), which the CA requires then`
  const cnf = c.cnf as {kid?: unknown} | undefined
  if (x.keyFingerprint !== undefined && typeof cnf?.kid === 'string' && cnf.kid !== x.keyFingerprint) {
    return `the token is bound to the host key ${cnf.kid}, not to this one (${x.keyFingerprint})`
  }
  if (x.hostnames) {
    const bound = Array.isArray(c.principals) ? c.principals.filter((p): p is string => typeof p === 'string') : []
    const missing = x.hostnames.filter((h) => !bound.includes(h))
    if (missing.length)
      return `the token was issued for ${bound.length ? bound.join(', ') : 'no host'}, not for ${missing.join(', ')}`
  }
  return undefined
}

const NEXT: Record<TokenFlow, string> = {
  interactive: 'sign in again: sshca login --force',
  'identity-token': 'get a fresh token from the issuer (each token gets one certificate) and run the command again',
  'github-actions':
    'each job gets fresh tokens: re-run the job; check that the workflow has `permissions: id-token: write` and the audience the CA expects (--audience)',
  'host-enrollment':
    'on the CA box, mint a new token for this host: sshca ca token --host NAME --key KEY.pub, then run sshca certificate again',
  'host-renewal':
    "check this host's clock (NTP); if it persists, enrol the host again with a new token (sshca ca token --host NAME)",
}

/**
 * Turns the CA's 401 (ERR_CA_UNAUTHORIZED) into ERR_TOKEN_REPLAYED or ERR_TOKEN_INVALID with the
 * likely cause and the next step for this flow; any other error passes unchanged.
 */
export function explainTokenRefusal(err: unknown, token: string, flow: TokenFlow, x: TokenExpectations): unknown {
  // an enrollment token for other names or another key is a policy denial (403); say which
  if (err instanceof SshcaError && err.code === 'ERR_CA_DENIED' && flow === 'host-enrollment') {
    const cause = diagnoseToken(token, x)
    return cause
      ? new SshcaError('ERR_CA_DENIED', `the CA refused the enrollment: ${cause}`, {
          cause: err,
          hint: NEXT['host-enrollment'],
          ...(err.details ? {details: err.details} : {}),
        })
      : err
  }
  if (!(err instanceof SshcaError) || err.code !== 'ERR_CA_UNAUTHORIZED') return err
  // what the CA said (sshca's CA and step-ca alike), and sshca's request id when it sent one
  const caMessage = typeof err.details?.caMessage === 'string' ? err.details.caMessage : ''
  const rid = typeof err.details?.requestId === 'string' ? ` (request id ${err.details.requestId})` : ''
  if (/already used|token already used/i.test(caMessage)) {
    const next =
      flow === 'host-enrollment' ? NEXT['host-enrollment'] : flow === 'interactive' ? NEXT.interactive : NEXT[flow]
    return new SshcaError('ERR_TOKEN_REPLAYED', `the CA refused the token: ${caMessage}${rid}`, {
      cause: err,
      hint: next,
      ...(err.details ? {details: err.details} : {}),
    })
  }
  const cause = diagnoseToken(token, x)
  const said = caMessage && !caMessage.startsWith('the token was rejected:') ? `; the CA said: ${caMessage}` : ''
  return new SshcaError(
    'ERR_TOKEN_INVALID',
    `the CA refused the token: ${cause ?? 'it does not verify for this CA (wrong issuer or signing key, or a claim it requires is missing)'}${said}${rid}`,
    {
      cause: err,
      hint: NEXT[flow],
      ...(err.details ? {details: err.details} : {}),
    },
  )
}
