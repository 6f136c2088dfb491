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
import {DatabaseSync, type SQLInputValue, type StatementSync} from 'node:sqlite'
import {SshcaError} from '../../errors.ts'
import {startCheckpointer, type Checkpointer} from './checkpointer.ts'
import {MIGRATIONS, SCHEMA_VERSION} from './migrations.ts'
import {
  beforeRestore,
  type AdminEvent,
  type AdminEventDraft,
  type CertificateQuery,
  type InventorySummary,
  type IssuanceStop,
  type IssueOutcome,
  type IssueRequest,
  type IssuedRecord,
  type Lineage,
  type Revocation,
  type Store,
  type Unrevoked,
  type WebhookAsk,
} from './store.ts'

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
  claims?: string | null
  lineage?: string | null
  parent_serial?: string | null
}

interface RevocationRow {
  id: string
  serial: string | null
  key_id: string | null
  key_fingerprint: string | null
  reason: string
  revoked_at: number | bigint
  cascade_of?: string | null
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
    ...(r.claims ? {claims: JSON.parse(r.claims) as Record<string, unknown>} : {}),
    ...(r.lineage ? {lineage: r.lineage as Lineage['kind']} : {}),
    ...(r.parent_serial ? {parent: BigInt(r.parent_serial)} : {}),
  }
}

export function rowToRevocation(r: RevocationRow): Revocation {
  return {
    id: r.id,
    serial: r.serial === null ? null : BigInt(r.serial),
    keyId: r.key_id,
    keyFingerprint: r.key_fingerprint,
    reason: r.reason,
    revokedAt: Number(r.revoked_at),
    ...(r.cascade_of ? {cascadeOf: r.cascade_of} : {}),
  }
}

/**
 * The serials of every certificate renewed or rekeyed, at any depth, from the certificate with the
 * first parameter's serial or from any certificate of the second's key (NULL: none), those themselves
 * left out. A revocation by serial or key covers them (Store.revokeAll); UNION, so a chain is walked
 * once. The same query on SQLite (`?`) and PostgreSQL (`$1`, `$2`).
 */
export const descendantsSql = (serial: string, key: string): string => `WITH RECURSIVE
  roots(serial) AS (SELECT serial FROM certificates WHERE serial = ${serial} OR key_fingerprint = ${key}),
  descendants(serial) AS (
    SELECT c.serial FROM certificates c JOIN roots r ON c.parent_serial = r.serial
    UNION
    SELECT c.serial FROM certificates c JOIN descendants d ON c.parent_serial = d.serial)
SELECT serial FROM descendants WHERE serial NOT IN (SELECT serial FROM roots)`

/**
 * The certificate a renewal or rekey asked again gets back (Lineage, store.ts): the newest of the key
 * the request certifies (?1), made from the presented parent (?2) by this kind of step (?3), still
 * valid at the issuance's time (?4), and revoked neither by serial (a revocation of an ancestor by serial
 * or key wrote one for it too) nor by its key ID or key. PostgreSQL's sshca_issue (migration 10) asks
 * the same.
 */
export const SUCCESSOR_SQL = `SELECT c.* FROM host_lineages l JOIN certificates c ON c.serial = l.serial
  WHERE l.key_fingerprint = ?1 AND c.key_fingerprint = ?1 AND c.parent_serial = ?2 AND c.lineage = ?3
    AND c.cert_type = 'host' AND c.valid_before > ?4
    AND NOT EXISTS (SELECT 1 FROM revocations r
                    WHERE r.serial = c.serial OR r.key_id = c.key_id OR r.key_fingerprint = c.key_fingerprint)`

/** The revocation written for a descendant of what `root` revokes: by serial, for the same reason and time. */
export const cascadeRevocation = (root: Revocation, serial: bigint): Revocation => ({
  serial,
  keyId: null,
  keyFingerprint: null,
  reason: root.reason,
  revokedAt: root.revokedAt,
  cascadeOf: root.id!,
})

