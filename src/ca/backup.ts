/**
 * `sshca ca backup` and `sshca ca restore`: one encrypted archive holding what a CA cannot be rebuilt
 * without — its sealed keys (still sealed with the CA password), its certificates and public keys,
 * ca.yaml, and a consistent snapshot of a SQLite store taken while the CA runs — with a manifest of
 * sizes and SHA-256s, sealed under a backup password (keys/archive.ts).
 *
 * The snapshot is SQLite's online backup API on a read-only connection, all pages in one step: one
 * read transaction, so it is consistent however the CA writes meanwhile (a step-by-step backup would
 * restart on every write of a busy CA), and it never blocks the writer (WAL).
 * PostgreSQL is backed up with its own tools (pg_dump); the archive then holds the rest, and says so.
 *
 * Restore refuses to write into anything but a new or empty directory, reads the whole archive once
 * to authenticate it and check every file, its manifest and ca.yaml before writing a byte, then again
 * into a staging directory renamed into place. It leaves `restore-pending.json`: the restored CA's
 * first start closes the replay window (restore-mark.ts). What a restore loses: the tokens spent,
 * certificates issued and revocations made after the snapshot (see docs/operations.md).
 */
import {createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual, type KeyObject} from 'node:crypto'
import {mkdtemp, open, readdir, readFile, rename, rm, rmdir, stat} from 'node:fs/promises'
import {basename, dirname, join, resolve} from 'node:path'
import {backup, DatabaseSync} from 'node:sqlite'
import {parseDocument} from 'yaml'
import {SshcaError} from '../errors.ts'
import {MAX_ENROLLMENT_TTL, MAX_POP_TTL} from '../protocol/tokens.ts'
import {PublicKey} from '../ssh/keys.ts'
import {exists, privateDir, refuseSymlink, writeFileAtomic} from '../util/fs.ts'
import {RESTORE_LEEWAY} from './store/store.ts'
import {loadConfig, parseConfig, resolveInDir, type CaConfig} from './config/config.ts'
import {caPaths} from './config/layout.ts'
import {readArchive, writeArchive, type ArchivedFile, type ArchiveInput} from './keys/archive.ts'
import {openPrivateKey} from './keys/keystore.ts'
import {certFingerprint, parseCert, pemToDer} from './keys/pki.ts'
import {DEFAULT_MAX_TOKEN_AGE, LEEWAY_SECONDS} from './provisioner/oidc.ts'
import {SCHEMA_VERSION} from './store/migrations.ts'
import {withStore} from './store/open.ts'
import {SqliteStore} from './store/sqlite.ts'
import type {RestorePending} from './restore-mark.ts'

/** Where a SQLite snapshot sits in the archive, and in a restored CA (ca.yaml's db.path is set to it). */
export const SNAPSHOT_PATH = 'db/sshca.sqlite'
/** The CA's own files: everything in these folders (rotation may add keys), and ca.yaml. */
const FOLDERS = ['certs', 'secrets', 'ssh'] as const
/** A file name in one of those folders: no path, and never `.`/`..` or a hidden (temp) file. */
const NAME = /^[A-Za-z0-9_@+-][A-Za-z0-9._@+-]{0,127}$/
/** What a CA cannot start without (keys/material.ts); the root key is optional (offline root). */
const REQUIRED = [
  'ca.yaml',
  'certs/root_ca.crt',
  'certs/intermediate_ca.crt',
  'certs/tls.crt',
  'secrets/intermediate_ca.key',
  'secrets/tls.key',
  'secrets/ssh_user_ca.key',
  'secrets/ssh_host_ca.key',
  'secrets/enrollment.key',
  'ssh/ssh_user_ca.pub',
  'ssh/ssh_host_ca.pub',
]
const MAX_SMALL_FILE = 1 << 20

export type StoreBackup =
  | {
      type: 'sqlite'
      file: string
      snapshotAt: string
      method: 'sqlite3_backup'
      schemaVersion: number
      certificates: number
      revocations: number
      spentTokens: number
    }
  | {type: 'postgresql'; included: false; database: string}

