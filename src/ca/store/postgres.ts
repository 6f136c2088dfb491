/**
 * The store for N replicas: one PostgreSQL shared by every `ca serve`, through node-postgres (`pg`).
 * Same semantics as SqliteStore, decided by the database rather than by one writer process:
 * - issue(): the revocation check, the lineage compare-and-swap, the token spend and the record are
 *   one call of the `sshca_issue(jsonb)` function (migrations.ts), so one transaction and, with group
 *   commit (every issuance that arrives in one event-loop turn shares one call), one round trip for a
 *   whole batch. A token raced to several replicas: the spent-token primary key lets one commit win.
 * - every wait is bounded: connecting and each statement take at most `db.timeout`; a database that
 *   is down or unreachable becomes ERR_STORE_UNAVAILABLE (503, fail closed), and the pool reconnects
 *   by itself once it is back.
 * - admin events get their ids in commit order (an advisory lock around the insert), so a replica
 *   reading "after the cursor" never skips an event that commits late.
 */
import {createHash, randomUUID} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import pg from 'pg'
import {SshcaError} from '../../errors.ts'
import {assertPrivateFile} from '../../util/fs.ts'
import {parsePostgresUrl, resolveInDir, type CaConfig, type PostgresDbConfig} from '../config/config.ts'
import {MIGRATIONS, SCHEMA_VERSION} from './migrations.ts'
import {
  cascadeRevocation,
  descendantsSql,
  numericOrder,
  parseStop,
  revokedBySerial,
  rowToRecord,
  toDbTime,
} from './sqlite.ts'
import {
  RESTORE_LEEWAY,
  type AdminEvent,
  type AdminEventDraft,
  type CertificateQuery,
  type InventorySummary,
  type IssuanceStop,
  type IssueOutcome,
  type IssueRequest,
  type IssuedRecord,
  type Revocation,
  type Store,
  type Unrevoked,
  type WebhookAsk,
} from './store.ts'

type PoolConfig = pg.PoolConfig

/** An advisory lock key (one signed 64-bit space per database) for a purpose: the first 8 bytes of SHA-256("sshca:" + name). */
const lockKey = (name: string): string =>
  createHash('sha256').update(`sshca:${name}`).digest().readBigInt64BE(0).toString()
const LOCK = {migrate: lockKey('migrate'), adminEvents: lockKey('admin-events')} as const
/** The key of `exclusive(name)`'s advisory lock (tests hold it from another session). */
export const exclusiveLockKey = (name: string): string => lockKey(`exclusive:${name}`)
/** How many db.timeout exclusive() waits for a lock another process holds. */
export const LOCK_WAIT_TIMEOUTS = 6

/**
 * What makes the database unusable right now rather than a bug: no connection (refused, reset,
 * timed out, DNS), the server shutting down or starting (57P0x), out of resources (53xxx), a
 * read-only standby after a failover (25006), a lost connection (08xxx), a statement cancelled by
 * statement_timeout (57014). Serialization failures and deadlocks (40001, 40P01) are retried first.
 */
export function isUnavailable(err: unknown): boolean {
  const e = err as {code?: unknown; message?: unknown}
  const code = typeof e.code === 'string' ? e.code : ''
  // SC001: sshca_issue_gated at another isolation level than read committed (a misconfigured database)
  if (/^(08|53|57P0|40)/.test(code) || code === '25006' || code === '57014' || code === 'SC001') return true
  if (
    [
      'ECONNREFUSED',
      'ECONNRESET',
      'ETIMEDOUT',
      'EPIPE',
      'ENOTFOUND',
      'EAI_AGAIN',
      'EHOSTUNREACH',
      'ENETUNREACH',
      'ENOENT',
    ].includes(code)
  )
    return true
  // TLS to the database failed (an unknown CA, a wrong name, a server without TLS): unreachable, safely
  if (/^(ERR_TLS_|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|CERT_)/.test(code)) return true
  const m = typeof e.message === 'string' ? e.message : ''
  return /The server does not support SSL connections|Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|Connection ended|the database system is (starting up|shutting down)/i.test(
    m,
  )
}

/** ERR_STORE_UNAVAILABLE for an outage (503), the error itself otherwise (a bug: 500). */
export function storeError(err: unknown): unknown {
  if (err instanceof SshcaError) return err
  if (!isUnavailable(err)) return err
  const m = (err as Error).message
  return new SshcaError('ERR_STORE_UNAVAILABLE', `the database is unavailable: ${m}`, {
    cause: err,
    details: {reason: 'store_unavailable'},
  })
}

const retryable = (err: unknown): boolean => ['40001', '40P01'].includes(String((err as {code?: unknown}).code))