/**
 * The serials that revocations asked for name by serial: a descendant among them needs no revocation
 * written for it (its own stands until it is lifted, and covers what descends from it), so a lineage
 * revoked whole (`ca revoke --subject`) costs one row per certificate, not one per pair of them.
 */
export const revokedBySerial = (rs: Revocation[]): Set<bigint> =>
  new Set(rs.flatMap((r) => (r.serial === null ? [] : [r.serial])))

/**
 * Serials in numeric order: what a revocation's cascade lists, the same on every backend. The sign of
 * the difference orders them (Number() of a bigint keeps its sign, and 0 only for 0, past 2^53 too).
 */
export const numericOrder = (serials: string[]): bigint[] => serials.map((s) => BigInt(s)).sort((a, b) => Number(a - b))

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
  // SQLite's words for the code, then node's message (when they differ)
  return new SshcaError(
    'ERR_STORE_UNAVAILABLE',
    `the store cannot commit: ${message === e.errstr ? message : `${String(e.errstr)}: ${message}`}`,
    {
      cause: err,
      details: {reason: 'store_unavailable'},
    },
  )
}

/** ca.yaml's db.durability: see the comment at the top of this file. */
export type Durability = 'full' | 'normal'

/** valid_before may be 2^64-1 ("forever"), beyond SQLite's signed 64-bit integers: clamp for storage. */
const MAX_I64 = (1n << 63n) - 1n
// Stryker disable next-line EqualityOperator: at MAX_I64 both branches give MAX_I64
export const toDbTime = (v: bigint): bigint => (v > MAX_I64 ? MAX_I64 : v)

interface PendingIssue {
  req: IssueRequest
  resolve: (outcome: IssueOutcome) => void
  reject: (err: unknown) => void
}

/** Applies the migrations this file lacks, in one write transaction (a second opener waits, then sees them). */
export function migrateSqlite(db: DatabaseSync): {from: number; to: number} {
  const version = () => Number((db.prepare('PRAGMA user_version').get() as {user_version: number}).user_version)
  const from = version()
  if (from > SCHEMA_VERSION) {
    throw new SshcaError(
      'ERR_CA_CONFIG',
      `the database is at schema version ${from}, newer than this sshca understands (${SCHEMA_VERSION})`,
      {hint: 'upgrade sshca; never run an older version against a newer database'},
    )
  }
  if (from === SCHEMA_VERSION) return {from, to: from}
  db.exec('BEGIN IMMEDIATE')
  try {
    const current = version()
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue
      for (const sql of m.sqlite) db.exec(sql)
      db.exec(`PRAGMA user_version = ${m.version}`)
    }
    db.exec('COMMIT')
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK')
    throw err
  }
  return {from, to: SCHEMA_VERSION}
}

/** The stored emergency stop; a value this version cannot read still stops (fail closed). */
export function parseStop(text: string): IssuanceStop {
  try {
    const v = JSON.parse(text) as {at?: unknown; reason?: unknown}
    return {
      at: typeof v.at === 'number' ? v.at : 0,
      reason: typeof v.reason === 'string' ? v.reason : 'unreadable stop record',
    }
  } catch {
    return {at: 0, reason: 'unreadable stop record'}
  }
}

/** What every issuance of a transaction is held to before anything else: the stop and the restore mark. */
interface Gate {
  stop: IssuanceStop | null
  restoredAt: number | null
}

/** The refusal the gate gives this issuance, if any. */
function gated(gate: Gate, req: IssueRequest): IssueOutcome | undefined {
  if (gate.stop) return {ok: false, reason: 'stopped', stop: gate.stop}
  if (beforeRestore(req.token.issuedAt, gate.restoredAt))
    return {ok: false, reason: 'before_restore', restoredAt: gate.restoredAt!}
  return undefined
}

const processLocks = new Map<string, Promise<unknown>>()