export interface BackupManifest {
  format: 'sshca-backup-manifest'
  version: 1
  createdAt: string
  ca: {
    name: string
    rootFingerprint: string
    userCaKey: string
    hostCaKey: string
    intermediateNotAfter: string
    rootKeyIncluded: boolean
  }
  store: StoreBackup
  /** Files ca.yaml names outside the archive (database password and TLS files, the audit log): back them up yourself. */
  external: {setting: string; path: string}[]
  files: ArchivedFile[]
  /**
   * The manifest, every file's checksum in it, authenticated with a key only the CA password opens
   * (derived from the CA's sealed enrollment key): the backup password alone cannot make an archive
   * that restores. Absent from archives made before sshca signed them.
   */
  integrity?: {alg: 'HMAC-SHA256'; key: 'enrollment-key'; mac: string}
}

export interface BackupResult {
  file: string
  size: number
  sha256: string
  manifest: BackupManifest
  /** What the operator must do besides keeping this file (PostgreSQL, files outside the CA directory). */
  notes: string[]
}

const iso = (s: number): string => new Date(s * 1000).toISOString()
const stamp = (d: Date): string =>
  d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')

/** ca.yaml settings that name files the archive does not hold. */
function externalFiles(config: CaConfig): {setting: string; path: string}[] {
  const out: {setting: string; path: string}[] = []
  if (config.db.type === 'postgresql') {
    if (config.db.passwordFile)
      out.push({setting: 'db.passwordFile', path: resolveInDir(config, config.db.passwordFile)})
    for (const k of ['ca', 'cert', 'key'] as const) {
      const v = config.db.tls[k]
      if (v) out.push({setting: `db.tls.${k}`, path: resolveInDir(config, v)})
    }
  }
  if (config.audit.file !== '-') out.push({setting: 'audit.file', path: resolveInDir(config, config.audit.file)})
  return out
}

/** The CA directory's own files (relative paths), regular files only: a symlink is refused. */
async function caFiles(dir: string): Promise<string[]> {
  const out = ['ca.yaml']
  for (const folder of FOLDERS) {
    let names: string[]
    try {
      names = await readdir(join(dir, folder))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue
      throw err
    }
    for (const name of names.sort()) {
      if (!NAME.test(name)) continue // temp files of an atomic write start with a dot
      const p = join(dir, folder, name)
      await refuseSymlink(p)
      if ((await stat(p)).isFile()) out.push(`${folder}/${name}`)
    }
  }
  for (const r of REQUIRED) {
    if (!out.includes(r))
      throw new SshcaError(
        'ERR_FILE_NOT_FOUND',
        `the CA directory ${dir} has no ${r}: it would not restore into a CA that starts`,
        {hint: 'is --config pointing at a directory made by `sshca ca init`?'},
      )
  }
  return out
}

const fingerprintOfLine = (text: string): string =>
  PublicKey.parseLine(text.split('\n').find((l) => l.trim() !== '') ?? '').key.fingerprint()

/**
 * A consistent copy of the SQLite store at `into` (which must not exist), with what it holds: SQLite's
 * online backup API in one step (every page under one read transaction on a read-only connection, so
 * a CA writing meanwhile neither blocks it nor makes it restart; WAL readers never block the writer).
 */
async function snapshotSqlite(
  dbPath: string,
  into: string,
): Promise<Omit<Extract<StoreBackup, {type: 'sqlite'}>, 'type' | 'file' | 'method' | 'snapshotAt'>> {
  const src = new DatabaseSync(dbPath, {readOnly: true})
  try {
    src.exec('PRAGMA busy_timeout = 5000;')
    // the largest rate node:sqlite takes: all pages in one sqlite3_backup_step, never a partial copy
    await backup(src, into, {rate: 0x7fff_ffff})
  } finally {
    src.close()
  }
  const copy = new DatabaseSync(into)
  try {
    // a single file, as the archive holds it (the source's WAL mode is copied with its pages)
    copy.exec('PRAGMA journal_mode = DELETE;')
    const n = (sql: string): number => Number((copy.prepare(sql).get() as {n: number | bigint}).n)
    return {
      schemaVersion: n('SELECT user_version AS n FROM pragma_user_version'),
      certificates: n('SELECT COUNT(*) AS n FROM certificates'),
      revocations: n('SELECT COUNT(*) AS n FROM revocations'),
      spentTokens: n('SELECT COUNT(*) AS n FROM used_tokens'),
    }
  } finally {
    copy.close()
  }
}

