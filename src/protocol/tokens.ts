/**
 * The CA's own token formats, shared by the client and the CA: host enrollment tokens (signed by the
 * CA's enrollment key) and SSHPOP proofs of possession in step's exact shape (smallstep's
 * authority/provisioner/sshpop.go and the step CLI's token generator), so that `step ssh
 * renew|rekey|revoke` work against sshca's CA and `sshca renew` against step-ca:
 *
 *   header  {alg, typ: "JWT", sshpop: base64(certificate wire blob)}   signed by the certified key
 *   claims  iss = the SSHPOP provisioner's name            sub = the certificate's serial (decimal)
 *           aud = https://<ca host>/1.0/ssh/<renew|rekey|revoke>#sshpop/<provisioner name>
 *           jti, iat, nbf, exp (5 minutes), sha = the root's SHA-256 (step adds it; checked if present)
 */
import {randomBytes, type KeyObject} from 'node:crypto'
import type {Certificate} from '../ssh/cert.ts'

export const ENROLLMENT_TYP = 'sshca-enroll+jwt'
export const ENROLLMENT_AUDIENCE = 'sshca-host-enrollment'
/** The name sshca's CA gives its SSHPOP provisioner (as `step ca init --ssh` does). */
export const SSHPOP_PROVISIONER = 'sshpop'
export type SshpopAction = 'renew' | 'rekey' | 'revoke'
/** Enrollment tokens live minutes, a day at most. */
export const MAX_ENROLLMENT_TTL = 86_400
/** A proof of possession is good for five minutes. */
export const MAX_POP_TTL = 300
export const TOKEN_LEEWAY = 60

/** The issuer of a CA's own tokens: its root fingerprint, so no other CA's token fits. */
export const caIssuer = (rootFingerprint: string): string => `sshca:${rootFingerprint}`
/**
 * step's audience for an SSHPOP token: the CA URL's origin (its path replaced, as the step CLI's
 * url.ResolveReference does), `/1.0/ssh/<action>`, and the provisioner as the fragment.
 */
export function sshpopAudience(caUrl: string, action: SshpopAction, provisioner: string): string {
  const u = new URL(`/1.0/ssh/${action}`, caUrl)
  u.protocol = 'https:'
  u.hash = `sshpop/${provisioner}`
  return u.toString()
}

/** JWS algorithms a host key of each SSH type may sign a proof of possession with. */
export const POP_ALGORITHMS: Readonly<Record<string, string[]>> = {
  'ssh-ed25519': ['EdDSA', 'Ed25519'],
  'ecdsa-sha2-nistp256': ['ES256'],
  'ecdsa-sha2-nistp384': ['ES384'],
  'ecdsa-sha2-nistp521': ['ES512'],
  'ssh-rsa': ['RS256', 'RS512', 'PS256'],
}

export interface SshpopOptions {
  caUrl: string
  action: SshpopAction
  /** The CA's SSHPOP provisioner (its /provisioners entry of type SSHPOP). */
  provisioner: string
  rootFingerprint: string
  /** Seconds. */
  now: number
  /**
   * A rekey's new key (`SHA256:…`), bound into the token (`cnf.kid`): the CA then rekeys to that key
   * only, so the token is worth nothing to whoever takes it in flight. step's tokens carry none.
   */
  newKey?: string
}

/** An SSHPOP token for `cert`, signed by its key: proof that the caller holds the certified key. */
export async function mintSshpopToken(key: KeyObject, cert: Certificate, o: SshpopOptions): Promise<string> {
  const {SignJWT} = await import('jose')
  const alg = POP_ALGORITHMS[cert.publicKey.type]?.[0]
  if (!alg) throw new TypeError(`no JWS algorithm for ${cert.publicKey.type} keys`)
  return new SignJWT({sha: o.rootFingerprint, ...(o.newKey ? {cnf: {kid: o.newKey}} : {})})
    .setProtectedHeader({alg, typ: 'JWT', sshpop: cert.blob.toString('base64')})
    .setIssuer(o.provisioner)
    .setSubject(cert.serial.toString())
    .setAudience(sshpopAudience(o.caUrl, o.action, o.provisioner))
    .setJti(randomBytes(32).toString('hex'))
    .setIssuedAt(o.now)
    .setNotBefore(o.now)
    .setExpirationTime(o.now + MAX_POP_TTL)
    .sign(key)
}

/**
 * The same SSHPOP token, signed by something that signs SSH data without giving out the key: the
 * ssh-agent holding a user's ephemeral key. `sshSign` returns an SSH signature blob over its input
 * (RSA keys must be asked for rsa-sha2-256); it becomes the JWS signature (EdDSA, ES256/384/512, RS256).
 */
export async function mintSshpopTokenWith(
  sshSign: (data: Buffer) => Promise<Buffer>,
  cert: Certificate,
  o: SshpopOptions,
): Promise<string> {
  const {jwsSignatureFromSsh} = await import('../ssh/signature.ts')
  const alg = POP_ALGORITHMS[cert.publicKey.type]?.[0]
  if (!alg) throw new TypeError(`no JWS algorithm for ${cert.publicKey.type} keys`)
  const header = {alg, typ: 'JWT', sshpop: cert.blob.toString('base64')}
  const claims = {
    sha: o.rootFingerprint,
    iss: o.provisioner,
    sub: cert.serial.toString(),
    aud: sshpopAudience(o.caUrl, o.action, o.provisioner),
    jti: randomBytes(32).toString('hex'),
    iat: o.now,
    nbf: o.now,
    exp: o.now + MAX_POP_TTL,
    ...(o.newKey ? {cnf: {kid: o.newKey}} : {}),
  }
  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')
  const input = `${b64(header)}.${b64(claims)}`
  const sig = jwsSignatureFromSsh(await sshSign(Buffer.from(input)), cert.publicKey)
  return `${input}.${sig.toString('base64url')}`
}
