/**
 * The JSON-ready view of a certificate that `list`, `inspect` and the CA's responses share:
 * bigints become strings, open validity ends become null, unknown option data becomes hex.
 */
import {FOREVER, validityAt, type Certificate, type CertOptions, type ValidityState} from '../../ssh/cert.ts'
import {isoFromSeconds} from '../../util/iso-time.ts'

export type OptionView = string | true | {unknown: string}

export interface CertificateView {
  certType: 'user' | 'host'
  keyType: string
  keyId: string
  serial: string
  principals: string[]
  /** ISO 8601, or null for "always". */
  validAfter: string | null
  /** ISO 8601, or null for "forever". */
  validBefore: string | null
  /** Seconds until expiry from the given clock; null when it never expires. */
  secondsLeft: number | null
  state: ValidityState
  publicKey: {type: string; fingerprint: string}
  signingCa: {type: string; fingerprint: string; algorithm: string}
  criticalOptions: Record<string, OptionView>
  extensions: Record<string, OptionView>
}

function optionsView(options: CertOptions): Record<string, OptionView> {
  const out: Record<string, OptionView> = {}
  for (const [name, v] of Object.entries(options)) out[name] = Buffer.isBuffer(v) ? {unknown: v.toString('hex')} : v
  return out
}

export function certificateView(cert: Certificate, nowSeconds: bigint): CertificateView {
  return {
    certType: cert.type,
    keyType: cert.keyType,
    keyId: cert.keyId,
    serial: cert.serial.toString(),
    principals: [...cert.principals],
    validAfter: cert.validAfter === 0n ? null : isoFromSeconds(cert.validAfter),
    validBefore: cert.validBefore === FOREVER ? null : isoFromSeconds(cert.validBefore),
    secondsLeft: cert.validBefore === FOREVER ? null : Number(cert.validBefore - nowSeconds),
    state: validityAt(cert, nowSeconds),
    // getters: JSON.stringify and every reader see the fingerprint; `sshca list`'s table never asks, so
    // never loads node:crypto (src/util/node-crypto.ts)
    publicKey: {
      type: cert.publicKey.type,
      get fingerprint() {
        return cert.publicKey.fingerprint()
      },
    },
    signingCa: {
      type: cert.signatureKey.type,
      get fingerprint() {
        return cert.signatureKey.fingerprint()
      },
      algorithm: cert.signatureAlgorithm,
    },
    criticalOptions: optionsView(cert.criticalOptions),
    extensions: optionsView(cert.extensions),
  }
}