/** `--out`: a new file, or an existing directory to hold `sshca-backup-<UTC time>.sshca`. */
async function outputPath(out: string, now: Date): Promise<string> {
  const target = resolve(out)
  await refuseSymlink(target)
  const s = await stat(target).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined
    throw err
  })
  if (s?.isDirectory()) {
    const file = join(target, `sshca-backup-${stamp(now)}.sshca`)
    if (await exists(file))
      throw new SshcaError('ERR_FILE_EXISTS', `${file} already exists`, {
        hint: 'wait a second, or give --out a file name',
      })
    return file
  }
  if (s)
    throw new SshcaError('ERR_FILE_EXISTS', `${target} already exists; a backup never overwrites one`, {
      hint: 'give a new file name, or a directory (the file is then named after the time)',
    })
  return target
}

/**
 * The manifest's MAC key: HKDF of the CA's enrollment key (sealed with the CA password in every CA
 * directory and every archive), for this one use. Whoever has only the backup password can open an
 * archive and seal another, but not make this key, so not an archive that restores.
 */
function manifestKey(enrollmentKey: KeyObject): Buffer {
  const ikm = enrollmentKey.export({type: 'pkcs8', format: 'der'})
  return Buffer.from(hkdfSync('sha256', ikm, Buffer.alloc(0), 'sshca backup manifest v1', 32))
}

/** The MAC of a manifest without its integrity field, as JSON in the order it was written. */
function manifestMac(key: Buffer, manifest: BackupManifest): string {
  const {integrity: _integrity, ...rest} = manifest
  return createHmac('sha256', key).update(JSON.stringify(rest)).digest('hex')
}