/** pg options for db: in ca.yaml: the password from its file or $PGPASSWORD, TLS files read here. */
export async function pgConfig(
  config: Pick<CaConfig, 'db' | 'dir'> & {db: PostgresDbConfig},
  poolSize: number,
): Promise<PoolConfig> {
  const db = config.db
  let target: ReturnType<typeof parsePostgresUrl>
  try {
    target = parsePostgresUrl(db.url)
  } catch (err) {
    throw new SshcaError('ERR_CA_CONFIG', `db.url ${(err as Error).message}`)
  }
  let password: string | undefined
  if (db.passwordFile !== undefined) {
    const path = resolveInDir(config, db.passwordFile)
    try {
      await assertPrivateFile(path)
      password = (await readFile(path, 'utf8')).split(/\r?\n/)[0]
    } catch (err) {
      if (err instanceof SshcaError) throw err
      throw new SshcaError(
        'ERR_FILE_NOT_FOUND',
        `db.passwordFile: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
        {cause: err},
      )
    }
  } else if (process.env.PGPASSWORD !== undefined) {
    password = process.env.PGPASSWORD
  }
  const socket = target.host.startsWith('/')
  const mode = db.tls.mode ?? (socket ? 'disable' : 'verify-full')
  const file = async (p: string | undefined): Promise<string | undefined> =>
    p === undefined ? undefined : readFile(resolveInDir(config, p), 'utf8')
  let ssl: PoolConfig['ssl'] = false
  if (mode !== 'disable') {
    const [ca, cert, key] = await Promise.all([file(db.tls.ca), file(db.tls.cert), file(db.tls.key)])
    ssl = {
      ...(ca ? {ca} : {}),
      ...(cert ? {cert} : {}),
      ...(key ? {key} : {}),
      rejectUnauthorized: mode !== 'require',
      // verify-ca: the chain, not the name
      ...(mode === 'verify-ca' ? {checkServerIdentity: () => undefined} : {}),
    }
  }
  const timeoutMs = db.timeout * 1000
  return {
    host: target.host,
    port: target.port,
    ...(target.user !== undefined ? {user: target.user} : {}),
    ...(target.database !== undefined ? {database: target.database} : {}),
    ...(password !== undefined ? {password} : {}),
    application_name: target.applicationName ?? 'sshca',
    ssl,
    max: poolSize,
    connectionTimeoutMillis: timeoutMs,
    // server side: a statement (or a lock wait) never outlives the request; client side: neither does
    // waiting for an answer from a server that stopped answering (the connection is then dropped)
    statement_timeout: timeoutMs,
    query_timeout: timeoutMs + 500,
    idle_in_transaction_session_timeout: timeoutMs * 2,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
  }
}

interface RevocationRow {
  id: string
  serial: string | null
  key_id: string | null
  key_fingerprint: string | null
  reason: string
  revoked_at: string | number
  cascade_of?: string | null
}

function rowToRevocation(r: RevocationRow): Revocation {
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

type Outcome =
  | {outcome: 'ok'}
  | {outcome: 'revoked'; revocation: RevocationRow}
  | {outcome: 'superseded'; newest: string | null}
  /** The certificates row as sshca_issue read it (migration 10), its times as text. */
  | {outcome: 'redelivered'; certificate: Record<string, unknown>}
  | {outcome: 'key_in_use'; newest: string}
  | {outcome: 'replayed'; used_at: number | null; serial: string | null}
  | {outcome: 'stopped'; stop: string}
  | {outcome: 'before_restore'; restored_at: string}

function toOutcome(o: Outcome): IssueOutcome {
  switch (o.outcome) {
    case 'ok':
      return {ok: true}
    case 'revoked':
      return {ok: false, reason: 'revoked', revocation: rowToRevocation(o.revocation)}
    case 'superseded':
      return {ok: false, reason: 'superseded', newest: o.newest}
    case 'redelivered':
      return {ok: false, reason: 'redelivered', certificate: rowToRecord(o.certificate as never)}
    case 'key_in_use':
      return {ok: false, reason: 'key_in_use', newest: o.newest}
    case 'replayed':
      return {ok: false, reason: 'replayed', usedAt: o.used_at === null ? null : Number(o.used_at), serial: o.serial}
    case 'stopped':
      return {ok: false, reason: 'stopped', stop: parseStop(o.stop)}
    case 'before_restore':
      return {ok: false, reason: 'before_restore', restoredAt: Number(o.restored_at)}
  }
}

// eslint-disable-next-line no-control-regex -- the point: what PostgreSQL's text and jsonb cannot hold
const NOT_STORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g

/**
 * A string as PostgreSQL can store it. Its text and jsonb hold no U+0000 and no lone surrogate (half
 * of a UTF-16 pair, which has no UTF-8 form), and one such value in a group commit's `$1::jsonb`
 * failed every issuance of the batch. Each is written as its JSON escape, six characters (`\u0000`,
 * `\udXXX`): what the claims column, a JSON text, already holds for them, so the inventory still
 * shows where they were. Every other string is kept as it is (a string that already spelled such an
 * escape reads the same: the inventory records, it does not decide).
 */
export function pgStorable(value: string): string {
  return value.replace(NOT_STORABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** JSON for PostgreSQL: every string value in it made storable (pgStorable). */
export function pgJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'string' ? pgStorable(v) : v))
}

/** One issuance as sshca_issue reads it (a test holds another replica's issuance open with it). */
export function batchItem({token, record: r, lineage}: IssueRequest): Record<string, unknown> {
  return {
    token_id: token.id,
    expires_at: String(token.expiresAt),
    // not a whole number: null, which sshca_issue_gated holds to be before any restore mark
    token_issued_at: Number.isSafeInteger(token.issuedAt) ? String(token.issuedAt) : null,
    lineage: lineage?.kind ?? null,
    parent: lineage?.kind === 'renew' || lineage?.kind === 'rekey' ? lineage.parent.toString() : null,
    parent_key: lineage?.kind === 'rekey' ? lineage.parentKey : null,
    key_bound: lineage?.kind === 'enrol' ? Boolean(lineage.keyBound) : null,
    record: {
      serial: r.serial.toString(),
      cert_type: r.certType,
      key_id: r.keyId,
      principals: JSON.stringify(r.principals),
      valid_after: toDbTime(r.validAfter).toString(),
      valid_before: toDbTime(r.validBefore).toString(),
      provisioner: r.provisioner,
      rule_name: r.rule,
      subject: r.subject,
      key_fingerprint: r.keyFingerprint,
      issued_at: String(r.issuedAt),
      request_id: r.requestId,
      certificate: r.certificate,
      claims: r.claims ? JSON.stringify(r.claims) : null,
    },
  }
}

/**
 * The issuance gate: every issuance transaction holds it shared (sshca_issue_gated, migration 6) while
 * it reads the stop and the restore mark and commits; a stop or a mark is written holding it
 * exclusively. So the write waits for the issuances that read the old state, and those after it
 * (each of sshca_issue_gated's statements takes a new snapshot once the lock is granted) read the new.
 */
async function closeGate(c: pg.PoolClient): Promise<void> {
  await c.query("SELECT pg_advisory_xact_lock(hashtextextended('sshca issuance gate', 0))")
}

interface PendingIssue {
  req: IssueRequest
  resolve: (outcome: IssueOutcome) => void
  reject: (err: unknown) => void
  /** performance.now() past which no statement of it may start: its call's wait (a connection, then a statement) would run over. */
  lastStart: number
}

/**
 * Applies the migrations the database lacks, in one transaction under an advisory lock: replicas
 * starting at once wait for the first, then find nothing left to do. Refuses a newer schema.
 */
export async function migratePostgres(client: pg.ClientBase, apply = true): Promise<{from: number; to: number}> {
  await client.query('BEGIN ISOLATION LEVEL READ COMMITTED')
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [LOCK.migrate])
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())`)
    const from = Number(
      (await client.query<{v: number | null}>('SELECT max(version) AS v FROM schema_migrations')).rows[0]?.v ?? 0,
    )
    if (from > SCHEMA_VERSION) {
      throw new SshcaError(
        'ERR_CA_CONFIG',
        `the database is at schema version ${from}, newer than this sshca understands (${SCHEMA_VERSION})`,
        {hint: 'upgrade sshca; never run an older version against a newer database'},
      )
    }
    if (from < SCHEMA_VERSION && !apply) {
      throw new SshcaError(
        'ERR_CA_CONFIG',
        `the database is at schema version ${from}; this sshca needs ${SCHEMA_VERSION}`,
        {hint: 'apply the migrations: sshca ca migrate --config ca.yaml (db.autoMigrate is false)'},
      )
    }
    for (const m of MIGRATIONS) {
      if (m.version <= from) continue
      for (const sql of m.postgresql) await client.query(sql)
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name])
    }
    await client.query('COMMIT')
    return {from, to: SCHEMA_VERSION}
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined)
    throw err
  }
}

