/**
 * SSHPOP: proofs of possession in step's shape (smallstep authority/provisioner/sshpop.go), for
 * /ssh/renew, /ssh/rekey and /ssh/revoke. A short JWT signed by the certified key, carrying the
 * certificate in its `sshpop` header (see src/protocol/tokens.ts for the claims). The certificate is
 * read first, unverified, so the caller can check it is one of ours before any signature made with
 * its key is verified.
 */
import {decodeProtectedHeader, jwtVerify, type JWTPayload} from 'jose'
import {MAX_POP_TTL, POP_ALGORITHMS, TOKEN_LEEWAY as LEEWAY, type SshpopAction} from '../../protocol/tokens.ts'
import {parseCertificate, type Certificate} from '../../ssh/cert.ts'
import {weakKeyProblem} from '../../ssh/weak-keys.ts'
import {denial} from '../policy/types.ts'
import {SSH_FINGERPRINT, tokenError} from './enrollment.ts'
import {USABLE_JTI} from './oidc.ts'

/** The certificate an SSHPOP token carries, before anything is verified. */
export function popCertificate(token: string): Certificate {
  let header: ReturnType<typeof decodeProtectedHeader>
  try {
    header = decodeProtectedHeader(token)
  } catch {
    throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the SSHPOP token is not a JWT')
  }
  // Stryker disable next-line ConditionalExpression: a non-string fails the base64 test or Buffer.from inside the try below
  if (typeof header.sshpop !== 'string')
    throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the SSHPOP token carries no certificate (no sshpop header)')
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(header.sshpop))
    throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the sshpop header is not base64')
  try {
    return parseCertificate(Buffer.from(header.sshpop, 'base64'))
  } catch {
    throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the certificate in the SSHPOP token is malformed')
  }
}

/**
 * The audiences this CA answers to for an action, as step-ca derives them from its dnsNames:
 * `https://<name>/1.0/ssh/<action>` and `https://<name>/ssh/<action>`, each with `#sshpop/<provisioner>`.
 * The port is ignored when comparing (step-ca's stripPort), since a balancer may change it.
 */
export function sshpopAudiences(dnsNames: readonly string[], action: SshpopAction, provisioner: string): string[] {
  return dnsNames.flatMap((n) => {
    const host = n.includes(':') && !n.startsWith('[') ? `[${n}]` : n
    return [
      `https://${host}/1.0/ssh/${action}#sshpop/${provisioner}`,
      `https://${host}/ssh/${action}#sshpop/${provisioner}`,
    ]
  })
}

/** An audience without its port. Only the port is ignored: http://, user info or a query keep it from matching. */
function withoutPort(aud: string): string | undefined {
  if (!URL.canParse(aud)) return undefined
  const u = new URL(aud)
  u.port = ''
  return u.toString()
}

export interface PopCheck {
  action: SshpopAction
  /** The SSHPOP provisioner's name: the token's `iss`. */
  provisioner: string
  dnsNames: readonly string[]
  /** Every published root (a root rotation keeps tokens that name the old one valid). */
  rootFingerprint: string | readonly string[]
  /** Seconds. */
  now: number
}

/**
 * The token verified with the certified key: issued by the SSHPOP provisioner, for this CA and this
 * action, about this certificate (`sub` = its serial), five minutes of life at most.
 */
export async function verifyPop(
  token: string,
  cert: Certificate,
  o: PopCheck,
): Promise<{jti: string; expiresAt: number; issuedAt: number; boundKey?: string}> {
  // a proof anyone can make proves nothing: for a key of small order node:crypto on OpenSSL 3.0
  // verifies forged signatures (3.5 refuses them). A certificate issued for such a key before the CA
  // refused them (checkSubjectKey) must not renew, rekey or revoke on anyone's say
  const weak = weakKeyProblem(cert.publicKey)
  if (weak !== undefined)
    throw denial(
      'ERR_POLICY_DENIED',
      'key_unsafe',
      `the certified key proves nothing: ${weak}; get a certificate for a new key (enrol the host again, or sign in again)`,
    )
  let claims: JWTPayload
  try {
    ;({payload: claims} = await jwtVerify(token, cert.publicKey.keyObject, {
      // Stryker disable next-line ArrayDeclaration: every key type a certificate can carry has algorithms; jose refuses any other name too
      algorithms: POP_ALGORITHMS[cert.publicKey.type] ?? [],
      issuer: o.provisioner,
      clockTolerance: LEEWAY,
      currentDate: new Date(o.now * 1000),
      requiredClaims: ['exp', 'iat', 'jti', 'sub', 'aud'],
      maxTokenAge: MAX_POP_TTL + LEEWAY,
    }))
  } catch (err) {
    throw denial(
      'ERR_TOKEN_INVALID',
      'proof_invalid',
      `${tokenError(err, 'SSHPOP token').message} (it must be signed by the certified key)`,
    )
  }
  const want = new Set(sshpopAudiences(o.dnsNames, o.action, o.provisioner).map(withoutPort))
  // a string or a list of them (requiredClaims saw one); anything else never parses as our URL
  const auds = [claims.aud].flat().map((a) => withoutPort(String(a)))
  if (!auds.some((a) => want.has(a))) {
    throw denial(
      'ERR_TOKEN_INVALID',
      'proof_invalid',
      `the SSHPOP token is for audience ${JSON.stringify(claims.aud)}, not this CA's /ssh/${o.action}`,
    )
  }
  if (claims.sub !== cert.serial.toString())
    throw denial(
      'ERR_TOKEN_INVALID',
      'proof_invalid',
      "the SSHPOP token's subject must be the serial of the certificate it carries",
    )
  const roots: readonly string[] = typeof o.rootFingerprint === 'string' ? [o.rootFingerprint] : o.rootFingerprint
  if (claims.sha !== undefined && (typeof claims.sha !== 'string' || !roots.includes(claims.sha.toLowerCase()))) {
    throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the SSHPOP token names another root (sha)')
  }
  if ((claims.exp as number) - (claims.iat as number) > MAX_POP_TTL)
    throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the SSHPOP token lives longer than 5 minutes')
  // printable ASCII: it becomes the spent token's id in the store (PostgreSQL refuses a NUL in text)
  if (typeof claims.jti !== 'string' || !USABLE_JTI.test(claims.jti))
    throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the SSHPOP token has no usable jti')
  // a rekey token may name the new key (`cnf: {kid: SHA256:…}`, as sshca's client writes it): then only
  // that key is rekeyed to, so a token stolen in flight buys no certificate for the thief's key; a
  // binding of any other shape refuses (it never unbinds). step's tokens carry none.
  const boundKid = (claims.cnf as {kid?: unknown} | null | undefined)?.kid
  if (claims.cnf !== undefined && (typeof boundKid !== 'string' || !SSH_FINGERPRINT.test(boundKid)))
    throw denial(
      'ERR_TOKEN_INVALID',
      'proof_invalid',
      'the SSHPOP token names a new key (cnf) that is no key fingerprint',
    )
  return {
    jti: claims.jti,
    expiresAt: (claims.exp as number) + LEEWAY,
    issuedAt: claims.iat as number,
    ...(typeof boundKid === 'string' ? {boundKey: boundKid} : {}),
  }
}