export async function backupCa(o: {
  configPath: string
  out: string
  /** The backup password: what opens the archive. */
  password: string
  /** The CA password: what signs its manifest (checked against the CA's enrollment key first). */
  caPassword: string
  clock?: () => number
}): Promise<BackupResult> {
  const clock = o.clock ?? Date.now
  const {config} = await loadConfig(o.configPath)
  const dir = config.dir
  const names = await caFiles(dir)
  const created = new Date(clock())
  const file = await outputPath(o.out, created)
  const small = new Map<string, Buffer>()
  for (const n of names) small.set(n, await readFile(join(dir, n)))
  const macKey = manifestKey(
    await openPrivateKey(small.get('secrets/enrollment.key')!.toString('utf8'), o.caPassword, 'the enrollment key'),
  )
  const rootPem = small.get('certs/root_ca.crt')!.toString('utf8')
  const ca: BackupManifest['ca'] = {
    name: config.name,
    rootFingerprint: certFingerprint(pemToDer(rootPem)),
    userCaKey: fingerprintOfLine(small.get('ssh/ssh_user_ca.pub')!.toString('utf8')),
    hostCaKey: fingerprintOfLine(small.get('ssh/ssh_host_ca.pub')!.toString('utf8')),
    intermediateNotAfter: parseCert(small.get('certs/intermediate_ca.crt')!.toString('utf8')).notAfter.toISOString(),
    rootKeyIncluded: small.has('secrets/root_ca.key'),
  }
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(4).toString('hex')}.tmp`)
  let work: string | undefined
  try {
    let store: StoreBackup
    const inputs: ArchiveInput[] = names.map((n) => ({path: n, data: small.get(n)!}))
    if (config.db.type === 'sqlite') {
      const snapshotAt = iso(Math.floor(clock() / 1000))
      const dbPath = resolveInDir(config, config.db.path)
      if (!(await exists(dbPath)))
        throw new SshcaError('ERR_FILE_NOT_FOUND', `the store ${dbPath} does not exist`, {
          hint: 'db.path in ca.yaml names the SQLite file',
        })
      // the store's unsealed snapshot is staged beside the store itself (a folder the backup can write
      // even where the CA directory is read-only, as under the documented unit), never beside the
      // archive: that folder is the one shipped offsite, and a backup killed mid-way leaves its staging
      work = await mkdtemp(join(dirname(dbPath), '.sshca-backup-'))
      const snapshot = join(work, 'snapshot.sqlite')
      store = {
        type: 'sqlite',
        file: SNAPSHOT_PATH,
        snapshotAt,
        method: 'sqlite3_backup',
        ...(await snapshotSqlite(dbPath, snapshot)),
      }
      inputs.push({path: SNAPSHOT_PATH, file: snapshot})
    } else {
      const u = new URL(config.db.url)
      u.password = ''
      store = {type: 'postgresql', included: false, database: u.toString()}
    }
    const manifest: Omit<BackupManifest, 'files'> = {
      format: 'sshca-backup-manifest',
      version: 1,
      createdAt: created.toISOString(),
      ca,
      store,
      external: externalFiles(config),
    }
    const fh = await open(tmp, 'wx', 0o600)
    let full: BackupManifest
    try {
      full = await writeArchive(fh, o.password, manifest as BackupManifest, inputs, (m) => ({
        integrity: {alg: 'HMAC-SHA256', key: 'enrollment-key', mac: manifestMac(macKey, m)},
      }))
      await fh.sync()
    } finally {
      await fh.close()
    }
    if (await exists(file))
      throw new SshcaError('ERR_FILE_EXISTS', `${file} appeared while the backup was written; it was left alone`)
    await rename(tmp, file)
    const {sha256, size} = await hashOf(file)
    await withStore(config, 'admin', (s) =>
      s.recordAdminEvent(
        'ca_backup_created',
        {
          file,
          size,
          sha256,
          store: store.type,
          snapshot_at: store.type === 'sqlite' ? store.snapshotAt : null,
          root_key_included: ca.rootKeyIncluded,
        },
        Math.floor(clock() / 1000),
      ),
    )
    return {file, size, sha256, manifest: full, notes: backupNotes(full)}
  } finally {
    if (work) await rm(work, {recursive: true, force: true})
    await rm(tmp, {force: true})
  }
}

async function hashOf(path: string): Promise<{sha256: string; size: number}> {
  const hash = createHash('sha256')
  let size = 0
  const fh = await open(path, 'r')
  try {
    for await (const chunk of fh.createReadStream({autoClose: false}) as AsyncIterable<Buffer>) {
      hash.update(chunk)
      size += chunk.length
    }
  } finally {
    await fh.close()
  }
  return {sha256: hash.digest('hex'), size}
}

function backupNotes(m: BackupManifest): string[] {
  const notes: string[] = []
  if (m.store.type === 'postgresql') {
    notes.push(
      `the store is in PostgreSQL (${m.store.database}) and is not in this archive: back it up with its own tools, e.g. ` +
        'pg_dump --format=custom --file=sshca-$(date -u +%Y%m%dT%H%M%SZ).pgdump (one consistent snapshot); keep each dump with the archive of the same moment. ' +
        "To restore: pg_restore into an empty database first, then sshca ca restore this archive; the restored CA's first start marks the database restored. " +
        'Replicas that share the database, or a database restored on its own (pg_restore alone): run sshca ca mark-restored before any CA serves from it again',
    )
  }
  for (const e of m.external)
    notes.push(
      `${e.setting} names ${e.path}, outside the archive: ${e.setting === 'audit.file' ? 'ship the audit log elsewhere as it is written' : 'back it up with the database credentials'}`,
    )
  if (!m.ca.rootKeyIncluded)
    notes.push(
      'the root key is not in this CA directory (offline root): the archive restores a CA that serves; keep the offline root key file safe on its own',
    )
  notes.push(
    'the sealed keys in the archive still need the CA password to open: keep that password, and the backup password, apart from the archive',
  )
  return notes
}

// ---------------------------------------------------------------------------------------------------
// restore

const HEX64 = /^[0-9a-f]{64}$/
const ALLOWED = (path: string): boolean =>
  path === 'ca.yaml' ||
  path === SNAPSHOT_PATH ||
  FOLDERS.some((f) => path.startsWith(`${f}/`) && NAME.test(path.slice(f.length + 1)))

const bad = (why: string): SshcaError =>
  new SshcaError('ERR_INPUT', `the backup's manifest is not acceptable: ${why}`, {details: {reason: 'archive_invalid'}})

