/**
 * The CA's own token formats, shared by the client and the CA: host enrollment tokens (signed by the
 * CA's enrollment key) and proofs of possession for renewal (signed by the host key, carrying the
 * host certificate in the `sshpop` header, as step's SSHPOP).
 */
import {randomUUID, type KeyObject} from 'node:crypto'
import type {Certificate} from '../ssh/cert.ts'

export const ENROLLMENT_TYP = 'sshca-enroll+jwt'
export const ENROLLMENT_AUDIENCE = 'sshca-host-enrollment'
export const POP_TYP = 'sshca-pop+jwt'
export const POP_AUDIENCE = 'sshca-ssh-renew'
/** Enrollment tokens live minutes, a day at most. */
export const MAX_ENROLLMENT_TTL = 86_400
/** A proof of possession is good for five minutes. */
export const MAX_POP_TTL = 300
export const TOKEN_LEEWAY = 60

/** The issuer of a CA's own tokens: its root fingerprint, so no other CA's token fits. */
export const caIssuer = (rootFingerprint: string): string => `sshca:${rootFingerprint}`
/** A proof of possession names the CA it is for. */
export const popAudience = (rootFingerprint: string): string => `${POP_AUDIENCE}#${rootFingerprint}`

/** JWS algorithms a host key of each SSH type may sign a proof of possession with. */
export const POP_ALGORITHMS: Readonly<Record<string, string[]>> = {
  'ssh-ed25519': ['EdDSA', 'Ed25519'],
  'ecdsa-sha2-nistp256': ['ES256'],
  'ecdsa-sha2-nistp384': ['ES384'],
  'ecdsa-sha2-nistp521': ['ES512'],
  'ssh-rsa': ['RS256', 'RS512', 'PS256'],
}

export async function mintPopToken(hostKey: KeyObject, cert: Certificate, rootFingerprint: string, now: number): Promise<string> {
  const {SignJWT} = await import('jose')
  return new SignJWT({})
    .setProtectedHeader({alg: POP_ALGORITHMS[cert.publicKey.type]![0]!, typ: POP_TYP, sshpop: cert.blob.toString('base64')})
    .setSubject(cert.keyId)
    .setAudience(popAudience(rootFingerprint))
    .setJti(randomUUID())
    .setIssuedAt(now)
    .setNotBefore(now - TOKEN_LEEWAY)
    .setExpirationTime(now + MAX_POP_TTL)
    .sign(hostKey)
}
