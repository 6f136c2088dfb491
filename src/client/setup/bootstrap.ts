/**
 * `sshca bootstrap`: trust a CA from its URL and root fingerprint (step's bootstrap). The root is
 * fetched without trusting TLS, its SHA-256 compared in constant time, then the CA is called again
 * trusting that root alone (which proves its TLS certificate chains to it) for its SSH CA keys.
 * Only then is anything written; a mismatch or an unreachable CA writes nothing.
 */
import {createHash, randomBytes, timingSafeEqual, X509Certificate} from 'node:crypto'
import {cp, mkdir, rename, rm} from 'node:fs/promises'
import {join} from 'node:path'
import {SshcaError} from '../../errors.ts'
import {RootResponse, SshRootsResponse} from '../../protocol/api.ts'
import {caHostPattern, namesNoHosts} from '../../ssh/host-pattern.ts'
import {PublicKey} from '../../ssh/keys.ts'
import {exists, privateDir, writeFileAtomic} from '../../util/fs.ts'
import {CaClient, httpsRequest, networkError} from '../ca-api/ca-client.ts'
import {broadPatternWarning, overlappingContexts, overlapWarning} from './config.ts'
import {
  CONTEXT_FILE,
  ROOT_FILE,
  checkHome,
  contextDir,
  listContexts,
  readContext,
  validContextName,
  type Context,
  type ContextSettings,
} from '../home/home.ts'
import {ensureHomeLayout} from '../home/home-layout.ts'
import {contextKrlPath, refreshContextKrl, type ContextKrl} from '../ca-api/krl.ts'
import {withSettingsLock} from '../home/settings-lock.ts'
import {followRootRotation, splitPems} from '../ca-api/roots.ts'

export interface BootstrapOptions {
  caUrl: string
  fingerprint: string
  context?: string
  force?: boolean
  /** Each request's deadline, connect to the body's end (default REQUEST_DEADLINE_MS). */
  deadlineMs?: number
}