export class SqliteStore implements Store {
  private readonly db: DatabaseSync
  private readonly path: string
  private readonly stmts: Record<string, StatementSync>
  private readonly pending: PendingIssue[] = []
  private readonly checkpointer: Checkpointer | undefined
  /** True while the checkpointer copies the WAL's last frames (see checkpointer.ts). */
  private held = false

  private readonly onCommit: ((batchSize: number, seconds: number) => void) | undefined

  /**
   * `background: false` for short-lived connections (CLI commands): SQLite checkpoints inline.
   * `onCommit`: told each group commit's size and duration (the metrics).
   */
  constructor(
    path: string,
    o: {
      background?: boolean
      durability?: Durability
      checkpointEveryMs?: number
      onCommit?: (batchSize: number, seconds: number) => void
    } = {},
  ) {
    this.path = path
    this.onCommit = o.onCommit
    this.db = new DatabaseSync(path)
    const synchronous = o.durability === 'normal' ? 'NORMAL' : 'FULL'
    this.db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = ${synchronous}; PRAGMA busy_timeout = 5000;`)
    if (path !== ':memory:' && o.background !== false) {
      this.db.exec('PRAGMA wal_autocheckpoint = 0;')
      this.checkpointer = startCheckpointer(path, (on) => this.hold(on), o.checkpointEveryMs)
    }
    migrateSqlite(this.db)
    const prep = (sql: string): StatementSync => this.db.prepare(sql)
    // certificate rows: valid_before may be 2^63−1 ("forever", clamped), beyond a JavaScript number
    const prepBig = (sql: string): StatementSync => {
      const st = prep(sql)
      st.setReadBigInts(true)
      return st
    }
    this.stmts = {
      begin: prep('BEGIN IMMEDIATE'),
      commit: prep('COMMIT'),
      rollback: prep('ROLLBACK'),
      revokedFor: prep(
        'SELECT * FROM revocations WHERE key_id = ? OR key_fingerprint = ? OR serial = ? ORDER BY revoked_at LIMIT 1',
      ),
      // an issuance: its key ID, its key, and (renewals, rekeys) its parent by serial or by the parent's key
      revokedForIssue: prep(
        'SELECT * FROM revocations WHERE key_id = ? OR key_fingerprint = ? OR key_fingerprint = ? OR serial = ? ORDER BY revoked_at LIMIT 1',
      ),
      descendants: prep(descendantsSql('?', '?')),
      lineage: prep('SELECT serial FROM host_lineages WHERE key_fingerprint = ?'),
      // the host whose lineage a key heads, and whether that head still stands (unexpired, unrevoked)
      lineageOwner: prepBig(
        'SELECT l.serial, c.key_id, c.valid_before, EXISTS (SELECT 1 FROM revocations r WHERE r.serial = l.serial OR r.key_id = c.key_id) AS revoked FROM host_lineages l JOIN certificates c ON c.serial = l.serial WHERE l.key_fingerprint = ?',
      ),
      // the newest certificate of a key, when it is what a renewal (or a rekey) of `parent` made and still
      // stands (unexpired, unrevoked): a renewal or rekey of that parent asked again gets it back
      successor: prepBig(SUCCESSOR_SQL),
      lineageEnd: prep('DELETE FROM host_lineages WHERE key_fingerprint = ?'),
      lineageSet: prep(
        'INSERT INTO host_lineages (key_fingerprint, serial, updated_at) VALUES (?, ?, ?) ON CONFLICT (key_fingerprint) DO UPDATE SET serial = excluded.serial, updated_at = excluded.updated_at',
      ),
      useToken: prep(
        'INSERT INTO used_tokens (token_id, expires_at, used_at, serial) VALUES (?, ?, ?, ?) ON CONFLICT (token_id) DO NOTHING',
      ),
      spentToken: prep('SELECT used_at, serial FROM used_tokens WHERE token_id = ?'),
      record:
        prep(`INSERT INTO certificates (serial, cert_type, key_id, principals, valid_after, valid_before, provisioner, rule_name, subject, key_fingerprint, issued_at, request_id, certificate, claims, lineage, parent_serial)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      find: prepBig('SELECT * FROM certificates WHERE serial = ?'),
      hosts: prepBig(
        'SELECT c.* FROM certificates c JOIN host_lineages l ON l.serial = c.serial WHERE c.valid_before > ? ORDER BY c.issued_at DESC',
      ),
      revoke: prep(
        'INSERT INTO revocations (id, serial, key_id, key_fingerprint, reason, revoked_at, cascade_of) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      revocation: prep('SELECT * FROM revocations WHERE id = ?'),
      cascadeOf: prep('SELECT * FROM revocations WHERE cascade_of = ? ORDER BY revoked_at, id'),
      unrevoke: prep('DELETE FROM revocations WHERE id = ? OR cascade_of = ?'),
      revocations: prep('SELECT * FROM revocations ORDER BY revoked_at, id'),
      purge: prep('DELETE FROM used_tokens WHERE expires_at < ?'),
      purgeAsks: prep('DELETE FROM webhook_asks WHERE expires_at < ?'),
      ask: prep(
        'INSERT INTO webhook_asks (token_id, expires_at, asked_at) VALUES (?, ?, ?) ON CONFLICT (token_id) DO NOTHING',
      ),
      asked: prep('SELECT asked_at FROM webhook_asks WHERE token_id = ?'),
      forgetAsk: prep('DELETE FROM webhook_asks WHERE token_id = ?'),
      adminEvent: prep('INSERT INTO admin_events (at, event, fields) VALUES (?, ?, ?)'),
      adminEvents: prep('SELECT id, at, event, fields FROM admin_events WHERE id > ? ORDER BY id LIMIT ?'),
      cursor: prep("SELECT value FROM meta WHERE key = 'audit_cursor'"),
      bumpGeneration: prep(
        "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'revocation_generation'",
      ),
      generation: prep("SELECT value FROM meta WHERE key = 'revocation_generation'"),
      advance: prep("UPDATE meta SET value = ? WHERE key = 'audit_cursor' AND value = ?"),
      getMeta: prep('SELECT value FROM meta WHERE key = ?'),
      setMeta: prep(
        'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
      ),
      deleteMeta: prep('DELETE FROM meta WHERE key = ?'),
      lastValid: prepBig('SELECT MAX(valid_before) AS last FROM certificates WHERE cert_type = ?'),
      activeCount: prep(
        'SELECT COUNT(*) AS n FROM certificates WHERE cert_type = ? AND valid_before > ? AND valid_after <= ?',
      ),
    }
  }