/** The manifest as a restore needs it; anything else is refused before a file byte is read. */
export function checkManifest(m: unknown): BackupManifest {
  const v = m as BackupManifest
  if (typeof v !== 'object' || v === null || v.format !== 'sshca-backup-manifest')
    throw bad('not an sshca backup manifest')
  if (v.version !== 1) throw bad(`version ${String(v.version)} (a newer sshca made it?)`)
  if (
    !v.ca ||
    !HEX64.test(v.ca.rootFingerprint ?? '') ||
    typeof v.ca.userCaKey !== 'string' ||
    typeof v.ca.hostCaKey !== 'string'
  )
    throw bad('no CA identity')
  if (!Array.isArray(v.files)) throw bad('no file list')
  const seen = new Set<string>()
  for (const f of v.files) {
    if (typeof f?.path !== 'string' || !ALLOWED(f.path))
      throw bad(`a file at ${JSON.stringify(f?.path)}, outside what a CA directory holds`)
    if (seen.has(f.path)) throw bad(`${f.path} twice`)
    seen.add(f.path)
    if (!Number.isSafeInteger(f.size) || f.size < 0 || !HEX64.test(f.sha256 ?? ''))
      throw bad(`${f.path}: bad size or checksum`)
    if (f.path !== SNAPSHOT_PATH && f.size > MAX_SMALL_FILE)
      throw bad(`${f.path} is too large for a key or certificate`)
  }
  for (const r of REQUIRED) if (!seen.has(r)) throw bad(`it lacks ${r}`)
  const s = v.store
  if (s?.type === 'sqlite') {
    if (!seen.has(SNAPSHOT_PATH)) throw bad('a SQLite store without its snapshot')
    if (!Number.isSafeInteger(s.schemaVersion) || s.schemaVersion > SCHEMA_VERSION)
      throw bad(
        `the store's schema version ${String(s.schemaVersion)} is newer than this sshca understands (${SCHEMA_VERSION}): restore with a newer sshca`,
      )
  } else if (s?.type === 'postgresql') {
    if (seen.has(SNAPSHOT_PATH)) throw bad('a PostgreSQL store with a SQLite snapshot')
  } else {
    throw bad('an unknown store type')
  }
  return v
}

export interface RestoreResult {
  dir: string
  config: string
  dryRun: boolean
  createdAt: string
  rootFingerprint: string
  userCaKey: string
  hostCaKey: string
  store: StoreBackup
  rootKeyIncluded: boolean
  /** The manifest's signature: checked with the CA password, or absent (an older archive, --unverified). */
  signature: 'verified' | 'absent'
  /** When `ca restore` ran; the restored CA's first start moves the mark to then. */
  restoredAt: string
  /** Tokens issued before the mark are refused; all of them have expired this long after it. */
  replayWindowSeconds: number
  notes: string[]
  next: string[]
}

/** Verifies what pass 1 kept in memory: the root, the SSH CA keys and ca.yaml agree with the manifest. */
function verifyContents(m: BackupManifest, files: Map<string, Buffer>, dir: string): CaConfig {
  const text = (p: string) => files.get(p)!.toString('utf8')
  let fp: string
  try {
    fp = certFingerprint(pemToDer(text('certs/root_ca.crt')))
  } catch (err) {
    throw bad(`certs/root_ca.crt is not a certificate: ${(err as Error).message}`)
  }
  if (fp !== m.ca.rootFingerprint)
    throw bad(`the root certificate's fingerprint ${fp} is not the manifest's ${m.ca.rootFingerprint}`)
  for (const [path, want] of [
    ['ssh/ssh_user_ca.pub', m.ca.userCaKey],
    ['ssh/ssh_host_ca.pub', m.ca.hostCaKey],
  ] as const) {
    let have: string
    try {
      have = fingerprintOfLine(text(path))
    } catch (err) {
      throw bad(`${path} holds no SSH public key: ${(err as Error).message}`)
    }
    if (have !== want) throw bad(`${path} is ${have}, the manifest says ${want}`)
  }
  for (const [path, body] of files) {
    if (!path.startsWith('secrets/')) continue
    let env: {format?: unknown}
    try {
      env = JSON.parse(body.toString('utf8')) as {format?: unknown}
    } catch {
      throw bad(`${path} is not a sealed key`)
    }
    if (env.format !== 'sshca-encrypted-key') throw bad(`${path} is not a sealed key`)
  }
  try {
    return parseConfig(text('ca.yaml'), join(dir, 'ca.yaml')).config
  } catch (err) {
    throw bad(`its ca.yaml does not load: ${(err as Error).message}`)
  }
}

/** The longest any token this CA accepts lives, plus the leeways around its times. */
export function replayWindowSeconds(config: CaConfig): number {
  const oidc = Math.max(
    DEFAULT_MAX_TOKEN_AGE,
    ...config.provisioners.map((p) => p.maxTokenAge ?? DEFAULT_MAX_TOKEN_AGE),
  )
  return Math.max(oidc, MAX_ENROLLMENT_TTL, MAX_POP_TTL) + LEEWAY_SECONDS + RESTORE_LEEWAY
}

