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
/** What a proof of possession is for: each has its own audience, so one cannot be used for another. */
export type PopPurpose = 'renew' | 'rekey' | 'revoke'

/** A proof of possession names the CA it is for, and what for (renewal keeps its original audience). */
export const popAudience = (rootFingerprint: string, purpose: PopPurpose = 'renew'): string => `${purpose === 'renew' ? POP_AUDIENCE : `sshca-ssh-${purpose}`}#${rootFingerprint}`

/** JWS algorithms a host key of each SSH type may sign a proof of possession with. */
export const POP_ALGORITHMS: Readonly<Record<string, string[]>> = {
  'ssh-ed25519': ['EdDSA', 'Ed25519'],
  'ecdsa-sha2-nistp256': ['ES256'],
  'ecdsa-sha2-nistp384': ['ES384'],
  'ecdsa-sha2-nistp521': ['ES512'],
  'ssh-rsa': ['RS256', 'RS512', 'PS256'],
}

export async function mintPopToken(hostKey: KeyObject, cert: Certificate, rootFingerprint: string, now: number, purpose: PopPurpose = 'renew'): Promise<string> {
  const {SignJWT} = await import('jose')
  return new SignJWT({})
    .setProtectedHeader({alg: POP_ALGORITHMS[cert.publicKey.type]![0]!, typ: POP_TYP, sshpop: cert.blob.toString('base64')})
    // renewal names the key ID (as before); rekey and revoke name the serial, as step's SSHPOP does
    .setSubject(purpose === 'renew' ? cert.keyId : cert.serial.toString())
    .setAudience(popAudience(rootFingerprint, purpose))
    .setJti(randomUUID())
    .setIssuedAt(now)
    .setNotBefore(now - TOKEN_LEEWAY)
    .setExpirationTime(now + MAX_POP_TTL)
    .sign(hostKey)
}

/**
 * A proof of possession signed by something that signs SSH data without giving out the key: the
 * ssh-agent holding a user's ephemeral key. `sshSign` returns an SSH signature blob over its input;
 * it becomes the JWS signature (EdDSA, ES256/384/512, RS256). Either sshca's form (typ
 * sshca-pop+jwt, an audience naming this CA and the purpose) or step-ca's SSHPOP form (typ JWT,
 * issuer the SSHPOP provisioner, audience the route's URL #sshpop/NAME), both with the serial as subject.
 */
export async function mintPopWith(
  sshSign: (data: Buffer) => Promise<Buffer>,
  cert: Certificate,
  o: {now: number; purpose: Exclude<PopPurpose, 'renew'>} & ({rootFingerprint: string} | {step: {caUrl: string; provisioner: string}}),
): Promise<string> {
  const {jwsSignatureFromSsh} = await import('../ssh/signature.ts')
  const alg = POP_ALGORITHMS[cert.publicKey.type]![0]!
  const step = 'step' in o ? o.step : undefined
  const header = {alg, typ: step ? 'JWT' : POP_TYP, sshpop: cert.blob.toString('base64')}
  const payload = {
    sub: cert.serial.toString(),
    ...(step ? {iss: step.provisioner, aud: `${step.caUrl.replace(/\/+$/, '')}/1.0/ssh/${o.purpose}#sshpop/${step.provisioner}`} : {aud: popAudience((o as {rootFingerprint: string}).rootFingerprint, o.purpose)}),
    jti: randomUUID(),
    iat: o.now,
    nbf: o.now - TOKEN_LEEWAY,
    exp: o.now + MAX_POP_TTL,
  }
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')
  const input = `${b64(header)}.${b64(payload)}`
  const sig = jwsSignatureFromSsh(await sshSign(Buffer.from(input)), cert.publicKey)
  return `${input}.${sig.toString('base64url')}`
}