  /**
   * Group commit: issuances that arrive in the same event-loop turn share one transaction (a commit
   * costs a WAL write, ~60 µs on a VM disk; per-request commits were a fifth of the CA's CPU).
   * Each request is still decided on its own, and sees the ones before it in the batch.
   */
  issue(req: IssueRequest): Promise<IssueOutcome> {
    return new Promise((resolve, reject) => {
      this.pending.push({req, resolve, reject})
      // Stryker disable next-line ConditionalExpression,LogicalOperator: a flush more finds its batch taken, or is refused during a hold (whose release flushes)
      if (this.pending.length === 1 && !this.held) setImmediate(() => this.flush())
    })
  }

  /** The checkpointer's hold (checkpointer.ts): commits queue while it is on; its release flushes them. */
  private hold(on: boolean): void {
    this.held = on
    this.flush()
  }

  private flush(force = false): void {
    if (this.held && !force) return // the release flushes
    const batch = this.pending.splice(0)
    if (batch.length === 0) return
    const results: IssueOutcome[] = []
    const started = performance.now()
    try {
      this.stmts.begin!.run()
      // the stop and the restore mark, read under the write lock: `ca stop-issuance` or `ca restore`
      // writing either from another process waits for this commit, or committed before this read
      const gate = this.gate()
      for (const item of batch) results.push(gated(gate, item.req) ?? this.issueOne(item.req))
      this.stmts.commit!.run()
      this.onCommit?.(batch.length, (performance.now() - started) / 1000)
    } catch (err) {
      this.rollbackQuietly()
      const failure = storeError(err)
      for (const item of batch) item.reject(failure)
      return
    }
    batch.forEach((item, i) => item.resolve(results[i]!))
  }

