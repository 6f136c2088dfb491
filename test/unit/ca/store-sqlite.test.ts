import assert from 'node:assert/strict'
import {existsSync, readFileSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {DatabaseSync} from 'node:sqlite'
import {parseConfig} from '../../../src/ca/config.ts'
import {RESTART_PAGES, startCheckpointer} from '../../../src/ca/sqlite-checkpointer.ts'
import {httpError} from '../../../src/ca/http-errors.ts'
import {SqliteStore, storeError} from '../../../src/ca/store-sqlite.ts'
import type {IssuedRecord} from '../../../src/ca/store.ts'
import {SshcaError} from '../../../src/errors.ts'
import {tempDir} from '../../helpers/tmp.ts'

const record = (serial: bigint): IssuedRecord => ({
  serial, certType: 'user', keyId: 'k', principals: ['p'], validAfter: 0n, validBefore: 10n, provisioner: 'ci',
  rule: 'r', subject: 's', keyFingerprint: 'SHA256:x', issuedAt: 1, requestId: 'req', certificate: 'AAAA',
})

/** The connection's PRAGMA synchronous: 2 = FULL, 1 = NORMAL. */
const synchronousOf = (store: SqliteStore): number => Number(((store as unknown as {db: DatabaseSync}).db.prepare('PRAGMA synchronous').get() as {synchronous: number}).synchronous)

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
    assert.equal(config.db.durability, 'full')
    assert.doesNotMatch(warnings.join('\n'), /durability/)
    const opted = parseConfig('db: {type: sqlite, durability: normal}', 'ca.yaml')
    assert.equal(opted.config.db.durability, 'normal')
    assert.match(opted.warnings.join('\n'), /db\.durability: normal — a power loss can drop the last commits: .*replayable/)
    assert.throws(() => parseConfig('db: {type: sqlite, durability: off}', 'ca.yaml'), {code: 'ERR_CA_CONFIG', message: /db\.durability: Invalid option/})
  })

  it('a write the database cannot take (read-only, full, locked) is ERR_STORE_UNAVAILABLE → 503, with a public message', async () => {
    const path = join(tempDir(), 'ro.sqlite')
    await new SqliteStore(path, {background: false}).close()
    // a connection that cannot write stands in for a full or failing disk (the integration test fills a real one)
    const store = new SqliteStore(path, {background: false})
    ;(store as unknown as {db: DatabaseSync}).db.exec('PRAGMA query_only = 1')
    const err = await store.issue('t1', 100, record(1n)).catch((e: unknown) => e)
    // query_only reports SQLITE_READONLY
    assert.ok(err instanceof SshcaError, String(err))
    assert.equal(err.code, 'ERR_STORE_UNAVAILABLE')
    assert.equal(err.details?.reason, 'store_unavailable')
    assert.match(err.message, /the store cannot commit: /)
    const {status, body} = httpError(err, 'req-1')
    assert.equal(status, 503)
    assert.equal(body.message, 'the CA cannot record certificates right now, so it issued none; try again shortly')
    await assert.rejects(store.revoke({serial: 1n, keyId: null, reason: 'x', revokedAt: 1}), {code: 'ERR_STORE_UNAVAILABLE'})
    await store.close()

    // nothing was spent: the same token works once the store can be written
    const again = new SqliteStore(path, {background: false})
    assert.equal(await again.issue('t1', 100, record(1n)), true)
    assert.equal(await again.issue('t1', 100, record(2n)), false)
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
  const walSequence = (path: string): number => (existsSync(`${path}-wal`) && statSync(`${path}-wal`).size >= 32 ? readFileSync(`${path}-wal`).readUInt32BE(12) : -1)

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
    const cp = startCheckpointer(path, (on) => {
      calls.push(on)
      if (!on) released()
    }, 50)
    try {
      await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error(`the checkpointer never held and released commits (calls: ${JSON.stringify(calls)})`)), 20_000).unref())])
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
        for (let i = 0; i < 4; i++, n++) issued.push(store.issue(`t${n}`, 100, record(BigInt(n + 1))))
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
