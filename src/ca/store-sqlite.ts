/**
 * The embedded store: node:sqlite in the CA directory, WAL mode, one writer (this process).
 *
 * Durability: `full` (the default) is SQLite's synchronous=FULL, so every commit fsyncs the WAL before
 * it returns: a certificate is handed out only once its record and its spent token are on disk. The
 * group commit below keeps that to one fsync per batch of concurrent issuances. `normal` skips that
 * fsync: a power loss (not a process crash) can drop the last commits, i.e. certificates missing from
 * the inventory and spent tokens forgotten (replayable until they expire).
 */
import {randomUUID} from 'node:crypto'
import {DatabaseSync, type StatementSync} from 'node:sqlite'
import {SshcaError} from '../errors.ts'
import {startCheckpointer, type Checkpointer} from './sqlite-checkpointer.ts'
import {SCHEMA, type IssuedRecord, type Revocation, type Store} from './store.ts'

interface CertRow {
  serial: string
  cert_type: string
  key_id: string
  principals: string
  valid_after: number | bigint
  valid_before: number | bigint
  provisioner: string
  rule_name: string | null
  subject: string | null
  key_fingerprint: string
  issued_at: number | bigint
  request_id: string
  certificate: string
}

export function rowToRecord(r: CertRow): IssuedRecord {
  return {
    serial: BigInt(r.serial),
    certType: r.cert_type as 'user' | 'host',
    keyId: r.key_id,
    principals: JSON.parse(r.principals) as string[],
    validAfter: BigInt(r.valid_after),
    validBefore: BigInt(r.valid_before),
    provisioner: r.provisioner,
    rule: r.rule_name,
    subject: r.subject,
    keyFingerprint: r.key_fingerprint,
    issuedAt: Number(r.issued_at),
    requestId: r.request_id,
    certificate: r.certificate,
  }
}

/** valid_before may be 2^64-1 ("forever"), beyond SQLite's signed 64-bit integers: clamp for storage. */
const MAX_I64 = (1n << 63n) - 1n
export const toDbTime = (v: bigint): bigint => (v > MAX_I64 ? MAX_I64 : v)

/**
 * SQLite's primary result codes that mean "the database cannot be written now" (busy, locked, out of
 * memory, read-only, I/O error, disk full, cannot open, lock protocol): the CA answers 503 and issues
 * nothing; it works again once the cause is gone (space freed, lock released), without a restart.
 */
const UNAVAILABLE = new Set([5, 6, 7, 8, 10, 13, 14, 15])

/** A write that failed for one of those reasons becomes ERR_STORE_UNAVAILABLE; anything else is a bug. */
export function storeError(err: unknown): unknown {
  const e = err as {code?: unknown; errcode?: unknown; errstr?: unknown}
  if (e.code !== 'ERR_SQLITE_ERROR' || typeof e.errcode !== 'number' || !UNAVAILABLE.has(e.errcode & 0xff)) return err
  const message = (err as Error).message
  const why = message === e.errstr ? message : `${String(e.errstr)}: ${message}`
  return new SshcaError('ERR_STORE_UNAVAILABLE', `the store cannot commit: ${why}`, {cause: err, details: {reason: 'store_unavailable'}})
}

/** ca.yaml's db.durability: see the comment at the top of this file. */
export type Durability = 'full' | 'normal'

interface PendingIssue {
  tokenId: string
  tokenExpiresAt: number
  record: IssuedRecord
  resolve: (fresh: boolean) => void
  reject: (err: unknown) => void
}

export class SqliteStore implements Store {
  private readonly db: DatabaseSync
  private readonly stmts: Record<string, StatementSync>
  private readonly pending: PendingIssue[] = []
  private readonly checkpointer: Checkpointer | undefined
  /** True while the checkpointer copies the WAL's last frames (see sqlite-checkpointer.ts). */
  private held = false