  /** The emergency stop and the restore mark, as this transaction reads them. */
  private gate(): Gate {
    const stop = this.stmts.getMeta!.get('issuance_stop') as {value: string} | undefined
    const mark = this.stmts.getMeta!.get('restored_at') as {value: string} | undefined
    return {stop: stop ? parseStop(stop.value) : null, restoredAt: mark ? Number(mark.value) : null}
  }

  /** One issuance inside the batch's transaction: nothing is written unless the outcome is ok. */
  private issueOne({token, record: r, lineage}: IssueRequest): IssueOutcome {
    const parent = lineage?.kind === 'renew' || lineage?.kind === 'rekey' ? lineage.parent.toString() : null
    // a rekey's parent is of another key: revoked by that key, it must not rekey (a renewal's is this key)
    const parentKey = lineage?.kind === 'rekey' ? lineage.parentKey : null
    const revoked = this.stmts.revokedForIssue!.get(r.keyId, r.keyFingerprint, parentKey, parent) as
      RevocationRow | undefined
    if (revoked) return {ok: false, reason: 'revoked', revocation: rowToRevocation(revoked)}
    if (lineage?.kind === 'renew' || lineage?.kind === 'rekey') {
      const head = this.stmts.lineage!.get(lineage.kind === 'rekey' ? lineage.parentKey : r.keyFingerprint) as
        {serial: string} | undefined
      if (head?.serial !== parent) {
        // the answer to this very renewal (or rekey onto this key) may have been lost: the newest
        // certificate of the key this request certifies, if it was made from this parent and stands
        const again = this.stmts.successor!.get(r.keyFingerprint, parent, lineage.kind, r.issuedAt) as
          CertRow | undefined
        if (!again) return {ok: false, reason: 'superseded', newest: head?.serial ?? null}
        return (
          this.spend(token, r.issuedAt, again.serial) ?? {
            ok: false,
            reason: 'redelivered',
            certificate: rowToRecord(again),
          }
        )
      }
    }
    const taken = this.keyTaken(r, lineage)
    if (taken) return taken
    const serial = r.serial.toString()
    const replayed = this.spend(token, r.issuedAt, serial)
    if (replayed) return replayed
    this.stmts.record!.run(
      serial,
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
      r.claims ? JSON.stringify(r.claims) : null,
      lineage?.kind ?? null,
      parent,
    )
    // Stryker disable next-line ConditionalExpression: a rekey to the same key ends its lineage and sets it again just below
    if (lineage?.kind === 'rekey' && lineage.parentKey !== r.keyFingerprint)
      this.stmts.lineageEnd!.run(lineage.parentKey)
    if (lineage) this.stmts.lineageSet!.run(r.keyFingerprint, serial, r.issuedAt)
    return {ok: true}
  }

  /** Spends the token on `serial`, in this write transaction; the refusal when it was spent before. */
  private spend(token: IssueRequest['token'], at: number, serial: string): IssueOutcome | undefined {
    if (this.stmts.useToken!.run(token.id, token.expiresAt, at, serial).changes === 1) return undefined
    // the insert met the token's row, in this write transaction: it is there
    const spent = this.stmts.spentToken!.get(token.id) as {used_at: number | bigint | null; serial: string | null}
    return {
      ok: false,
      reason: 'replayed',
      usedAt: spent.used_at === null ? null : Number(spent.used_at),
      serial: spent.serial,
    }
  }

