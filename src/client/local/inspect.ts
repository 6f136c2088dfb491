/** `sshca inspect`: a certificate in the form `ssh-keygen -L` shows, plus whether its signature verifies. */
import {
  nowSeconds,
  parseCertificate,
  parseCertificateLine,
  verifyCertificate,
  type Certificate,
} from '../../ssh/cert.ts'
import {checkCertificate, type CertProblem} from '../../ssh/checker.ts'
import {formatError} from '../../ssh/wire.ts'
import {certificateView, type CertificateView} from './certificates.ts'

export interface InspectResult {
  certificate: CertificateView
  comment: string
  signature: {valid: boolean; algorithm: string; reason?: string}
  /** What the certificate checker finds wrong with it now: a bad signature, not yet valid, expired. */
  problems: CertProblem[]
}

/**
 * Accepts what people have at hand: a `*-cert.pub` line, the bare base64 wire blob (step's `crt`),
 * or the JSON body of a `POST /ssh/sign` response.
 */
export function readCertificateText(text: string): {cert: Certificate; comment: string} {
  const t = text.trim()
  if (t === '') throw formatError('no certificate in the input (it is empty)')
  if (t.startsWith('{')) {
    let crt: unknown
    try {
      crt = (JSON.parse(t) as {crt?: unknown}).crt
    } catch (err) {
      throw formatError('input looks like JSON but does not parse', err)
    }
    if (typeof crt !== 'string') throw formatError('JSON input has no "crt" field')
    return readCertificateText(crt)
  }
  if (/\s/.test(t)) return parseCertificateLine(t)
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(t)) throw formatError('input is neither a certificate line nor base64')
  return {cert: parseCertificate(Buffer.from(t, 'base64')), comment: ''}
}

export function inspectCertificate(
  text: string,
  clock: () => number = Date.now,
): {result: InspectResult; cert: Certificate} {
  const {cert, comment} = readCertificateText(text)
  const check = verifyCertificate(cert)
  return {
    cert,
    result: {
      certificate: certificateView(cert, nowSeconds(clock)),
      comment,
      signature: {valid: check.valid, algorithm: check.algorithm, ...(check.reason ? {reason: check.reason} : {})},
      problems: checkCertificate(cert, {at: nowSeconds(clock)}),
    },
  }
}
