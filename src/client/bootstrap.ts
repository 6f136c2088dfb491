/**
 * `sshca bootstrap`: trust a CA from its URL and root fingerprint (step's bootstrap). The root is
 * fetched without trusting TLS, its SHA-256 compared in constant time, then the CA is called again
 * trusting that root alone (which proves its TLS certificate chains to it) for its SSH CA keys.
 * Only then is anything written; a mismatch or an unreachable CA writes nothing.
 */
import {createHash, randomBytes, timingSafeEqual, X509Certificate} from 'node:crypto'
import {mkdir, rename, rm} from 'node:fs/promises'
import {join} from 'node:path'
import {SshcaError} from '../errors.ts'
import {RootResponse, SshRootsResponse} from '../protocol/api.ts'
import {PublicKey} from '../ssh/keys.ts'
import {privateDir, writeFileAtomic} from '../util/fs.ts'
import {CaClient, httpsRequest, networkError} from './ca-client.ts'
import {CONTEXT_FILE, ROOT_FILE, contextDir, readContext, validContextName, type ContextSettings} from './home.ts'

export interface BootstrapOptions {
  caUrl: string
  fingerprint: string
  context?: string
  force?: boolean
}

export interface BootstrapResult {
  context: string
  caUrl: string
  rootFingerprint: string
  rootSubject: string
  userCaKeys: string[]
  hostCaKeys: string[]
  replaced: boolean
}

/** Lowercase hex without ":" or "-"; undefined unless it is 64 hex characters. */
export function normalizeFingerprint(fp: string): string | undefined {
  const n = fp.trim().toLowerCase().replace(/[:-]/g, '')
  return /^[0-9a-f]{64}$/.test(n) ? n : undefined
}