  /**
   * A rekey onto a key that heads another lineage, or an enrolment the admin did not bind to the key
   * onto one that heads another host's: refused, or its host's renewals would be from then on. A head
   * that expired or was revoked holds nothing (no one renews it): a host that stayed away, or a
   * squatter's rekey onto a key before its host enrolled, does not keep the key from its host.
   */
  private keyTaken(r: IssuedRecord, lineage: Lineage | undefined): IssueOutcome | undefined {
    if (lineage?.kind !== 'rekey' && (lineage?.kind !== 'enrol' || lineage.keyBound)) return undefined
    const owner = this.stmts.lineageOwner!.get(r.keyFingerprint) as
      {serial: string; key_id: string; valid_before: bigint; revoked: bigint} | undefined
    if (!owner || owner.revoked !== 0n || owner.valid_before <= BigInt(r.issuedAt)) return undefined
    const other = lineage.kind === 'rekey' ? lineage.parentKey !== r.keyFingerprint : owner.key_id !== r.keyId
    return other ? {ok: false, reason: 'key_in_use', newest: owner.serial} : undefined
  }

  async findCertificate(serial: bigint): Promise<IssuedRecord | undefined> {
    const row = this.stmts.find!.get(serial.toString()) as CertRow | undefined
    return row ? rowToRecord(row) : undefined
  }

  async currentHostCertificates(now: number): Promise<IssuedRecord[]> {
    return (this.stmts.hosts!.all(now) as unknown as CertRow[]).map(rowToRecord)
  }

  async certificates(q: CertificateQuery): Promise<IssuedRecord[]> {
    const where: string[] = []
    const args: SQLInputValue[] = []
    const eq = (column: string, v: string | undefined) => {
      if (v === undefined) return
      where.push(`${column} = ?`)
      args.push(v)
    }
    eq('subject', q.subject)
    eq('key_id', q.keyId)
    eq('key_fingerprint', q.keyFingerprint)
    eq('provisioner', q.provisioner)
    eq('cert_type', q.certType)
    if (q.since !== undefined) {
      where.push('issued_at >= ?')
      args.push(q.since)
    }
    if (q.activeAt !== undefined) {
      where.push('valid_after <= ? AND valid_before > ?')
      args.push(q.activeAt, q.activeAt)
    }
    const sql = `SELECT * FROM certificates${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY issued_at DESC, serial LIMIT ?`
    args.push(q.limit ?? 1000)
    const st = this.db.prepare(sql)
    st.setReadBigInts(true)
    return (st.all(...args) as unknown as CertRow[]).map(rowToRecord)
  }

  async revoke(r: Revocation): Promise<Revocation> {
    return this.transaction(() => this.revokeIn([r], false))[0]!
  }

  /**
   * Inside a transaction: the revocations with their ids, with `descendants` then those of what they
   * cover (Store.revokeAll), and one step of the generation if any. No race to close here: this runs
   * in a write transaction (BEGIN IMMEDIATE), and so does every issuance's check of its parent, and
   * SQLite lets one write transaction run at a time on the file (any process), each reading what the
   * ones before it committed. A renewal is decided wholly before this reads the descendants (and is
   * among them) or wholly after it commits (and finds its parent revoked).
   */
  private revokeIn(rs: Revocation[], descendants: boolean): Revocation[] {
    const write = (r: Revocation): Revocation => {
      const id = randomUUID()
      this.stmts.revoke!.run(
        id,
        r.serial?.toString() ?? null,
        r.keyId,
        r.keyFingerprint,
        r.reason,
        r.revokedAt,
        r.cascadeOf ?? null,
      )
      return {...r, id}
    }
    const saved = rs.map(write)
    if (descendants) {
      const own = revokedBySerial(rs)
      for (const root of saved.slice()) {
        // a key-ID revocation names neither: with two NULLs the query finds no root (= NULL is never true)
        const rows = this.stmts.descendants!.all(root.serial?.toString() ?? null, root.keyFingerprint) as {
          serial: string
        }[]
        for (const serial of numericOrder(rows.map((row) => row.serial)))
          if (!own.has(serial)) saved.push(write(cascadeRevocation(root, serial)))
      }
    }
    if (saved.length > 0) this.stmts.bumpGeneration!.run()
    return saved
  }

