import assert from 'node:assert/strict'
import {existsSync, readFileSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {DatabaseSync} from 'node:sqlite'
import {SqliteStore, storeError} from '../../../src/ca/store/sqlite.ts'
import {SCHEMA_VERSION} from '../../../src/ca/store/migrations.ts'
import {record, storeContract} from '../../contract/store.ts'
import {tempDir} from '../../helpers/tmp.ts'
import {parseConfig} from '../../../src/ca/config/config.ts'
import {RESTART_PAGES, startCheckpointer} from '../../../src/ca/store/checkpointer.ts'
import {httpError} from '../../../src/ca/http/errors.ts'
import {SshcaError} from '../../../src/errors.ts'

const paths = new WeakMap<object, string>()
storeContract(
  'SQLite',
  async () => {
    const path = join(tempDir('sshca-store-'), 'db.sqlite')
    const s = new SqliteStore(path, {background: false})
    paths.set(s, path)
    return s
  },
  // a second connection to the same file (as `ca revoke` next to `ca serve`)
  async (of) => new SqliteStore(paths.get(of)!, {background: false}),
)

describe('SQLite store migrations', () => {
  it('brings a version-1 database (the first release) forward, keeping its rows, and is idempotent', async () => {
    const path = join(tempDir('sshca-store-'), 'old.sqlite')
    const db = new DatabaseSync(path)
    db.exec(`CREATE TABLE used_tokens (token_id TEXT PRIMARY KEY, expires_at BIGINT NOT NULL);
      CREATE TABLE certificates (serial TEXT PRIMARY KEY, cert_type TEXT NOT NULL, key_id TEXT NOT NULL, principals TEXT NOT NULL, valid_after BIGINT NOT NULL, valid_before BIGINT NOT NULL, provisioner TEXT NOT NULL, rule_name TEXT, subject TEXT, key_fingerprint TEXT NOT NULL, issued_at BIGINT NOT NULL, request_id TEXT NOT NULL, certificate TEXT NOT NULL);
      CREATE TABLE revocations (id TEXT PRIMARY KEY, serial TEXT, key_id TEXT, reason TEXT NOT NULL, revoked_at BIGINT NOT NULL);
      INSERT INTO used_tokens VALUES ('old-token', 9999999999);
      INSERT INTO certificates VALUES ('7', 'host', 'host:web1', '["web1"]', 0, 9999999999, 'host-enrollment', NULL, 'web1', 'SHA256:web1', 5, 'r', 'blob');
      INSERT INTO certificates VALUES ('8', 'host', 'host:web1', '["web1"]', 0, 9999999999, 'host-renewal', NULL, 'web1', 'SHA256:web1', 6, 'r', 'blob');
      INSERT INTO revocations VALUES ('x', '3', NULL, 'old', 1);`)
    db.close()
    for (let i = 0; i < 2; i++) {
      const s = new SqliteStore(path, {background: false})
      // the old spent token is still spent; the newest host certificate heads its lineage; the KRL version kept its count
      assert.equal((await s.issue({token: {id: 'old-token', expiresAt: 1, issuedAt: 0}, record: record()})).ok, false)
      assert.deepEqual(
        (await s.currentHostCertificates(100)).map((c) => c.serial),
        [8n],
      )
      assert.equal(await s.revocationGeneration(), 1)
      await s.close()
    }
    const check = new DatabaseSync(path)
    assert.equal((check.prepare('PRAGMA user_version').get() as {user_version: number}).user_version, SCHEMA_VERSION)
    check.close()
  })

  it('refuses a database from a newer sshca', () => {
    const path = join(tempDir('sshca-store-'), 'new.sqlite')
    const db = new DatabaseSync(path)
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`)
    db.close()
    assert.throws(
      () => new SqliteStore(path, {background: false}),
      (e: {code?: string}) => e.code === 'ERR_CA_CONFIG',
    )
  })
})

const rec = (serial: bigint) => record({serial, keyId: 'k', keyFingerprint: 'SHA256:x'})
const spend = (s: SqliteStore, id: string, r: ReturnType<typeof rec>) =>
  s.issue({token: {id, expiresAt: 100, issuedAt: 0}, record: r}).then((o) => o.ok)

/** The connection's PRAGMA synchronous: 2 = FULL, 1 = NORMAL. */
const synchronousOf = (store: SqliteStore): number =>
  Number(
    ((store as unknown as {db: DatabaseSync}).db.prepare('PRAGMA synchronous').get() as {synchronous: number})
      .synchronous,
  )

describe('the SQLite store', () => {
  it('is durable by default (synchronous=FULL); db.durability: normal is an opt-out that warns what it risks', async () => {
    const dir = tempDir()
    const full = new SqliteStore(join(dir, 'full.sqlite'), {background: false})
    const normal = new SqliteStore(join(dir, 'normal.sqlite'), {background: false, durability: 'normal'})
    try {
      assert.equal(synchronousOf(full), 2)
      assert.equal(synchronousOf(normal), 1)
    } finally {
      await full.close()
      await normal.close()
    }
    const {config, warnings} = parseConfig('provisioners: []', 'ca.yaml')
    assert.equal(config.db.type === 'sqlite' && config.db.durability, 'full')
    assert.doesNotMatch(warnings.join('\n'), /durability/)
    const opted = parseConfig('db: {type: sqlite, durability: normal}', 'ca.yaml')
    assert.equal(opted.config.db.type === 'sqlite' && opted.config.db.durability, 'normal')
    assert.match(
      opted.warnings.join('\n'),
      /db\.durability: normal — a power loss can drop the last commits: .*replayable/,
    )
    assert.throws(() => parseConfig('db: {type: sqlite, durability: off}', 'ca.yaml'), {
      code: 'ERR_CA_CONFIG',
      message: /db\.durability: Invalid option/,
    })
  })

  it('a write the database cannot take (read-only, full, locked) is ERR_STORE_UNAVAILABLE → 503, with a public message', async () => {
    const path = join(tempDir(), 'ro.sqlite')
    await new SqliteStore(path, {background: false}).close()
    // a connection that cannot write stands in for a full or failing disk (the integration test fills a real one)
    const store = new SqliteStore(path, {background: false})
    ;(store as unknown as {db: DatabaseSync}).db.exec('PRAGMA query_only = 1')
    const err = await spend(store, 't1', rec(1n)).catch((e: unknown) => e)
    // query_only reports SQLITE_READONLY
    assert.ok(err instanceof SshcaError, String(err))
    assert.equal(err.code, 'ERR_STORE_UNAVAILABLE')
    assert.equal(err.details?.reason, 'store_unavailable')
    assert.match(err.message, /the store cannot commit: /)
    const {status, body} = httpError(err, 'req-1')
    assert.equal(status, 503)
    assert.equal(body.message, 'the CA cannot record certificates right now, so it issued none; try again shortly')
    await assert.rejects(store.revoke({serial: 1n, keyId: null, keyFingerprint: null, reason: 'x', revokedAt: 1}), {
      code: 'ERR_STORE_UNAVAILABLE',
    })
    await store.close()

    // nothing was spent: the same token works once the store can be written
    const again = new SqliteStore(path, {background: false})
    assert.equal(await spend(again, 't1', rec(1n)), true)
    assert.equal(await spend(again, 't1', rec(2n)), false)
    await again.close()
  })

  it('leaves other SQLite errors (a bug, not an outage) as they are: a 500', () => {
    const db = new DatabaseSync(':memory:')
    let syntax: unknown
    try {
      db.exec('SELEC 1')
    } catch (e) {
      syntax = e
    }
    assert.equal(storeError(syntax), syntax)
    assert.equal(httpError(storeError(syntax), 'r').status, 500)
    const other = new Error('not sqlite')
    assert.equal(storeError(other), other)
  })
})

describe('WAL checkpoints under steady writes', function () {
  this.timeout(60_000)
  const walSequence = (path: string): number =>
    existsSync(`${path}-wal`) && statSync(`${path}-wal`).size >= 32 ? readFileSync(`${path}-wal`).readUInt32BE(12) : -1

  it('once the WAL is past RESTART_PAGES the checkpointer holds commits, copies the rest and releases them: the next commit restarts the WAL (regression: 1.2 GB in a 10-minute soak)', async () => {
    const path = join(tempDir(), 'hold.sqlite')
    const db = new DatabaseSync(path)
    db.exec('PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (v BLOB)')
    // more than RESTART_PAGES pages in the WAL
    db.exec('BEGIN')
    const insert = db.prepare('INSERT INTO t (v) VALUES (randomblob(4000))')
    for (let i = 0; i < RESTART_PAGES + 200; i++) insert.run()
    db.exec('COMMIT')
    const before = walSequence(path)
    const calls: boolean[] = []
    let released!: () => void
    const done = new Promise<void>((r) => (released = r))
    const cp = startCheckpointer(
      path,
      (on) => {
        calls.push(on)
        if (!on) released()
      },
      50,
    )
    try {
      await Promise.race([
        done,
        new Promise((_, reject) =>
          setTimeout(
            () =>
              reject(new Error(`the checkpointer never held and released commits (calls: ${JSON.stringify(calls)})`)),
            20_000,
          ).unref(),
        ),
      ])
      assert.deepEqual(calls, [true, false])
      // the first write after the release starts the WAL over (its header's checkpoint sequence moves on)
      insert.run()
      assert.equal(walSequence(path), before + 1)
    } finally {
      await cp.stop()
      db.close()
    }
  })

  it('commits go on while the checkpointer holds and releases them, and the WAL stays bounded', async () => {
    const path = join(tempDir(), 'steady.sqlite')
    const store = new SqliteStore(path, {checkpointEveryMs: 200})
    const wal = () => (existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0)
    let largest = 0
    let restarts = 0
    let n = 0
    const issued: Promise<boolean>[] = []
    try {
      const start = Date.now()
      while (Date.now() - start < 3000) {
        for (let i = 0; i < 4; i++, n++) issued.push(spend(store, `t${n}`, rec(BigInt(n + 1))))
        await new Promise((r) => setImmediate(r))
        largest = Math.max(largest, wal())
        restarts = Math.max(restarts, walSequence(path))
      }
      assert.ok((await Promise.all(issued)).every(Boolean))
    } finally {
      await store.close()
    }
    assert.ok(restarts >= 1 || largest < RESTART_PAGES * 4096, 'the WAL never restarted')
    assert.ok(largest < 32 * 1048576, `the WAL reached ${(largest / 1048576).toFixed(1)} MB after ${n} certificates`)
  })
})