export interface BootstrapResult {
  context: string
  caUrl: string
  rootFingerprint: string
  rootSubject: string
  userCaKeys: string[]
  hostCaKeys: string[]
  /** The CA's host pattern, as stored ("!*": it names no hosts; sshca config then needs --pattern). */
  hostPattern: string
  krl: ContextKrl
  warnings: string[]
  replaced: boolean
  /** Other contexts that already trust this same root (the same CA under another URL or name). */
  sameRoot: {context: string; caUrl: string}[]
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
    throw new SshcaError('ERR_USAGE', `--ca-url "${raw}" is not a URL`, {
      hint: 'for example https://ca.example.com:9000',
    })
  }
  if (u.protocol !== 'https:') throw new SshcaError('ERR_USAGE', `--ca-url must be https, not ${u.protocol}`)
  if (u.search || u.hash || u.username)
    throw new SshcaError('ERR_USAGE', '--ca-url must not carry a query, fragment or credentials')
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`
}

/**
 * The context name a CA gets without --context: its host in safe characters. An IPv6 literal
 * ("[fd00::5]") becomes "fd00_5": each run of other characters one "_", none at either end.
 */
export function defaultContextName(caUrl: string): string {
  return new URL(caUrl).hostname.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^_|_$/g, '')
}

function parseJson(body: Buffer): unknown {
  // Stryker disable BlockStatement: an empty catch returns undefined as well (an empty try is caught by the tests)
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    return undefined
  }
}
// Stryker restore BlockStatement

export async function bootstrap(home: string, o: BootstrapOptions): Promise<BootstrapResult> {
  const caUrl = normalizeCaUrl(o.caUrl)
  const want = normalizeFingerprint(o.fingerprint)
  if (!want)
    throw new SshcaError(
      'ERR_USAGE',
      '--fingerprint must be the root\'s SHA-256: 64 hex characters (":" and "-" allowed)',
    )
  const name = o.context ?? defaultContextName(caUrl)
  if (!validContextName(name))
    throw new SshcaError('ERR_USAGE', `"${name}" is not a valid context name (letters, digits, ".", "_", "-")`)
  checkHome(home)

  // 1. the root, without trusting TLS: the fingerprint is what we trust
  let res
  try {
    res = await httpsRequest(new URL(`${caUrl}/root/${want}`), {
      insecure: true,
      ...(o.deadlineMs ? {deadlineMs: o.deadlineMs} : {}),
    })
  } catch (err) {
    throw networkError(caUrl, err)
  }
  if (res.status === 404) {
    throw new SshcaError('ERR_TRUST_FINGERPRINT_MISMATCH', `the CA at ${caUrl} has no root with fingerprint ${want}`, {
      hint: 'check the fingerprint with the CA operator (sshca ca init printed it)',
    })
  }
  const parsed = res.status === 200 ? RootResponse.safeParse(parseJson(res.body)) : undefined
  if (!parsed?.success)
    throw new SshcaError(
      'ERR_CA_BAD_RESPONSE',
      `the CA at ${caUrl} answered GET /root with HTTP ${res.status} and no root`,
    )
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
    throw new SshcaError(
      'ERR_TRUST_FINGERPRINT_MISMATCH',
      'the fingerprint matches, but that certificate is not a self-signed CA root',
    )
  }
  const rootPem = root.toString()

  // 2. the CA again, trusting that root alone: its TLS must chain to it
  const client = new CaClient(caUrl, rootPem, o.deadlineMs ? {deadlineMs: o.deadlineMs} : {})
  try {
    let roots: SshRootsResponse
    try {
      // Stryker disable next-line StringLiteral: node:https sends GET for an empty method name
      roots = await client.call('GET', '/ssh/roots', SshRootsResponse)
    } catch (err) {
      // step-ca without SSH keys answers 404 "no keys found"
      if (err instanceof SshcaError && err.details?.status === 404) {
        throw new SshcaError(
          'ERR_CA_UNSUPPORTED',
          `the CA at ${caUrl} does not issue SSH certificates: SSH is not enabled on it (GET /ssh/roots answered 404); nothing was written`,
          // Stryker disable next-line ObjectLiteral: the cause and the hint are words for a person
          {
            cause: err,
            hint: 'on step-ca, SSH is enabled with `step ca init --ssh` (the "ssh" keys in ca.json); check the URL, or ask the CA operator',
          },
        )
      }
      throw err
    }
    if (roots.userKey.length === 0 && roots.hostKey.length === 0)
      throw new SshcaError('ERR_CA_UNSUPPORTED', `the CA at ${caUrl} has no SSH CA keys; nothing was written`)
    // during a root rotation: the other root too, when the one given vouches for it (cross-certificate)
    // Stryker disable StringLiteral,ArrayDeclaration: followRootRotation reads the name, URL and roots; it never uses the folder, and the rest is passed through
    const followed = await followRootRotation(
      {
        name,
        caUrl,
        rootFingerprint: got,
        rootPem,
        dir: '',
        userCaKeys: [],
        hostCaKeys: [],
        hostPattern: '',
        bootstrappedAt: '',
      },
      // Stryker restore StringLiteral,ArrayDeclaration
      client,
    )
    const line = (b64: string, what: string) => PublicKey.fromBlob(Buffer.from(b64, 'base64')).toLine(`${name} ${what}`)
    // a pattern ssh would read differently from us (or none, as from step-ca) names no hosts
    const hostPattern = caHostPattern(roots.hostPattern)
    const settings: ContextSettings = {
      name,
      caUrl,
      rootFingerprint: followed.ctx.rootFingerprint,
      userCaKeys: roots.userKey.map((k) => line(k, 'user CA')),
      hostCaKeys: roots.hostKey.map((k) => line(k, 'host CA')),
      hostPattern,
      // what the person is shown now (and warned of): config adopts no later change of it by itself
      acceptedCaPattern: hostPattern,
      bootstrappedAt: new Date().toISOString(),
    }
    return await writeContext(
      home,
      settings,
      {rootPem: followed.ctx.rootPem, given: got, rootSubject: root.subject, force: Boolean(o.force)},
      client,
    )
  } finally {
    client.close()
  }
}

async function writeContext(
  home: string,
  settings: ContextSettings,
  o: {rootPem: string; given: string; rootSubject: string; force: boolean},
  client: CaClient,
): Promise<BootstrapResult> {
  const {name} = settings
  const got = o.given
  const {rootPem, rootSubject} = o
  let krl: ContextKrl

  // 3. write: refuse to swap a context's root without --force; the directory appears whole or not at all
  // a damaged context (its files unreadable, of the wrong shape, a root that does not parse) is
  // replaced with --force, which its error says to run; without it the error stands
  let existing: Context | undefined
  let pinnedRoots: X509Certificate[] = []
  let damaged = false
  try {
    existing = await readContext(home, name)
    if (existing)
      pinnedRoots = splitPems(existing.rootPem, {
        what: `the root context "${name}" pins`,
        hint: 'run the same command with --force to replace the context',
      })
  } catch (err) {
    if (!o.force) throw err
    existing = undefined
    damaged = true
  }
  const alreadyPinned = pinnedRoots.some((c) =>
    fingerprintsEqual(createHash('sha256').update(c.raw).digest('hex'), got),
  )
  if (existing && !alreadyPinned && !fingerprintsEqual(existing.rootFingerprint, got) && !o.force) {
    throw new SshcaError(
      'ERR_TRUST_ROOT_CHANGED',
      `context "${name}" already trusts root ${existing.rootFingerprint}; this CA's root is ${got}`,
      {
        hint: 'if the CA was re-created on purpose, run the same command with --force',
      },
    )
  }
  const contexts = join(home, 'contexts')
  await privateDir(contexts)
  ensureHomeLayout(home) // a new home says which layout it is in
  const staged = join(contexts, `.${name}.${randomBytes(4).toString('hex')}`)
  try {
    await mkdir(staged, {mode: 0o700})
    await writeFileAtomic(join(staged, ROOT_FILE), rootPem)
    await writeFileAtomic(join(staged, CONTEXT_FILE), `${JSON.stringify(settings, null, 2)}\n`)
    const target = contextDir(home, name)
    // a folder that is no context (no context.json) stays untouched, even with --force: not ours to remove
    const replacing = existing !== undefined || damaged
    // the KRL ssh reads for this context (RevokedHostKeys names it): fetched now, else the previous
    // copy carried over, so a re-bootstrap never leaves ssh_config pointing at a missing file
    if (replacing && (await exists(contextKrlPath(target))))
      await cp(contextKrlPath(target), contextKrlPath(staged), {preserveTimestamps: true})
    // Stryker disable next-line ObjectLiteral: the context only names the CA in a note; the folder is the third argument
    const stagedContext = {...settings, rootPem, dir: staged}
    // staged: the folder is not yet the context's, so no lock and no check of the context saved now
    krl = await refreshContextKrl(stagedContext, client, staged, {staged: true})
    if (krl.file) krl = {...krl, file: contextKrlPath(target)}
    // under the settings lock: a login or config that read the old context cannot save it into the new one
    await withSettingsLock(home, async () => {
      // Stryker disable next-line BooleanLiteral: the target is there (existing), so removing it needs no force
      if (replacing) await rm(target, {recursive: true, force: true})
      await rename(staged, target)
    })
  } catch (err) {
    await rm(staged, {
      recursive: true,
      // Stryker disable next-line BooleanLiteral: force matters only if mkdir(staged) failed, which a test running as root cannot provoke
      force: true,
    })
    throw err
  }
  await writeFileAtomic(join(home, 'current'), `${name}\n`)
  const warnings: string[] = []
  // the same CA under a second URL (or name) becomes a second context: say so rather than let it pass unseen
  const sameRoot: {context: string; caUrl: string}[] = []
  for (const other of await listContexts(home)) {
    if (other === name) continue
    const c = await readContext(home, other).catch(() => undefined)
    // Stryker disable next-line StringLiteral: no fallback string equals a fingerprint that was checked
    if (c && fingerprintsEqual(normalizeFingerprint(c.rootFingerprint) ?? '', got))
      sameRoot.push({context: other, caUrl: c.caUrl})
  }
  for (const o of sameRoot) {
    // Stryker disable StringLiteral: the words of a warning
    warnings.push(
      `this root is already trusted as context "${o.context}" (${o.caUrl}); "${name}" (${settings.caUrl}) is a second context for the same CA and is now current` +
        ` — to use "${o.context}" instead, pass --context ${o.context} to sshca login/config; to reuse that name here, run bootstrap again with --context ${o.context}`,
    )
  }
  // Stryker restore StringLiteral
  // "*" and its other spellings ("?*", "**", "*,!x.invalid"): a warning for each, not only for "*"
  const broad = broadPatternWarning(name, settings.hostPattern)
  if (broad) warnings.push(broad)
  if (krl.note) warnings.push(krl.note)
  // Stryker disable next-line ConditionalExpression: a pattern that names no hosts overlaps with none (this only saves reading the contexts)
  if (!namesNoHosts(settings.hostPattern))
    for (const o of await overlappingContexts(home, name, settings.hostPattern))
      warnings.push(overlapWarning(name, settings.hostPattern, o))
  return {
    context: name,
    caUrl: settings.caUrl,
    rootFingerprint: got,
    rootSubject,
    userCaKeys: settings.userCaKeys,
    hostCaKeys: settings.hostCaKeys,
    hostPattern: settings.hostPattern,
    krl,
    warnings,
    replaced: !!existing || damaged,
    sameRoot,
  }
}
