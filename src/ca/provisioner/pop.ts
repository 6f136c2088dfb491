/**
 * Proofs of possession for renewal (as step's SSHPOP): a short JWT signed by the certified host key,
 * carrying the current certificate in its `sshpop` header. The certificate is read first (unverified)
 * so the caller can check it is one of ours before any signature made with its key is verified.
 */
import {decodeProtectedHeader, jwtVerify, type JWTPayload} from 'jose'
import {MAX_POP_TTL, POP_ALGORITHMS, POP_TYP, popAudience, TOKEN_LEEWAY as LEEWAY} from '../../protocol/tokens.ts'
import {parseCertificate, type Certificate} from '../../ssh/cert.ts'
import {denial} from '../policy/types.ts'
import {tokenError} from './enrollment.ts'

/** The certificate a renewal token carries, before anything is verified. */
export function popCertificate(token: string): Certificate {
  let header: ReturnType<typeof decodeProtectedHeader>
  try {
    header = decodeProtectedHeader(token)
  } catch {
    throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the renewal token is not a JWT')
  }
  if (header.typ !== POP_TYP || typeof header.sshpop !== 'string') throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the renewal token carries no certificate')
  try {
    return parseCertificate(Buffer.from(header.sshpop, 'base64'))
  } catch {
    throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the certificate in the renewal token is malformed')
  }
}

/** The token verified with the certified key: this CA's audience, five minutes at most. */
export async function verifyPop(token: string, cert: Certificate, o: {rootFingerprint: string; now: number}): Promise<{jti: string; expiresAt: number; issuedAt: number}> {
  let claims: JWTPayload
  try {
    ;({payload: claims} = await jwtVerify(token, cert.publicKey.keyObject, {
      algorithms: POP_ALGORITHMS[cert.publicKey.type] ?? [],
      typ: POP_TYP,
      audience: popAudience(o.rootFingerprint),
      clockTolerance: LEEWAY,
      currentDate: new Date(o.now * 1000),
      requiredClaims: ['exp', 'iat', 'jti'],
      maxTokenAge: MAX_POP_TTL + LEEWAY,
    }))
  } catch (err) {
    throw denial('ERR_TOKEN_INVALID', 'proof_invalid', `${tokenError(err, 'renewal token').message} (it must be signed by the certified host key)`)
  }
  if ((claims.exp as number) - (claims.iat as number) > MAX_POP_TTL) throw denial('ERR_TOKEN_INVALID', 'proof_invalid', 'the renewal token lives longer than 5 minutes')
  return {jti: String(claims.jti), expiresAt: (claims.exp as number) + LEEWAY, issuedAt: claims.iat as number}
}
