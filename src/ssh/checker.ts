/**
 * One certificate checker (x/crypto/ssh's CertChecker): what a certificate must be for a caller to
 * rely on it — its type, a signer among the CA keys the caller trusts (compared before any signature
 * is verified, so a certificate signed by a key the sender chose costs nothing), a valid signature,
 * the key it certifies, its validity at a time, a principal. Used by login (what the CA returned),
 * host enrollment and renewal, the CA's renewal check, and inspect.
 */
import {verifyCertificate, type Certificate, type CertType} from './cert.ts'
import type {PublicKey} from './keys.ts'

export interface CertExpectations {
  type?: CertType
  /** The signer must be one of these; checked before the signature. */
  caKeys?: readonly PublicKey[]
  /** The certificate must certify this key. */
  publicKey?: PublicKey
  /** Seconds since the epoch: valid at this moment. */
  at?: bigint
  /** The certificate must name this principal. */
  principal?: string
}

export type CertProblemCode =
  'wrong_type' | 'unknown_ca' | 'bad_signature' | 'other_key' | 'not_yet_valid' | 'expired' | 'principal_missing'

export interface CertProblem {
  code: CertProblemCode
  message: string
}

/**
 * Every problem, in the order checked; empty when the certificate meets every expectation given.
 * When the signer is not trusted, the signature is not verified at all (and not reported).
 */
export function checkCertificate(cert: Certificate, x: CertExpectations): CertProblem[] {
  const problems: CertProblem[] = []
  if (x.type !== undefined && cert.type !== x.type)
    problems.push({code: 'wrong_type', message: `it is not a ${x.type} certificate`})
  const trusted = x.caKeys === undefined || x.caKeys.some((k) => k.equals(cert.signatureKey))
  if (!trusted) problems.push({code: 'unknown_ca', message: 'it is not signed by a CA key trusted here'})
  else if (!verifyCertificate(cert).valid)
    problems.push({code: 'bad_signature', message: 'its signature does not verify'})
  if (x.publicKey !== undefined && !cert.publicKey.equals(x.publicKey))
    problems.push({code: 'other_key', message: 'it certifies another key'})
  if (x.at !== undefined) {
    if (x.at < cert.validAfter) problems.push({code: 'not_yet_valid', message: 'it is not valid yet'})
    else if (x.at >= cert.validBefore) problems.push({code: 'expired', message: 'it has expired'})
  }
  if (x.principal !== undefined && !cert.principals.includes(x.principal))
    problems.push({code: 'principal_missing', message: `it does not name ${JSON.stringify(x.principal)}`})
  return problems
}