  /** `background: false` for short-lived connections (CLI commands): SQLite checkpoints inline. */
  constructor(path: string, o: {background?: boolean; durability?: Durability; checkpointEveryMs?: number} = {}) {
    this.db = new DatabaseSync(path)
    const synchronous = o.durability === 'normal' ? 'NORMAL' : 'FULL'
    this.db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${synchronous}; PRAGMA busy_timeout = 5000;`)
    if (path !== ':memory:' && o.background !== false) {
      this.db.exec('PRAGMA wal_autocheckpoint = 0;')
      this.checkpointer = startCheckpointer(path, (on) => {
        this.held = on
        if (!on && this.pending.length > 0) this.flush()
      }, o.checkpointEveryMs)
    }
    for (const s of SCHEMA) this.db.exec(s)
    const prep = (sql: string): StatementSync => this.db.prepare(sql)
    this.stmts = {
      begin: prep('BEGIN IMMEDIATE'),
      commit: prep('COMMIT'),
      rollback: prep('ROLLBACK'),
      useToken: prep('INSERT INTO used_tokens (token_id, expires_at) VALUES (?, ?) ON CONFLICT (token_id) DO NOTHING'),
      record: prep(`INSERT INTO certificates (serial, cert_type, key_id, principals, valid_after, valid_before, provisioner, rule_name, subject, key_fingerprint, issued_at, request_id, certificate)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      find: prep('SELECT * FROM certificates WHERE serial = ?'),
      hosts: prep("SELECT * FROM certificates WHERE cert_type = 'host' AND valid_before > ? ORDER BY issued_at DESC"),
      revoke: prep('INSERT INTO revocations (id, serial, key_id, reason, revoked_at) VALUES (?, ?, ?, ?, ?)'),
      revocations: prep('SELECT serial, key_id, reason, revoked_at FROM revocations ORDER BY revoked_at'),
      isRevoked: prep('SELECT 1 FROM revocations WHERE serial = ? OR key_id = ? LIMIT 1'),
      purge: prep('DELETE FROM used_tokens WHERE expires_at < ?'),
    }
  }

  /**
   * Group commit: issuances that arrive in the same event-loop turn share one transaction (a commit
   * costs a WAL write, ~60 µs on a VM disk; per-request commits were a fifth of the CA's CPU).
   * Each token is still checked on its own: a spent one records nothing and answers false.
   */
  issue(tokenId: string, tokenExpiresAt: number, record: IssuedRecord): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.pending.push({tokenId, tokenExpiresAt, record, resolve, reject})
      if (this.pending.length === 1 && !this.held) setImmediate(() => this.flush())
    })
  }

  private flush(force = false): void {
    if (this.held && !force) return // the release flushes
    const batch = this.pending.splice(0)
    if (batch.length === 0) return
    const results: boolean[] = []
    try {
      this.stmts.begin!.run()
      for (const item of batch) {
        const fresh = this.stmts.useToken!.run(item.tokenId, item.tokenExpiresAt).changes === 1
        if (fresh) this.insertCertificate(item.record)
        results.push(fresh)
      }
      this.stmts.commit!.run()
    } catch (err) {
      try {
        if (this.db.isTransaction) this.stmts.rollback!.run()
      } catch {
        // SQLite has rolled back by itself (a full disk or an I/O error during COMMIT)
      }
      const failure = storeError(err)
      for (const item of batch) item.reject(failure)
      return
    }
    batch.forEach((item, i) => item.resolve(results[i]!))
  }

  async recordCertificate(r: IssuedRecord): Promise<void> {
    try {
      this.insertCertificate(r)
    } catch (err) {
      throw storeError(err)
    }
  }

  private insertCertificate(r: IssuedRecord): void {
    this.stmts.record!.run(
      r.serial.toString(),
      r.certType,
      r.keyId,
      JSON.stringify(r.principals),
      toDbTime(r.validAfter),
      toDbTime(r.validBefore),
      r.provisioner,
      r.rule,
      r.subject,
      r.keyFingerprint,
      r.issuedAt,
      r.requestId,
      r.certificate,
    )
  }

  async findCertificate(serial: bigint): Promise<IssuedRecord | undefined> {
    const row = this.stmts.find!.get(serial.toString()) as CertRow | undefined
    return row ? rowToRecord(row) : undefined
  }

  async currentHostCertificates(now: number): Promise<IssuedRecord[]> {
    return (this.stmts.hosts!.all(now) as unknown as CertRow[]).map(rowToRecord)
  }

  async revoke(r: Revocation): Promise<void> {
    try {
      this.stmts.revoke!.run(randomUUID(), r.serial?.toString() ?? null, r.keyId, r.reason, r.revokedAt)
    } catch (err) {
      throw storeError(err)
    }
  }

  async revocations(): Promise<Revocation[]> {
    return (this.stmts.revocations!.all() as {serial: string | null; key_id: string | null; reason: string; revoked_at: number}[]).map((r) => ({
      serial: r.serial === null ? null : BigInt(r.serial),
      keyId: r.key_id,
      reason: r.reason,
      revokedAt: Number(r.revoked_at),
    }))
  }

  async isRevoked(serial: bigint, keyId: string): Promise<boolean> {
    return this.stmts.isRevoked!.get(serial.toString(), keyId) !== undefined
  }

  async purgeExpiredTokens(now: number): Promise<number> {
    return Number(this.stmts.purge!.run(now).changes)
  }

  async close(): Promise<void> {
    this.flush(true)
    await this.checkpointer?.stop()
    if (this.db.isOpen) {
      if (this.checkpointer) this.db.exec('PRAGMA wal_checkpoint(PASSIVE)')
      this.db.close()
    }
  }
}