  async unrevoke(id: string): Promise<Unrevoked | undefined> {
    return this.transaction(() => this.unrevokeIn(id))
  }

  private unrevokeIn(id: string): Unrevoked | undefined {
    const row = this.stmts.revocation!.get(id) as RevocationRow | undefined
    if (!row) return undefined
    const cascade = (this.stmts.cascadeOf!.all(id) as unknown as RevocationRow[]).map(rowToRevocation)
    this.stmts.unrevoke!.run(id, id)
    this.stmts.bumpGeneration!.run()
    return {...rowToRevocation(row), cascade}
  }

  async revokeAll(rs: Revocation[], event: AdminEventDraft<Revocation[]>): Promise<Revocation[]> {
    return this.transaction(() => {
      const saved = this.revokeIn(rs, true)
      this.adminEventIn(event.event, event.fields(saved), event.at)
      return saved
    })
  }

  async unrevokeWith(id: string, event: AdminEventDraft<Unrevoked>): Promise<Unrevoked | undefined> {
    return this.transaction(() => {
      const r = this.unrevokeIn(id)
      if (r) this.adminEventIn(event.event, event.fields(r), event.at)
      return r
    })
  }

  async revocationSnapshot(): Promise<{generation: number; revocations: Revocation[]}> {
    // a read transaction: `ca revoke` in another process commits before or after both reads
    // (synchronously: no other call on this connection can start between BEGIN and COMMIT)
    this.db.exec('BEGIN')
    try {
      const generation = Number((this.stmts.generation!.get() as {value: string}).value)
      const revocations = (this.stmts.revocations!.all() as unknown as RevocationRow[]).map(rowToRevocation)
      return {generation, revocations}
    } finally {
      this.db.exec('COMMIT')
    }
  }

  async revocationGeneration(): Promise<number> {
    return Number((this.stmts.generation!.get() as {value: string}).value)
  }

  /** Runs `fn` in its own write transaction (admin writes; issuances go through the group commit). */
  private transaction<T>(fn: () => T): T {
    this.flush(true)
    try {
      this.stmts.begin!.run()
      const out = fn()
      this.stmts.commit!.run()
      return out
    } catch (err) {
      this.rollbackQuietly()
      throw storeError(err)
    }
  }

  private rollbackQuietly(): void {
    try {
      this.stmts.rollback!.run()
    } catch {
      // no transaction left: SQLite has rolled back by itself (a full disk or an I/O error during COMMIT)
    }
  }

  async revocations(): Promise<Revocation[]> {
    return (this.stmts.revocations!.all() as unknown as RevocationRow[]).map(rowToRevocation)
  }

  async revocationFor(c: {serial?: bigint; keyId?: string; keyFingerprint?: string}): Promise<Revocation | undefined> {
    const row = this.stmts.revokedFor!.get(c.keyId ?? null, c.keyFingerprint ?? null, c.serial?.toString() ?? null) as
      RevocationRow | undefined
    return row ? rowToRevocation(row) : undefined
  }

  async purgeExpiredTokens(now: number): Promise<number> {
    this.stmts.purgeAsks!.run(now)
    return Number(this.stmts.purge!.run(now).changes)
  }

  async askWebhook(token: {id: string; expiresAt: number}, at: number): Promise<WebhookAsk> {
    return this.transaction(() => {
      const spent = this.stmts.spentToken!.get(token.id) as
        {used_at: number | bigint | null; serial: string | null} | undefined
      if (spent)
        return {
          first: false,
          askedAt: null,
          spent: {usedAt: spent.used_at === null ? null : Number(spent.used_at), serial: spent.serial},
        }
      if (this.stmts.ask!.run(token.id, token.expiresAt, at).changes === 1) return {first: true}
      const row = this.stmts.asked!.get(token.id) as {asked_at: number | bigint}
      return {first: false, askedAt: Number(row.asked_at)}
    })
  }