/**
 * Refuses a database whose sessions default to another isolation level than READ COMMITTED. Every
 * lock of this store (the issuance gate, the host lineages', the per-key ones of sshca_issue) is
 * argued under it: a statement that waited for a lock sees what committed while it waited. Under
 * REPEATABLE READ or SERIALIZABLE the snapshot is taken before the wait, and a stop, a restore mark or
 * a revocation that committed meanwhile would go unseen. An issuance is one statement in a transaction
 * of its own, at the default level, so the default is what must hold.
 */
async function requireReadCommitted(client: pg.PoolClient): Promise<void> {
  const {rows} = await client.query<{level: string}>("SELECT current_setting('transaction_isolation') AS level")
  const level = rows[0]?.level
  if (level !== 'read committed')
    throw new SshcaError(
      'ERR_CA_CONFIG',
      `the database's sessions default to the isolation level "${level}": sshca's locking needs "read committed" (PostgreSQL's default)`,
      {
        hint: "ALTER ROLE <sshca's role> SET default_transaction_isolation = 'read committed' (or reset it in postgresql.conf)",
      },
    )
}

/** One step forward of the revocations' generation (the KRL's version). */
const BUMP_GENERATION = "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'revocation_generation'"

/**
 * The host lineages' lock (migration 7): sshca_issue takes it shared for every issuance with a
 * lineage, before its per-key locks and its revocation check; revokeAll takes it exclusively before
 * it reads the descendants to revoke. See revokeIn.
 */
