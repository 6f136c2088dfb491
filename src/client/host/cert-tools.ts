/**
 * step's `ssh needs-renewal` and `ssh fingerprint`, on files: no CA, no agent.
 */
import {createHash} from 'node:crypto'
import {SshcaError} from '../../errors.ts'
import {FOREVER, isCertificateType, nowSeconds, parseCertificate, parseCertificateLine} from '../../ssh/cert.ts'
import {PublicKey, splitKeyLine} from '../../ssh/keys.ts'
import {parseDuration} from '../../util/duration.ts'
import {RENEW_WHEN_LEFT} from './host.ts'
import {isoFromSeconds} from '../../util/iso-time.ts'
import {readTextFile} from '../../util/fs.ts'

async function readText(file: string, what: string, input?: () => Promise<string>, limit?: number): Promise<string> {
  return file === '-' && input ? input() : readTextFile(file, what, limit === undefined ? {} : {limit})
}

/** A whole authorized_keys may be fingerprinted: as much as `host audit` reads of one. */
export const FINGERPRINT_LIMIT = 16 << 20

export interface NeedsRenewalResult {
  file: string
  needsRenewal: boolean
  serial: string
  keyId: string
  validBefore: string | null
  secondsLeft: number | null
  /** How much of its validity has passed, in percent (0 when it has not started). */
  percentUsed: number
  /** What "needs renewal" meant: a share used, or a time left. */
  threshold: {percentUsed: number} | {secondsLeft: number}
}

/**
 * Whether the certificate in `file` needs renewing: by default when a third or less of its validity
 * is left (what `sshca renew` and its timer use, and step's 66%); `--expires-in 75%` when that share
 * has passed, `--expires-in 2h` when it ends within that time. An expired certificate always does;
 * one valid forever never does.
 */
export async function needsRenewal(
  file: string,
  o: {expiresIn?: string; clock?: () => number} = {},
): Promise<NeedsRenewalResult> {
  let threshold: NeedsRenewalResult['threshold'] = {percentUsed: Math.round((1 - RENEW_WHEN_LEFT) * 10000) / 100}
  if (o.expiresIn !== undefined) {
    const m = /^(\d+(?:\.\d+)?)%$/.exec(o.expiresIn.trim())
    if (m) {
      const p = Number(m[1])
      if (p > 100) throw new SshcaError('ERR_USAGE', `--expires-in ${o.expiresIn}: a share is 0% to 100%`)
      threshold = {percentUsed: p}
    } else {
      const s = parseDuration(o.expiresIn)
      if (s === undefined)
        throw new SshcaError(
          'ERR_USAGE',
          `--expires-in "${o.expiresIn}" is neither a share (75%) nor a duration (90s, 15m, 8h, 30d, 1h30m)`,
        )
      threshold = {secondsLeft: s}
    }
  }
  const {cert} = parseCertificateLine(
    (await readText(file, 'certificate')).split('\n').find((l) => l.trim() && !l.startsWith('#')) ?? '',
  )
  const now = nowSeconds(o.clock)
  const forever = cert.validBefore === FOREVER
  const left = forever ? null : Number(cert.validBefore - now)
  const total = forever ? null : Number(cert.validBefore - cert.validAfter)
  const used =
    left === null || total === null || total <= 0 ? 0 : Math.min(100, Math.max(0, ((total - left) / total) * 100))
  const byDefault =
    o.expiresIn === undefined && total !== null && left !== null ? left <= total * RENEW_WHEN_LEFT : undefined
  const needs =
    left === null
      ? false
      : left <= 0
        ? true
        : byDefault !== undefined
          ? byDefault
          : 'percentUsed' in threshold
            ? used >= threshold.percentUsed
            : left <= threshold.secondsLeft
  return {
    file,
    needsRenewal: needs,
    serial: cert.serial.toString(),
    keyId: cert.keyId,
    validBefore: forever ? null : isoFromSeconds(cert.validBefore),
    secondsLeft: left,
    percentUsed: Math.round(used * 100) / 100,
    threshold,
  }
}

export const FINGERPRINT_FORMATS = ['base64-raw', 'base64', 'base64-url', 'base64-raw-url', 'hex'] as const
export type FingerprintFormat = (typeof FINGERPRINT_FORMATS)[number]

export interface FingerprintLine {
  /** `256 SHA256:… comment (ED25519-CERT)`, as step and ssh-keygen -l print it. */
  line: string
  fingerprint: string
  bits: number
  type: string
  certificate: boolean
  comment: string
}

const LABEL: Record<string, string> = {
  'ssh-ed25519': 'ED25519',
  'ssh-rsa': 'RSA',
  'ecdsa-sha2-nistp256': 'ECDSA',
  'ecdsa-sha2-nistp384': 'ECDSA',
  'ecdsa-sha2-nistp521': 'ECDSA',
}

function encode(digest: Buffer, f: FingerprintFormat): string {
  switch (f) {
    case 'hex':
      return digest.toString('hex')
    case 'base64':
      return digest.toString('base64')
    case 'base64-raw':
      return digest.toString('base64').replace(/=+$/, '')
    case 'base64-url':
      return digest.toString('base64url').padEnd(Math.ceil(digest.length / 3) * 4, '=')
    case 'base64-raw-url':
      return digest.toString('base64url')
  }
}

/**
 * The SHA-256 fingerprint of every key or certificate line in `file` (`-`: standard input). A
 * certificate's is its public key's, as ssh-keygen -l prints; `certificate` fingerprints the whole
 * certificate instead (and refuses a plain key).
 */
export async function fingerprintFile(
  file: string,
  o: {format?: FingerprintFormat; certificate?: boolean; input?: () => Promise<string>} = {},
): Promise<{file: string; format: FingerprintFormat; keys: FingerprintLine[]}> {
  const format = o.format ?? 'base64-raw'
  const text = await readText(file, 'key or certificate', o.input, FINGERPRINT_LIMIT)
  const keys: FingerprintLine[] = []
  for (const raw of text.split('\n')) {
    const l = raw.trim()
    if (!l || l.startsWith('#')) continue
    const {type, blob, comment} = splitKeyLine(l)
    const isCert = isCertificateType(type)
    if (o.certificate && !isCert)
      throw new SshcaError(
        'ERR_INPUT',
        `${file} holds a public key (${type}), not a certificate: leave out --certificate`,
      )
    const key = isCert ? parseCertificate(blob).publicKey : PublicKey.fromBlob(blob)
    const digest = createHash('sha256')
      .update(isCert && o.certificate ? blob : key.blob)
      .digest()
    const fingerprint = `SHA256:${encode(digest, format)}`
    const label = `${LABEL[key.type] ?? key.type}${isCert ? '-CERT' : ''}`
    keys.push({
      line: `${key.bits} ${fingerprint} ${comment || 'no comment'} (${label})`,
      fingerprint,
      bits: key.bits,
      type,
      certificate: isCert,
      comment,
    })
  }
  if (keys.length === 0) throw new SshcaError('ERR_SSH_FORMAT', `${file} holds no public key or certificate`)
  return {file, format, keys}
}