/**
 * The manifest's signature, checked with the CA password before anything is written: an archive whose
 * ca.yaml, keys.json, key files or store snapshot someone changed with the backup password alone (a
 * policy of theirs, a PKCS#11 module of theirs in keys.json) is refused. An archive from before
 * signatures restores only when asked to (`unverified`).
 */
async function verifyIntegrity(
  manifest: BackupManifest,
  kept: Map<string, Buffer>,
  o: {caPassword?: string | undefined; unverified?: boolean | undefined},
): Promise<void> {
  const i = manifest.integrity
  if (!i) {
    if (o.unverified) return
    throw new SshcaError(
      'ERR_INPUT',
      'the archive carries no signature of the CA: it was made before sshca signed backups, or someone with the backup password removed the signature (and may have changed its ca.yaml, keys or store)',
      {
        hint: 'restore it with --unverified only if you know it predates signed backups and trust where it has been kept; then make a new backup',
      },
    )
  }
  if (i.alg !== 'HMAC-SHA256' || i.key !== 'enrollment-key' || typeof i.mac !== 'string' || !HEX64.test(i.mac))
    throw bad('its signature is not one this sshca makes')
  if (o.caPassword === undefined)
    throw new SshcaError('ERR_CA_PASSWORD', 'the archive is signed: the CA password is needed to check it', {
      hint: 'give --ca-password-file (a signed archive is checked with or without --unverified)',
    })
  const enrollment = kept.get('secrets/enrollment.key')!.toString('utf8')
  const key = manifestKey(await openPrivateKey(enrollment, o.caPassword, "the archive's enrollment key"))
  const want = Buffer.from(manifestMac(key, manifest), 'hex')
  if (!timingSafeEqual(want, Buffer.from(i.mac, 'hex')))
    throw bad('its content does not match what the CA signed: someone with the backup password changed it')
}

