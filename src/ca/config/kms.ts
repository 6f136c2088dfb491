/**
 * Where the CA makes and keeps its SSH CA keys (`keys.kms` in ca.yaml, `ca init --kms`):
 *   file                 sealed files in secrets/ (scrypt + AES-256-GCM under the CA password)
 *   pkcs11:<RFC 7512>    a PKCS#11 token (an HSM, SoftHSM): the private keys are generated inside
 *                        it, never extractable, and the CA only ever asks it to sign.
 * A PKCS#11 URI names the token and where the module and PIN are:
 *   pkcs11:token=sshca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/sshca/hsm-pin
 * `pin-value` is refused: a PIN in ca.yaml or on a command line is a secret in the wrong place.
 */

export interface Pkcs11Kms {
  type: 'pkcs11'
  /** The token's label (CKA_LABEL of the token, `token=`). */
  token: string
  /** The PKCS#11 module (shared library) to load. */
  module: string
  /** A file whose first line is the user PIN. */
  pinFile: string
  /** The URI as written. */
  uri: string
  /** How long one of the token's operations may take (keys.timeout); DEFAULT_KEYS_TIMEOUT_SECONDS when unset. */
  timeoutSeconds?: number
}

/** How long the CA waits for a token's answer to one operation when ca.yaml does not say (keys.timeout). */
export const DEFAULT_KEYS_TIMEOUT_SECONDS = 10

export type Kms = {type: 'file'} | Pkcs11Kms

/** RFC 7512 percent-decoding of one attribute value. */
function pct(v: string): string {
  try {
    return decodeURIComponent(v)
  } catch {
    throw new Error(`"${v}" is not percent-encoded correctly`)
  }
}

/** Parses `file` or a `pkcs11:` URI; throws an Error naming the problem (config turns it into a field problem). */
export function parseKms(text: string): Kms {
  if (text === 'file') return {type: 'file'}
  if (!text.startsWith('pkcs11:')) throw new Error(`"${text}" is neither "file" nor a pkcs11: URI`)
  const rest = text.slice('pkcs11:'.length)
  const q = rest.indexOf('?')
  const path = q < 0 ? rest : rest.slice(0, q)
  const query = q < 0 ? '' : rest.slice(q + 1)
  const attrs = new Map<string, string>()
  for (const part of path.split(';').filter(Boolean)) {
    const eq = part.indexOf('=')
    if (eq <= 0) throw new Error(`"${part}" is not attribute=value`)
    attrs.set(part.slice(0, eq), pct(part.slice(eq + 1)))
  }
  const params = new Map<string, string>()
  for (const part of query.split('&').filter(Boolean)) {
    const eq = part.indexOf('=')
    if (eq <= 0) throw new Error(`"${part}" is not attribute=value`)
    params.set(part.slice(0, eq), pct(part.slice(eq + 1)))
  }
  if (params.has('pin-value'))
    throw new Error('pin-value puts the PIN in the URI; use pin-source=file:/path/to/pin-file (mode 0600)')
  const token = attrs.get('token')
  if (!token) throw new Error('the URI names no token (token=LABEL)')
  const module = params.get('module-path')
  if (!module || !module.startsWith('/'))
    throw new Error('the URI names no module (module-path=/absolute/path/to/module.so)')
  const pin = params.get('pin-source')
  if (!pin) throw new Error('the URI names no PIN source (pin-source=file:/path/to/pin-file)')
  const pinFile = pin.startsWith('file:') ? pin.slice('file:'.length) : pin
  if (!pinFile.startsWith('/')) throw new Error('pin-source must be an absolute file path (file:/path)')
  return {type: 'pkcs11', token, module, pinFile, uri: text}
}