/** Constant-time comparison of two normalized fingerprints. */
export function fingerprintsEqual(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

export function normalizeCaUrl(raw: string): string {
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    throw new SshcaError('ERR_USAGE', `--ca-url "${raw}" is not a URL`, {hint: 'for example https://ca.example.com:9000'})
  }
  if (u.protocol !== 'https:') throw new SshcaError('ERR_USAGE', `--ca-url must be https, not ${u.protocol}`)
  if (u.search || u.hash || u.username) throw new SshcaError('ERR_USAGE', '--ca-url must not carry a query, fragment or credentials')
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`
}

/**
 * The context name a CA gets without --context: its host in safe characters. An IPv6 literal
 * ("[fd00::5]") becomes "fd00_5": each run of other characters one "_", none at either end.
 */
export function defaultContextName(caUrl: string): string {
  return new URL(caUrl).hostname
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^_|_$/g, '')
}

function parseJson(body: Buffer): unknown {
  // Stryker disable next-line BlockStatement: an empty catch returns undefined as well (an empty try is caught by the tests)
  try { return JSON.parse(body.toString('utf8')) } catch { return undefined }
}

export async function bootstrap(home: string, o: BootstrapOptions): Promise<BootstrapResult> {
  const caUrl = normalizeCaUrl(o.caUrl)
  const want = normalizeFingerprint(o.fingerprint)
  if (!want) throw new SshcaError('ERR_USAGE', '--fingerprint must be the root\'s SHA-256: 64 hex characters (":" and "-" allowed)')
  const name = o.context ?? defaultContextName(caUrl)
  if (!validContextName(name)) throw new SshcaError('ERR_USAGE', `"${name}" is not a valid context name (letters, digits, ".", "_", "-")`)

  // 1. the root, without trusting TLS: the fingerprint is what we trust
  let res
  try {
    res = await httpsRequest(new URL(`${caUrl}/root/${want}`), {insecure: true})
  } catch (err) {
    throw networkError(caUrl, err)
  }
  if (res.status === 404) {
    throw new SshcaError('ERR_TRUST_FINGERPRINT_MISMATCH', `the CA at ${caUrl} has no root with fingerprint ${want}`, {hint: 'check the fingerprint with the CA operator (sshca ca init printed it)'})
  }
  const parsed = res.status === 200 ? RootResponse.safeParse(parseJson(res.body)) : undefined
  if (!parsed?.success) throw new SshcaError('ERR_CA_BAD_RESPONSE', `the CA at ${caUrl} answered GET /root with HTTP ${res.status} and no root`)
  const pem = parsed.data.ca
  let root: X509Certificate
  try {
    root = new X509Certificate(pem)
  } catch (err) {
    throw new SshcaError('ERR_CA_BAD_RESPONSE', 'the CA sent a root that is not a certificate', {cause: err})
  }
  const got = createHash('sha256').update(root.raw).digest('hex')
  if (!fingerprintsEqual(got, want)) {
    throw new SshcaError('ERR_TRUST_FINGERPRINT_MISMATCH', `the root the CA sent has fingerprint ${got}, not ${want}`, {
      hint: 'do not trust this CA until the operator confirms the fingerprint; nothing was written',
    })
  }
  if (!root.ca || !root.checkIssued(root) || !root.verify(root.publicKey)) {
    throw new SshcaError('ERR_TRUST_FINGERPRINT_MISMATCH', 'the fingerprint matches, but that certificate is not a self-signed CA root')
  }
  const rootPem = root.toString()

  // 2. the CA again, trusting that root alone: its TLS must chain to it
  const client = new CaClient(caUrl, rootPem)
  let roots
  try {
    roots = await client.call(
      // Stryker disable next-line StringLiteral: node:https sends GET when the method is empty
      'GET',
      '/ssh/roots',
      SshRootsResponse,
    )
  } finally {
    client.close()
  }
  // the pattern goes into known_hosts as one field of an @cert-authority line: no spaces, no line breaks
  const hostPattern = roots.hostPattern ?? '*'
  if (!/^[!-~]+$/.test(hostPattern)) {
    throw new SshcaError('ERR_CA_BAD_RESPONSE', `the CA sent a host pattern that is not one known_hosts field: ${JSON.stringify(hostPattern)}`)
  }
  const line = (b64: string, what: string) => PublicKey.fromBlob(Buffer.from(b64, 'base64')).toLine(`${name} ${what}`)
  const settings: ContextSettings = {
    name,
    caUrl,
    rootFingerprint: got,
    userCaKeys: roots.userKey.map((k) => line(k, 'user CA')),
    hostCaKeys: roots.hostKey.map((k) => line(k, 'host CA')),
    hostPattern,
    bootstrappedAt: new Date().toISOString(),
  }

  // 3. write: refuse to swap a context's root without --force; the directory appears whole or not at all
  const existing = await readContext(home, name)
  if (existing && !fingerprintsEqual(existing.rootFingerprint, got) && !o.force) {
    throw new SshcaError('ERR_TRUST_ROOT_CHANGED', `context "${name}" already trusts root ${existing.rootFingerprint}; this CA's root is ${got}`, {
      hint: 'if the CA was re-created on purpose, run the same command with --force',
    })
  }
  const contexts = join(home, 'contexts')
  await privateDir(contexts)
  const staged = join(contexts, `.${name}.${randomBytes(4).toString('hex')}`)
  try {
    await mkdir(staged, {mode: 0o700})
    await writeFileAtomic(join(staged, ROOT_FILE), rootPem)
    await writeFileAtomic(join(staged, CONTEXT_FILE), `${JSON.stringify(settings, null, 2)}\n`)
    const target = contextDir(home, name)
    if (existing) await rm(target, {recursive: true})
    await rename(staged, target)
  } catch (err) {
    await rm(staged, {
      recursive: true,
      // Stryker disable next-line BooleanLiteral: force matters only if mkdir(staged) failed, which a test running as root cannot provoke
      force: true,
    })
    throw err
  }
  await writeFileAtomic(join(home, 'current'), `${name}\n`)
  return {context: name, caUrl, rootFingerprint: got, rootSubject: root.subject, userCaKeys: settings.userCaKeys, hostCaKeys: settings.hostCaKeys, replaced: !!existing}
}