const LINEAGES_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('sshca host lineages', 0))"
const DESCENDANTS = descendantsSql('$1', '$2')

export class PostgresStore implements Store {
  private readonly pool: pg.Pool
  private readonly pending: PendingIssue[] = []
  private closed = false
  private readonly onCommit: ((batchSize: number, seconds: number) => void) | undefined

  private constructor(pool: pg.Pool, onCommit?: (batchSize: number, seconds: number) => void) {
    this.pool = pool
    this.onCommit = onCommit
  }

  /** Connects (the first connection proves the database is there), migrates unless told not to, and keeps a pool. */
  /** `onCommit`: told each group commit's size and duration, round trip included (the metrics). */
  static async open(
    options: PoolConfig,
    o: {migrate?: boolean; onCommit?: (batchSize: number, seconds: number) => void} = {},
  ): Promise<PostgresStore> {
    const pool = new pg.Pool(options)
    // an idle connection the server closes (restart, failover) emits here; the pool drops it and
    // connects anew on the next query. Without a listener it would crash the process.
    pool.on('error', () => undefined)
    try {
      const client = await pool.connect()
      try {
        await requireReadCommitted(client)
        await migratePostgres(client, o.migrate !== false)
      } finally {
        client.release()
      }
    } catch (err) {
      await pool.end().catch(() => undefined)
      throw storeError(err)
    }
    return new PostgresStore(pool, o.onCommit)
  }

