/**
 * What an operator does on the CA box, next to a running CA: mint host enrollment tokens, revoke
 * and unrevoke, list certificates and hosts. These open the same sealed keys and the same store as
 * `ca serve` (SQLite in WAL mode takes a second connection while the server runs). Every action is
 * recorded in the store as an admin event; the running server writes it to its audit sink (so an
 * audit log on the server's standard output gets it too).
 */
import {readFile} from 'node:fs/promises'
import {SshcaError} from '../errors.ts'
import {parseCertificateLine} from '../ssh/cert.ts'
import {PublicKey} from '../ssh/keys.ts'
import {loadConfig, type CaConfig} from './config/config.ts'
import {mintEnrollmentToken, SSH_FINGERPRINT, type EnrollmentToken} from './provisioner/enrollment.ts'
import {readSealedKey} from './keys/keystore.ts'
import {caPaths} from './config/layout.ts'
import {tokenHash} from './provisioner/oidc.ts'
import {certFingerprint, pemToDer} from './keys/pki.ts'
import {RESTORE_LEEWAY, type CertificateQuery, type IssuedRecord, type Revocation, type Store} from './store/store.ts'
import {migrateStore, withStore as withOpenStore} from './store/open.ts'
import {assertMintable} from './restore-mark.ts'

const withStore = <T>(config: CaConfig, fn: (store: Store) => Promise<T>): Promise<T> =>
  // Stryker disable next-line StringLiteral: openStore tells only 'server' (a connection kept for hours) from the rest
  withOpenStore(config, 'admin', fn)

const iso = (seconds: number | bigint): string => new Date(Number(seconds) * 1000).toISOString()
/** A certificate's end: ISO, or 'forever' (the store keeps 2^64−1 as 2^63−1, past any Date). */
const until = (validBefore: bigint): string => (validBefore >= 0x7fff_ffff_ffff_ffffn ? 'forever' : iso(validBefore))
const nowOf = (clock?: () => number): number => Math.floor((clock ?? Date.now)() / 1000)

/**
 * A host key given as `SHA256:…` or as a file holding a public key or a certificate line (its key).
 * Returns the fingerprint.
 */