export async function restoreCa(o: {
  archive: string
  dir: string
  /** The backup password. */
  password: string
  /** The CA password: checks the manifest's signature (and that the archive's keys open with it). */
  caPassword?: string
  /** Restore an archive with no signature (made before sshca signed them): its content is the backup password holder's word. */
  unverified?: boolean
  dryRun?: boolean
  clock?: () => number
}): Promise<RestoreResult> {
  const clock = o.clock ?? Date.now
  const dir = resolve(o.dir)
  if ((await exists(join(dir, 'ca.yaml'))) || (await exists(join(dir, 'secrets')))) {
    throw new SshcaError('ERR_CA_EXISTS', `a CA already exists in ${dir}; a restore never overwrites one`, {
      hint: 'restore into a new directory, then move it into place once it has started',
    })
  }
  if ((await exists(dir)) && (await readdir(dir)).length > 0)
    throw new SshcaError('ERR_CA_EXISTS', `${dir} is not empty`, {hint: 'give --dir a new or empty directory'})

  // pass 1: authenticate every chunk, check every file against the manifest, keep the small files to check them together
  const kept = new Map<string, Buffer>()
  const manifest = await readArchive(o.archive, o.password, checkManifest, async (f) => {
    if (f.path === SNAPSHOT_PATH) return undefined
    const parts: Buffer[] = []
    return {
      write: async (b) => void parts.push(Buffer.from(b)),
      close: async () => void kept.set(f.path, Buffer.concat(parts)),
    }
  })
  const config = verifyContents(manifest, kept, dir)
  await verifyIntegrity(manifest, kept, o)
  const now = Math.floor(clock() / 1000)
  const window = replayWindowSeconds(config)
  const result: RestoreResult = {
    dir,
    config: join(dir, 'ca.yaml'),
    dryRun: o.dryRun === true,
    createdAt: manifest.createdAt,
    rootFingerprint: manifest.ca.rootFingerprint,
    userCaKey: manifest.ca.userCaKey,
    hostCaKey: manifest.ca.hostCaKey,
    store: manifest.store,
    rootKeyIncluded: manifest.ca.rootKeyIncluded,
    signature: manifest.integrity ? 'verified' : 'absent',
    restoredAt: iso(now),
    replayWindowSeconds: window,
    notes: restoreNotes(manifest, config),
    next: [],
  }
  if (o.dryRun) return result

  // pass 2: the same bytes (authenticated and checked again) into a staging directory, renamed into place
  await privateDir(dirname(dir))
  const staging = join(dirname(dir), `.${basename(dir)}.restore-${randomBytes(4).toString('hex')}`)
  try {
    for (const d of [staging, ...FOLDERS.map((f) => join(staging, f)), join(staging, 'db')]) await privateDir(d)
    await readArchive(
      o.archive,
      o.password,
      (m) => {
        const again = checkManifest(m)
        if (JSON.stringify(again) !== JSON.stringify(manifest))
          throw bad('the archive changed between the two readings')
        return again
      },
      async (f) => {
        const fh = await open(join(staging, f.path), 'wx', 0o600)
        return {
          write: async (b) => void (await fh.write(b)),
          close: async () => {
            await fh.sync()
            await fh.close()
          },
        }
      },
    )
    if (manifest.store.type === 'sqlite') {
      const path = join(staging, SNAPSHOT_PATH)
      const check = new DatabaseSync(path)
      try {
        const rows = check.prepare('PRAGMA quick_check').all() as {quick_check: string}[]
        if (rows.length !== 1 || rows[0]!.quick_check !== 'ok')
          throw bad(
            `the store snapshot fails SQLite's quick_check: ${rows
              .map((r) => r.quick_check)
              .join('; ')
              .slice(0, 300)}`,
          )
      } finally {
        check.close()
      }
      // the snapshot itself carries the mark too, in case restore-pending.json is lost before the first start
      const store = new SqliteStore(path, {background: false})
      try {
        await store.markRestored(now)
      } finally {
        await store.close()
      }
      if (config.db.type === 'sqlite' && config.db.path !== SNAPSHOT_PATH) {
        const doc = parseDocument(kept.get('ca.yaml')!.toString('utf8'))
        doc.setIn(['db', 'path'], SNAPSHOT_PATH)
        await writeFileAtomic(join(staging, 'ca.yaml'), doc.toString())
        result.notes.push(
          `db.path was ${config.db.path}; the restored ca.yaml names the restored snapshot, ${SNAPSHOT_PATH}`,
        )
      }
    }
    const pending: RestorePending = {
      format: 'sshca-restore-pending',
      version: 1,
      restoredAt: iso(now),
      archive: {
        createdAt: manifest.createdAt,
        snapshotAt: manifest.store.type === 'sqlite' ? manifest.store.snapshotAt : null,
        store: manifest.store.type,
        rootFingerprint: manifest.ca.rootFingerprint,
      },
    }
    await writeFileAtomic(caPaths(staging).restorePending, `${JSON.stringify(pending, null, 2)}\n`)
    if (await exists(dir)) await rmdir(dir)
    await rename(staging, dir)
  } catch (err) {
    await rm(staging, {recursive: true, force: true})
    throw err
  }
  result.next = [
    "stop the old CA for good if it still runs anywhere: two CAs with one key and two stores each accept the other's spent tokens",
    `sshca ca serve --config ${result.config} --password-file <the CA password>   # its first start closes the replay window`,
    `check: the root fingerprint it prints is ${manifest.ca.rootFingerprint}`,
  ]
  return result
}

function restoreNotes(m: BackupManifest, config: CaConfig): string[] {
  const notes: string[] = []
  const window = replayWindowSeconds(config)
  if (m.store.type === 'sqlite') {
    notes.push(
      `the store is as it was at ${m.store.snapshotAt}: certificates issued, revocations made and tokens spent after that are not in it. ` +
        `Tokens issued before the restored CA first starts are refused (all have expired ${Math.ceil(window / 60)} min after it); ` +
        're-apply revocations made since the snapshot (certificate_revoked in the audit log); hosts that renewed since then renew no more (certificate_unknown): enrol them again with sshca ca token --host',
    )
  } else {
    notes.push(
      `the store is PostgreSQL (${m.store.database}): restore it with pg_restore from the dump taken with this archive before starting the CA; its first start marks the database restored, refusing tokens issued before then. ` +
        'Other replicas serving from that database accept those tokens until then: run sshca ca mark-restored --config <this ca.yaml> right after pg_restore, before any of them serves',
    )
  }
  for (const e of m.external)
    if (e.setting !== 'audit.file')
      notes.push(`${e.setting} named ${e.path} on the old box; it is not in the archive: put it back`)
  if (!m.ca.rootKeyIncluded)
    notes.push('offline root: the archive held no root key; keep using the offline one for sshca ca intermediate')
  return notes
}