  async forgetWebhookAsk(id: string): Promise<void> {
    this.stmts.forgetAsk!.run(id)
  }

  async recordAdminEvent(event: string, fields: Record<string, unknown>, at: number): Promise<AdminEvent> {
    return this.transaction(() => this.adminEventIn(event, fields, at))
  }

  private adminEventIn(event: string, fields: Record<string, unknown>, at: number): AdminEvent {
    const r = this.stmts.adminEvent!.run(at, event, JSON.stringify(fields))
    return {id: Number(r.lastInsertRowid), at, event, fields}
  }

  async auditCursor(): Promise<number> {
    return Number((this.stmts.cursor!.get() as {value: string}).value)
  }

  async adminEventsAfter(cursor: number, limit: number): Promise<AdminEvent[]> {
    return (
      this.stmts.adminEvents!.all(cursor, limit) as {
        id: number | bigint
        at: number | bigint
        event: string
        fields: string
      }[]
    ).map((r) => ({
      id: Number(r.id),
      at: Number(r.at),
      event: r.event,
      fields: JSON.parse(r.fields) as Record<string, unknown>,
    }))
  }

  async advanceAuditCursor(from: number, to: number): Promise<boolean> {
    return this.stmts.advance!.run(String(to), String(from)).changes === 1
  }

  async ping(): Promise<void> {
    this.db.prepare('SELECT 1').get()
  }

  async spentToken(id: string): Promise<{usedAt: number | null; serial: string | null} | undefined> {
    const row = this.stmts.spentToken!.get(id) as {used_at: number | bigint | null; serial: string | null} | undefined
    return row ? {usedAt: row.used_at === null ? null : Number(row.used_at), serial: row.serial} : undefined
  }

  async inventorySummary(now: number): Promise<InventorySummary> {
    const one = (type: 'user' | 'host') => {
      const last = (this.stmts.lastValid!.get(type) as {last: bigint | null}).last
      const active = Number((this.stmts.activeCount!.get(type, now, now) as {n: number | bigint}).n)
      return {active, lastValidBefore: last === null ? null : BigInt(last)}
    }
    return {user: one('user'), host: one('host')}
  }

  async restoredAt(): Promise<number | null> {
    const row = this.stmts.getMeta!.get('restored_at') as {value: string} | undefined
    return row ? Number(row.value) : null
  }

  async markRestored(at: number): Promise<number> {
    if (!Number.isSafeInteger(at) || at <= 0) throw new TypeError('markRestored: at must be seconds since the epoch')
    return this.transaction(() => {
      const current = this.stmts.getMeta!.get('restored_at') as {value: string} | undefined
      const mark = Math.max(at, current ? Number(current.value) : 0)
      this.stmts.setMeta!.run('restored_at', String(mark))
      return mark
    })
  }

  async issuanceStop(): Promise<IssuanceStop | null> {
    const row = this.stmts.getMeta!.get('issuance_stop') as {value: string} | undefined
    return row ? parseStop(row.value) : null
  }

  async setIssuanceStop(stop: IssuanceStop | null): Promise<void> {
    this.transaction(() => {
      if (stop) this.stmts.setMeta!.run('issuance_stop', JSON.stringify({at: stop.at, reason: stop.reason}))
      else this.stmts.deleteMeta!.run('issuance_stop')
    })
  }

  /** One process serves a SQLite store: a lock in this process (shared by every connection to the file). */
  async exclusive<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const key = `${this.path}\0${name}`
    const before = processLocks.get(key) ?? Promise.resolve()
    const run = before.then(fn, fn)
    const tail = run.catch(() => undefined)
    processLocks.set(key, tail)
    // Stryker disable next-line ArrowFunction,ConditionalExpression: never dropping the entry only keeps a settled promise the next holder chains to (memory, not order; the comparison stays measured)
    void tail.then(() => processLocks.get(key) === tail && processLocks.delete(key))
    return run
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