  private async query<R extends pg.QueryResultRow>(
    text: string,
    values: unknown[] = [],
    name?: string,
  ): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(name ? {name, text, values} : {text, values})
    } catch (err) {
      throw storeError(err)
    }
  }

  /** Runs `fn` in one transaction on one connection; a lost connection is dropped, not returned to the pool. */
  private async transaction<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient
    try {
      client = await this.pool.connect()
    } catch (err) {
      throw storeError(err)
    }
    let broken: Error | undefined
    try {
      // READ COMMITTED whatever the server's default: the locks' arguments need a fresh snapshot per statement
      await client.query('BEGIN ISOLATION LEVEL READ COMMITTED')
      // a revocation is as durable as an issuance, whatever the server's default
      await client.query(
        "SELECT set_config('synchronous_commit', 'on', true) WHERE current_setting('synchronous_commit') = 'off'",
      )
      const out = await fn(client)
      await client.query('COMMIT')
      return out
    } catch (err) {
      await client.query('ROLLBACK').catch((e: Error) => (broken = e))
      if (isUnavailable(err)) broken ??= err as Error
      throw storeError(err)
    } finally {
      client.release(broken)
    }
  }

  /**
   * Group commit: issuances that arrive in one event-loop turn go to the database as one call of
   * sshca_issue, one transaction, one round trip (and one WAL flush). Batches of successive turns
   * may be in flight together, each on its own connection: the database orders them.
   */
  issue(req: IssueRequest): Promise<IssueOutcome> {
    if (this.closed)
      return Promise.reject(
        new SshcaError('ERR_STORE_UNAVAILABLE', 'the store is closed', {details: {reason: 'store_unavailable'}}),
      )
    // a call waits up to db.timeout for a connection, then db.timeout (and half a second) for its
    // statement: config.ts's storeWaitSeconds, which the request's own deadlines count on. A retry (a
    // deadlock) or the item-by-item path after a refused batch sends statements again: one that could
    // not end within that wait is not sent (nothing of the issuance is written, its token unspent)
    const lastStart = performance.now() + this.timeoutMs
    return new Promise((resolve, reject) => {
      this.pending.push({req, resolve, reject, lastStart})
      if (this.pending.length === 1) setImmediate(() => void this.flush())
    })
  }

  /** db.timeout (ms): the pool's wait for a connection, and the server's statement_timeout. */
  private get timeoutMs(): number {
    return this.pool.options.connectionTimeoutMillis ?? 5000
  }

  /** The items of `batch` a statement sent now may still serve; the others fail, nothing of them written. */
  private inTime(batch: PendingIssue[]): PendingIssue[] {
    const now = performance.now()
    const late = batch.filter((b) => now > b.lastStart)
    for (const b of late)
      b.reject(
        new SshcaError(
          'ERR_STORE_UNAVAILABLE',
          `the database did not record the issuance within db.timeout (${this.timeoutMs / 1000}s for a connection, as long for its statement), retries included; nothing of it is written`,
          {details: {reason: 'store_unavailable'}},
        ),
      )
    return late.length === 0 ? batch : batch.filter((b) => !late.includes(b))
  }

  private async flush(): Promise<void> {
    const batch = this.pending.splice(0)
    if (batch.length === 0) return
    await this.issueBatch(batch)
  }

  private async issueBatch(all: PendingIssue[], again = false): Promise<void> {
    let batch = all
    for (let attempt = 0; ; attempt++) {
      // the first statement of a call is the one its wait counts; any other, only in time
      if (again || attempt > 0) batch = this.inTime(batch)
      if (batch.length === 0) return
      let client: pg.PoolClient | undefined
      try {
        if (again || attempt > 0) {
          // a retry waits for a connection again (up to db.timeout, a pool all taken): its statement
          // starts once it has one, so the rule is checked then, not only before the wait
          client = await this.pool.connect()
          batch = this.inTime(batch)
          if (batch.length === 0) return
        }
        const payload = pgJson(batch.map((b) => batchItem(b.req)))
        const started = performance.now()
        const res = await (client ?? this.pool).query<{out: Outcome[]}>({
          name: 'sshca_issue_gated',
          text: 'SELECT sshca_issue_gated($1::jsonb, $2) AS out',
          values: [payload, RESTORE_LEEWAY],
        })
        this.onCommit?.(batch.length, (performance.now() - started) / 1000)
        const outs = res.rows[0]!.out
        batch.forEach((item, i) => item.resolve(toOutcome(outs[i]!)))
        return
      } catch (err) {
        // given back before another attempt takes one (a pool of one would wait on itself); a
        // connection that failed under its statement is dropped, not handed to the next call
        client?.release(isUnavailable(err) && !retryable(err) ? (err as Error) : undefined)
        client = undefined
        // a deadlock between two replicas' batches (one locked a lineage, the other a token) rolled
        // this one back whole: nothing of it was written, so it is safe to send again
        if (retryable(err) && attempt < 3) continue
        // the call wrote nothing, and the database refused something in it (a value, a constraint) that
        // one item may have brought: each alone then, so one bad issuance fails only itself, not the
        // others that shared its turn (in their order: two renewals of one lineage stay first-wins)
        if (batch.length > 1 && !retryable(err) && !isUnavailable(err)) {
          for (const item of batch) await this.issueBatch([item], true)
          return
        }
        const e = storeError(err)
        for (const item of batch) item.reject(e)
        return
      } finally {
        client?.release()
      }
    }
  }

  async findCertificate(serial: bigint): Promise<IssuedRecord | undefined> {
    const {rows} = await this.query(
      'SELECT * FROM certificates WHERE serial = $1',
      [serial.toString()],
      'find_certificate',
    )
    return rows[0] ? rowToRecord(rows[0] as never) : undefined
  }

  async currentHostCertificates(now: number): Promise<IssuedRecord[]> {
    const {rows} = await this.query(
      'SELECT c.* FROM certificates c JOIN host_lineages l ON l.serial = c.serial WHERE c.valid_before > $1 ORDER BY c.issued_at DESC',
      [now],
    )
    return rows.map((r) => rowToRecord(r as never))
  }

  async certificates(q: CertificateQuery): Promise<IssuedRecord[]> {
    const where: string[] = []
    const args: unknown[] = []
    const arg = (v: unknown): string => {
      args.push(v)
      return `$${args.length}`
    }
    const eq = (column: string, v: string | undefined) => {
      if (v !== undefined) where.push(`${column} = ${arg(v)}`)
    }
    eq('subject', q.subject)
    eq('key_id', q.keyId)
    eq('key_fingerprint', q.keyFingerprint)
    eq('provisioner', q.provisioner)
    eq('cert_type', q.certType)
    if (q.since !== undefined) where.push(`issued_at >= ${arg(q.since)}`)
    if (q.activeAt !== undefined) where.push(`valid_after <= ${arg(q.activeAt)} AND valid_before > ${arg(q.activeAt)}`)
    const sql = `SELECT * FROM certificates${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY issued_at DESC, serial COLLATE "C" LIMIT ${arg(q.limit ?? 1000)}`
    const {rows} = await this.query(sql, args)
    return rows.map((r) => rowToRecord(r as never))
  }

  async revoke(r: Revocation): Promise<Revocation> {
    return (await this.transaction((c) => this.revokeIn(c, [r], false)))[0]!
  }

  /**
   * Inside a transaction: the revocations with their ids, with `descendants` then those of what they
   * cover (Store.revokeAll), and one step of the generation if any.
   *
   * The race with a renewal or rekey committing meanwhile on any replica, closed by one lock. Under
   * READ COMMITTED (PostgreSQL's default, which this store's locking assumes, as migration 5's
   * per-key locks do) each statement sees what was committed when it began, so a plain check can miss
   * a revocation that commits between the check and the issuance's commit, and a plain read of the
   * descendants can miss a renewal that commits just after it. So: sshca_issue takes the lineages'
   * lock shared (issuances do not wait for each other) and only then, in later statements, checks
   * the revocations of the parent; this takes it exclusively before it reads the descendants, and
   * both hold it to their commit. Either the issuance holds it first: this waits for its commit, then
   * its descendants query, a later statement, sees the new certificate and revokes it. Or this holds
   * it first: the issuance waits for this commit, then its check sees the parent's revocation
   * (written here as a row by serial, or the parent's key) and refuses. A lock is released only once
   * its transaction's commit is visible to others. No deadlock: nothing else this transaction locks
   * (the generation's row, the admin events' lock) is ever held by an issuance.
   */
  private async revokeIn(c: pg.PoolClient, rs: Revocation[], descendants: boolean): Promise<Revocation[]> {
    const write = async (r: Revocation): Promise<Revocation> => {
      const id = randomUUID()
      await c.query(
        'INSERT INTO revocations (id, serial, key_id, key_fingerprint, reason, revoked_at, cascade_of) VALUES ($1, $2, $3, $4, $5, $6, $7)',
        [id, r.serial?.toString() ?? null, r.keyId, r.keyFingerprint, r.reason, r.revokedAt, r.cascadeOf ?? null],
      )
      return {...r, id}
    }
    if (descendants) await c.query(LINEAGES_LOCK)
    const saved: Revocation[] = []
    for (const r of rs) saved.push(await write(r))
    if (descendants) {
      const own = revokedBySerial(rs)
      for (const root of saved.slice()) {
        // a key-ID revocation names neither: with two NULLs the query finds no root (= NULL is never true)
        const {rows} = await c.query<{serial: string}>(DESCENDANTS, [
          root.serial?.toString() ?? null,
          root.keyFingerprint,
        ])
        for (const serial of numericOrder(rows.map((row) => row.serial)))
          if (!own.has(serial)) saved.push(await write(cascadeRevocation(root, serial)))
      }
    }
    if (saved.length > 0) await c.query(BUMP_GENERATION)
    return saved
  }

  async unrevoke(id: string): Promise<Unrevoked | undefined> {
    return this.transaction((c) => this.unrevokeIn(c, id))
  }

  private async unrevokeIn(c: pg.PoolClient, id: string): Promise<Unrevoked | undefined> {
    const {rows} = await c.query<RevocationRow>(
      'DELETE FROM revocations WHERE id = $1 OR cascade_of = $1 RETURNING *',
      [id],
    )
    const root = rows.find((r) => r.id === id)
    if (!root) return undefined
    await c.query(BUMP_GENERATION)
    const cascade = rows
      .filter((r) => r.id !== id)
      .sort((a, b) => Number(a.revoked_at) - Number(b.revoked_at) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map(rowToRevocation)
    return {...rowToRevocation(root), cascade}
  }

  async revokeAll(rs: Revocation[], event: AdminEventDraft<Revocation[]>): Promise<Revocation[]> {
    return this.transaction(async (c) => {
      const saved = await this.revokeIn(c, rs, true)
      await this.adminEventIn(c, event.event, event.fields(saved), event.at)
      return saved
    })
  }

  async unrevokeWith(id: string, event: AdminEventDraft<Unrevoked>): Promise<Unrevoked | undefined> {
    return this.transaction(async (c) => {
      const r = await this.unrevokeIn(c, id)
      if (r) await this.adminEventIn(c, event.event, event.fields(r), event.at)
      return r
    })
  }

  async revocations(): Promise<Revocation[]> {
    const {rows} = await this.query<RevocationRow>('SELECT * FROM revocations ORDER BY revoked_at, id COLLATE "C"')
    return rows.map(rowToRevocation)
  }

  /** One statement, one snapshot. */
  async revocationSnapshot(): Promise<{generation: number; revocations: Revocation[]}> {
    const {rows} = await this.query<{generation: string; revocations: RevocationRow[]}>(
      `SELECT (SELECT value FROM meta WHERE key = 'revocation_generation') AS generation,
              COALESCE((SELECT json_agg(r ORDER BY r.revoked_at, r.id COLLATE "C") FROM revocations r), '[]'::json) AS revocations`,
    )
    return {generation: Number(rows[0]!.generation), revocations: rows[0]!.revocations.map(rowToRevocation)}
  }

  async revocationGeneration(): Promise<number> {
    const {rows} = await this.query<{value: string}>("SELECT value FROM meta WHERE key = 'revocation_generation'")
    return Number(rows[0]!.value)
  }

  async revocationFor(c: {serial?: bigint; keyId?: string; keyFingerprint?: string}): Promise<Revocation | undefined> {
    const {rows} = await this.query<RevocationRow>(
      'SELECT * FROM revocations WHERE key_id = $1 OR key_fingerprint = $2 OR serial = $3 ORDER BY revoked_at, id COLLATE "C" LIMIT 1',
      [c.keyId ?? null, c.keyFingerprint ?? null, c.serial?.toString() ?? null],
      'revocation_for',
    )
    return rows[0] ? rowToRevocation(rows[0]) : undefined
  }

  /** Idempotent: replicas purging at once delete each row once between them. */
  async purgeExpiredTokens(now: number): Promise<number> {
    await this.query('DELETE FROM webhook_asks WHERE expires_at < $1', [now])
    return (await this.query('DELETE FROM used_tokens WHERE expires_at < $1', [now])).rowCount ?? 0
  }

  async askWebhook(token: {id: string; expiresAt: number}, at: number): Promise<WebhookAsk> {
    // one statement: of two replicas asking at once, the second's insert waits for the first's commit,
    // then does nothing (its snapshot may not show the first's row: askedAt null then)
    const {rows} = await this.query(
      `WITH spent AS (SELECT used_at, serial FROM used_tokens WHERE token_id = $1),
            ins AS (INSERT INTO webhook_asks (token_id, expires_at, asked_at)
                    SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM spent)
                    ON CONFLICT (token_id) DO NOTHING RETURNING asked_at)
       SELECT (SELECT used_at FROM spent) AS used_at, (SELECT serial FROM spent) AS serial,
              EXISTS (SELECT 1 FROM spent) AS spent, EXISTS (SELECT 1 FROM ins) AS first,
              (SELECT asked_at FROM webhook_asks WHERE token_id = $1) AS asked_at`,
      [token.id, token.expiresAt, at],
      'ask_webhook',
    )
    const r = rows[0] as {
      used_at: string | null
      serial: string | null
      spent: boolean
      first: boolean
      asked_at: string | null
    }
    if (r.spent)
      return {
        first: false,
        askedAt: null,
        spent: {usedAt: r.used_at === null ? null : Number(r.used_at), serial: r.serial},
      }
    if (r.first) return {first: true}
    return {first: false, askedAt: r.asked_at === null ? null : Number(r.asked_at)}
  }

  async forgetWebhookAsk(id: string): Promise<void> {
    await this.query('DELETE FROM webhook_asks WHERE token_id = $1', [id], 'forget_webhook_ask')
  }

  /**
   * Ids come from a sequence, which hands them out in insert order but lets them commit in any order:
   * a reader could see 6, move the cursor past 5, and 5 (committing a moment later) would never reach
   * the audit sink. The lock makes each insert commit before the next one takes its id.
   */
  async recordAdminEvent(event: string, fields: Record<string, unknown>, at: number): Promise<AdminEvent> {
    return this.transaction((c) => this.adminEventIn(c, event, fields, at))
  }

  private async adminEventIn(
    c: pg.PoolClient,
    event: string,
    fields: Record<string, unknown>,
    at: number,
  ): Promise<AdminEvent> {
    await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK.adminEvents])
    const {rows} = await c.query<{id: string}>(
      'INSERT INTO admin_events (at, event, fields) VALUES ($1, $2, $3) RETURNING id',
      [at, event, JSON.stringify(fields)],
    )
    return {id: Number(rows[0]!.id), at, event, fields}
  }

  async auditCursor(): Promise<number> {
    const {rows} = await this.query<{value: string}>("SELECT value FROM meta WHERE key = 'audit_cursor'")
    return Number(rows[0]!.value)
  }

  async adminEventsAfter(cursor: number, limit: number): Promise<AdminEvent[]> {
    const {rows} = await this.query<{id: string; at: string; event: string; fields: string}>(
      'SELECT id, at, event, fields FROM admin_events WHERE id > $1 ORDER BY id LIMIT $2',
      [cursor, limit],
    )
    return rows.map((r) => ({
      id: Number(r.id),
      at: Number(r.at),
      event: r.event,
      fields: JSON.parse(r.fields) as Record<string, unknown>,
    }))
  }

  async advanceAuditCursor(from: number, to: number): Promise<boolean> {
    return (
      (
        await this.query("UPDATE meta SET value = $1 WHERE key = 'audit_cursor' AND value = $2", [
          String(to),
          String(from),
        ])
      ).rowCount === 1
    )
  }

  async ping(): Promise<void> {
    await this.query('SELECT 1')
  }

  async spentToken(id: string): Promise<{usedAt: number | null; serial: string | null} | undefined> {
    const {rows} = await this.query<{used_at: string | null; serial: string | null}>(
      'SELECT used_at, serial FROM used_tokens WHERE token_id = $1',
      [id],
    )
    const r = rows[0]
    return r ? {usedAt: r.used_at === null ? null : Number(r.used_at), serial: r.serial} : undefined
  }

  async inventorySummary(now: number): Promise<InventorySummary> {
    const {rows} = await this.query<{cert_type: string; last: string | null; active: string}>(
      `SELECT t.cert_type,
              (SELECT MAX(valid_before) FROM certificates WHERE cert_type = t.cert_type) AS last,
              (SELECT COUNT(*) FROM certificates WHERE cert_type = t.cert_type AND valid_before > $1 AND valid_after <= $1) AS active
         FROM (VALUES ('user'), ('host')) AS t(cert_type)`,
      [now],
    )
    const one = (type: string) => {
      const r = rows.find((x) => x.cert_type === type)!
      return {active: Number(r.active), lastValidBefore: r.last === null ? null : BigInt(r.last)}
    }
    return {user: one('user'), host: one('host')}
  }

  async restoredAt(): Promise<number | null> {
    const {rows} = await this.query<{value: string}>("SELECT value FROM meta WHERE key = 'restored_at'")
    return rows[0] ? Number(rows[0].value) : null
  }

  /** Replicas marking at once keep the later mark; issuances that read the old one commit first (the gate). */
  async markRestored(at: number): Promise<number> {
    if (!Number.isSafeInteger(at) || at <= 0) throw new TypeError('markRestored: at must be seconds since the epoch')
    return this.transaction(async (c) => {
      await closeGate(c)
      const {rows} = await c.query<{value: string}>(
        `INSERT INTO meta (key, value) VALUES ('restored_at', $1) ON CONFLICT (key)
           DO UPDATE SET value = GREATEST(meta.value::bigint, excluded.value::bigint)::text RETURNING value`,
        [String(at)],
      )
      return Number(rows[0]!.value)
    })
  }

  async issuanceStop(): Promise<IssuanceStop | null> {
    const {rows} = await this.query<{value: string}>("SELECT value FROM meta WHERE key = 'issuance_stop'")
    return rows[0] ? parseStop(rows[0].value) : null
  }

  async setIssuanceStop(stop: IssuanceStop | null): Promise<void> {
    await this.transaction(async (c) => {
      await closeGate(c)
      if (stop)
        await c.query(
          "INSERT INTO meta (key, value) VALUES ('issuance_stop', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
          [JSON.stringify({at: stop.at, reason: stop.reason})],
        )
      else await c.query("DELETE FROM meta WHERE key = 'issuance_stop'")
    })
  }

  /**
   * A session advisory lock held on one connection while `fn` runs; others wait, at most
   * LOCK_WAIT_TIMEOUTS x db.timeout: its holders (a TLS reissue, a stop or a restore mark) take a
   * second or a few statements, so a longer hold is a process that stopped with it (cut off from the network, PostgreSQL keeps its session until TCP gives up: hours). Past that,
   * ERR_STORE_UNAVAILABLE: waiting on would hang its caller (the CA's reload of its keys, its policy
   * reloads queued behind, `ca stop-issuance` in an emergency) without a word.
   */
  async exclusive<T>(name: string, fn: () => Promise<T>): Promise<T> {
    let client: pg.PoolClient
    try {
      client = await this.pool.connect()
    } catch (err) {
      throw storeError(err)
    }
    let broken: Error | undefined
    try {
      const key = exclusiveLockKey(name)
      // try, then wait a little and try again: a plain pg_advisory_lock would outlive statement_timeout
      const deadline = Date.now() + LOCK_WAIT_TIMEOUTS * (this.pool.options.connectionTimeoutMillis ?? 5000)
      for (;;) {
        const {rows} = await client.query<{ok: boolean}>('SELECT pg_try_advisory_lock($1) AS ok', [key])
        if (rows[0]!.ok) break
        if (Date.now() >= deadline)
          throw new SshcaError(
            'ERR_STORE_UNAVAILABLE',
            `the lock "${name}" is held by another process on the database (a replica, a command) for longer than its holders take; nothing was done`,
            {details: {reason: 'store_unavailable', lock: name}},
          )
        await new Promise((r) => setTimeout(r, 200))
      }
      try {
        return await fn()
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [key]).catch((e: Error) => (broken = e))
      }
    } catch (err) {
      if (isUnavailable(err)) broken ??= err as Error
      throw storeError(err)
    } finally {
      client.release(broken)
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.flush()
    await this.pool.end()
  }
}