export async function keyFingerprintArg(arg: string, flag: string): Promise<string> {
  if (arg.startsWith('SHA256:')) {
    if (!SSH_FINGERPRINT.test(arg))
      throw new SshcaError(
        'ERR_USAGE',
        `${flag} "${arg}" is not an SSH SHA-256 fingerprint (SHA256: and 43 base64 characters, as ssh-keygen -l prints)`,
      )
    return arg
  }
  let text: string
  try {
    text = await readFile(arg, 'utf8')
  } catch (err) {
    throw new SshcaError(
      'ERR_FILE_NOT_FOUND',
      `${flag}: cannot read ${arg} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      {hint: `give a public key file (KEY.pub) or a fingerprint (SHA256:…, from ssh-keygen -lf KEY.pub)`},
    )
  }
  const line =
    text.split('\n').find((l) => l.trim() && !l.startsWith('#')) ??
    // Stryker disable next-line StringLiteral: no key line and a placeholder fail to parse alike (ERR_USAGE below)
    ''
  try {
    const type =
      line.trim().split(/\s/, 1)[0] ??
      // Stryker disable next-line StringLiteral: split always yields a first field; ?? '' only types it
      ''
    return type.endsWith('-cert-v01@openssh.com')
      ? parseCertificateLine(line).cert.publicKey.fingerprint()
      : PublicKey.parseLine(line).key.fingerprint()
  } catch (err) {
    throw new SshcaError(
      'ERR_USAGE',
      `${flag}: ${arg} holds no SSH public key or certificate: ${(err as Error).message}`,
    )
  }
}

export interface HostTokenResult extends EnrollmentToken {
  hostname: string
}

export async function hostToken(o: {
  configPath: string
  password: string
  hostname: string
  principals?: string[]
  key?: string
  ttlSeconds: number
  clock?: () => number
}): Promise<HostTokenResult> {
  const {config} = await loadConfig(o.configPath)
  const p = caPaths(config.dir)
  const keyFingerprint = o.key === undefined ? undefined : await keyFingerprintArg(o.key, '--key')
  await withStore(config, (store) => assertMintable(config.dir, store, nowOf(o.clock), RESTORE_LEEWAY))
  const key = await readSealedKey(p.enrollmentKey, o.password)
  // Stryker disable next-line StringLiteral: readFile(p, '') returns the PEM's bytes, which pemToDer parses alike
  const rootFingerprint = certFingerprint(pemToDer(await readFile(p.rootCert, 'utf8')))
  let t: EnrollmentToken
  try {
    t = await mintEnrollmentToken(key, {
      rootFingerprint,
      hostname: o.hostname,
      ...(o.principals ? {principals: o.principals} : {}),
      ...(keyFingerprint ? {keyFingerprint} : {}),
      ttlSeconds: o.ttlSeconds,
      now: nowOf(o.clock),
    })
  } catch (err) {
    if (err instanceof TypeError)
      throw new SshcaError('ERR_USAGE', err.message, {
        hint: 'host names and principals use letters, digits and . _ @ : / -',
      })
    throw err
  }
  await withStore(config, (store) =>
    store.recordAdminEvent(
      'enrollment_token_issued',
      {
        jti: t.jti,
        hostname: o.hostname,
        principals: t.principals,
        bound_key: t.boundKey,
        expires_at: iso(t.expiresAt),
        token_sha256: tokenHash(t.token),
      },
      nowOf(o.clock),
    ),
  )
  return {...t, hostname: o.hostname}
}

export interface RevocationView {
  id: string
  serial: string | null
  keyId: string | null
  keyFingerprint: string | null
  reason: string
  revokedAt: string
  /** Written for a certificate renewed or rekeyed from what that revocation (its id) revokes; unrevoked with it. */
  cascadeOf?: string
}

const viewOf = (r: Revocation): RevocationView => ({
  // Stryker disable next-line StringLiteral: the store gives every revocation an id (revoke returns it, revocations lists it); ?? '' only types it
  id: r.id ?? '',
  serial: r.serial?.toString() ?? null,
  keyId: r.keyId,
  keyFingerprint: r.keyFingerprint,
  reason: r.reason,
  revokedAt: iso(r.revokedAt),
  ...(r.cascadeOf === undefined ? {} : {cascadeOf: r.cascadeOf}),
})

export interface RevokeResult {
  /** What was revoked: one serial, a key ID, a key, or every current certificate of a subject. */
  kind: 'serial' | 'key-id' | 'key' | 'subject'
  /** The revocations asked for (one, or one per certificate of a subject); not those of `descendants`. */
  revocations: RevocationView[]
  reason: string
  /** The certificates the revocation names that this CA issued (for a serial or a subject). */
  certificates: {serial: string; keyId: string; principals: string[]; certType: string; validBefore: string}[]
  /** A key ID or key revocation also refuses every future certificate of it, until `ca unrevoke`. */
  blocksFutureCertificates: boolean
  /**
   * The serials of every certificate renewed or rekeyed, at any depth, from what was revoked by serial
   * or key (a host's later certificates carry other serials, and after a rekey another key): the
   * store revoked each by serial in the same transaction, and `ca unrevoke` of the revocation lifts
   * them with it. Numeric order.
   */
  descendants: string[]
  /**
   * The key IDs of host certificates revoked by serial or key that were issued before this CA recorded
   * each certificate's parent (store schema 7): what they were renewed or rekeyed to before then is
   * not followed, and may still work; a revocation of the key ID is what ends it.
   */
  hostKeyIds: string[]
}

export interface RevokeOptions {
  configPath: string
  serial?: string
  keyId?: string
  key?: string
  subject?: string
  reason?: string
  clock?: () => number
}

function parseSerial(s: string): bigint {
  if (!/^[1-9]\d{0,19}$/.test(s))
    throw new SshcaError('ERR_USAGE', `--serial "${s}" is not a certificate serial (a positive decimal number)`)
  const serial = BigInt(s)
  if (serial > 0xffff_ffff_ffff_ffffn) throw new SshcaError('ERR_USAGE', '--serial is larger than 64 bits')
  return serial
}

const certSummary = (c: IssuedRecord) => ({
  serial: c.serial.toString(),
  keyId: c.keyId,
  principals: c.principals,
  certType: c.certType,
  validBefore: until(c.validBefore),
})

export async function revoke(o: RevokeOptions): Promise<RevokeResult> {
  const given = [o.serial, o.keyId, o.key, o.subject].filter((v) => v !== undefined).length
  if (given !== 1) throw new SshcaError('ERR_USAGE', 'give exactly one of --serial, --key-id, --key and --subject')
  const serial = o.serial === undefined ? null : parseSerial(o.serial)
  const keyFingerprint = o.key === undefined ? null : await keyFingerprintArg(o.key, '--key')
  if (o.keyId === '') throw new SshcaError('ERR_USAGE', '--key-id must not be empty')
  const {config} = await loadConfig(o.configPath)
  const reason = o.reason ?? 'unspecified'
  const now = nowOf(o.clock)
  return withStore(config, async (store) => {
    let kind: RevokeResult['kind']
    let certificates: IssuedRecord[] = []
    let wanted: Revocation[]
    if (o.subject !== undefined) {
      kind = 'subject'
      // every certificate of this identity that is still valid: expired ones need no revocation
      certificates = await store.certificates({subject: o.subject, activeAt: now, limit: 100_000})
      wanted = certificates.map((c) => ({serial: c.serial, keyId: null, keyFingerprint: null, reason, revokedAt: now}))
    } else {
      kind = serial !== null ? 'serial' : keyFingerprint !== null ? 'key' : 'key-id'
      if (serial !== null) {
        const rec = await store.findCertificate(serial)
        if (rec) certificates = [rec]
      } else if (keyFingerprint !== null) {
        certificates = await store.certificates({keyFingerprint, activeAt: now, limit: 100_000})
      } else {
        certificates = await store.certificates({keyId: o.keyId!, activeAt: now, limit: 100_000})
      }
      wanted = [{serial, keyId: o.keyId ?? null, keyFingerprint, reason, revokedAt: now}]
    }
    const summaries = certificates.map(certSummary)
    // host certificates from before the store recorded parents: their lineage is followed only from then
    const named = keyFingerprint === null ? certificates : await store.certificates({keyFingerprint, limit: 100_000})
    const untracked = kind === 'key-id' ? [] : named.filter((c) => c.certType === 'host' && c.lineage === undefined)
    // the revocations, those the store adds for their descendants, and the admin event that tells of
    // them all: one transaction (all or nothing)
    const saved = await store.revokeAll(wanted, {
      event: 'certificate_revoked',
      at: now,
      fields: (rs) => ({
        kind,
        reason,
        revocations: rs.map(viewOf),
        certificates: summaries.map((c) => c.serial),
        descendants: rs.flatMap((r) => (r.cascadeOf === undefined ? [] : [r.serial!.toString()])),
      }),
    })
    return {
      kind,
      revocations: saved.filter((r) => r.cascadeOf === undefined).map(viewOf),
      reason,
      certificates: summaries,
      blocksFutureCertificates: kind === 'key-id' || kind === 'key',
      descendants: descendantSerials(saved, new Set(certificates.map((c) => c.serial))),
      hostKeyIds: [...new Set(untracked.map((c) => c.keyId))],
    }
  })
}

/**
 * The serials the store revoked for descendants (`cascadeOf`), each once and in numeric order, less
 * those revoked in their own right (a subject's certificates may descend from one another).
 */
export function descendantSerials(saved: Revocation[], own: ReadonlySet<bigint> = new Set()): string[] {
  const serials = new Set(saved.flatMap((r) => (r.cascadeOf === undefined || own.has(r.serial!) ? [] : [r.serial!])))
  // distinct (a set): the sign of the difference orders them (Number() keeps it, past 2^53 too)
  return [...serials].sort((a, b) => Number(a - b)).map((n) => n.toString())
}

/** What `ca unrevoke` removed: the revocation, and with it those written for its descendants (their serials). */
export type UnrevokeResult = RevocationView & {descendants: string[]}

export async function unrevoke(o: {configPath: string; id: string; clock?: () => number}): Promise<UnrevokeResult> {
  const {config} = await loadConfig(o.configPath)
  return withStore(config, async (store) => {
    // the removal, that of the revocations of its descendants, and its admin event: one transaction
    const r = await store.unrevokeWith(o.id, {
      event: 'certificate_unrevoked',
      at: nowOf(o.clock),
      fields: (removed) => ({
        revocation: viewOf(removed),
        descendants: descendantSerials(removed.cascade),
      }),
    })
    if (!r)
      throw new SshcaError('ERR_NOT_FOUND', `no revocation with id ${o.id}`, {
        hint: 'list them with: sshca ca revocations',
      })
    return {...viewOf(r), descendants: descendantSerials(r.cascade)}
  })
}

export async function revocations(o: {configPath: string}): Promise<{revocations: RevocationView[]}> {
  const {config} = await loadConfig(o.configPath)
  return withStore(config, async (store) => ({revocations: (await store.revocations()).map(viewOf)}))
}

export interface CertView {
  serial: string
  certType: 'user' | 'host'
  keyId: string
  principals: string[]
  validAfter: string
  validBefore: string
  provisioner: string
  rule: string | null
  subject: string | null
  keyFingerprint: string
  issuedAt: string
  revoked: boolean
}

/** `ca certs`: the inventory of issued certificates, newest first. */
export async function certs(o: {
  configPath: string
  query: Omit<CertificateQuery, 'activeAt'> & {active?: boolean}
  clock?: () => number
}): Promise<{certificates: CertView[]}> {
  const {config} = await loadConfig(o.configPath)
  const now = nowOf(o.clock)
  const {active, ...rest} = o.query
  return withStore(config, async (store) => {
    const list = await store.certificates({...rest, ...(active ? {activeAt: now} : {})})
    const out: CertView[] = []
    for (const c of list) {
      out.push({
        serial: c.serial.toString(),
        certType: c.certType,
        keyId: c.keyId,
        principals: c.principals,
        validAfter: iso(c.validAfter),
        validBefore: until(c.validBefore),
        provisioner: c.provisioner,
        rule: c.rule,
        subject: c.subject,
        keyFingerprint: c.keyFingerprint,
        issuedAt: iso(c.issuedAt),
        revoked: (await store.revocationFor(c)) !== undefined,
      })
    }
    return {certificates: out}
  })
}

export async function hosts(o: {configPath: string; clock?: () => number}): Promise<{
  hosts: {principals: string[]; serial: string; keyId: string; validBefore: string; keyFingerprint: string}[]
}> {
  const {config} = await loadConfig(o.configPath)
  const now = nowOf(o.clock)
  return withStore(config, async (store) => {
    const out = []
    for (const c of await store.currentHostCertificates(now)) {
      if (await store.revocationFor(c)) continue
      out.push({
        principals: c.principals,
        serial: c.serial.toString(),
        keyId: c.keyId,
        validBefore: until(c.validBefore),
        keyFingerprint: c.keyFingerprint,
      })
    }
    return {hosts: out}
  })
}

export interface MigrateResult {
  config: string
  backend: 'sqlite' | 'postgresql'
  from: number
  to: number
  applied: number
}

/** `sshca ca migrate`: brings the store's schema to this version (under the same lock replicas take at start). */
export async function migrate(o: {configPath: string}): Promise<MigrateResult> {
  const {config} = await loadConfig(o.configPath)
  const {from, to, backend} = await migrateStore(config)
  return {config: config.path, backend, from, to, applied: to - from}
}
