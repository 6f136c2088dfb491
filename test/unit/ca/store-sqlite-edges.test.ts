/** The SQLite store's own mechanics: group commit and the checkpointer's hold, migrations, error paths, close. */
import assert from 'node:assert/strict'
import {copyFileSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {DatabaseSync} from 'node:sqlite'
import {MIGRATIONS, SCHEMA_VERSION} from '../../../src/ca/store/migrations.ts'
import {migrateSqlite, parseStop, SqliteStore, storeError} from '../../../src/ca/store/sqlite.ts'
import type {IssueOutcome} from '../../../src/ca/store/store.ts'
import {SshcaError} from '../../../src/errors.ts'
import {PURGE_MARGIN_SECONDS, purgeSpentTokens} from '../../../src/ca/server.ts'
import {record} from '../../contract/store.ts'
import {tempDir} from '../../helpers/tmp.ts'

type Inside = {db: DatabaseSync; hold(on: boolean): void}
const inside = (s: SqliteStore): Inside => s as unknown as Inside
const pragma = (db: DatabaseSync, name: string): number => Number(Object.values(db.prepare(`PRAGMA ${name}`).get()!)[0])
const userVersion = (db: DatabaseSync): number => pragma(db, 'user_version')
/** Lets every task already queued run (setImmediate callbacks, I/O that is done): no clock involved. */
const turns = async (n = 3): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r))
}
const settled = <T>(p: Promise<T>): {done: boolean; value?: T} => {
  const s: {done: boolean; value?: T} = {done: false}
  void p.then((v) => Object.assign(s, {done: true, value: v}))
  return s
}
const token = (id: string) => ({id, expiresAt: 3_000, issuedAt: 2_700})

/** A database at `version`, built by this file's own migrations up to it. */
function databaseAt(path: string, version: number): void {
  const db = new DatabaseSync(path)
  for (const m of MIGRATIONS.filter((x) => x.version <= version)) for (const sql of m.sqlite) db.exec(sql)
  db.exec(`PRAGMA user_version = ${version}`)
  db.close()
}

describe('SQLite store: errors the CA turns into 503', () => {
  const sqliteError = (errcode: unknown, code = 'ERR_SQLITE_ERROR') =>
    Object.assign(new Error('database is locked'), {code, errcode, errstr: 'database is locked'})

  it('busy, locked, read-only, I/O, full, cannot open, protocol (extended codes too): ERR_STORE_UNAVAILABLE', () => {
    for (const errcode of [5, 6, 7, 8, 10, 13, 14, 15, 5 | (1 << 8), 10 | (12 << 8)]) {
      const err = sqliteError(errcode)
      const out = storeError(err)
      assert.ok(out instanceof SshcaError, String(errcode))
      assert.equal(out.code, 'ERR_STORE_UNAVAILABLE')
      assert.equal(out.details?.reason, 'store_unavailable')
      assert.equal((out as {cause?: unknown}).cause, err)
    }
  })

  it('anything else is passed on as it is: other codes, another error class, an errcode that is no number', () => {
    for (const err of [
      sqliteError(1),
      sqliteError(19),
      sqliteError(5, 'ERR_OTHER'),
      sqliteError('5'),
      sqliteError(undefined),
    ])
      assert.equal(storeError(err), err)
  })
})

describe('SQLite store: migrations', () => {
  let dir: string
  beforeEach(() => {
    dir = tempDir('sshca-store-')
  })

  it('an up-to-date database is opened without the write lock (a command next to a busy CA)', () => {
    const path = join(dir, 'db.sqlite')
    databaseAt(path, SCHEMA_VERSION)
    const writer = new DatabaseSync(path)
    writer.exec('PRAGMA journal_mode = WAL; BEGIN IMMEDIATE')
    const reader = new DatabaseSync(path) // busy_timeout 0: a lock would fail at once
    try {
      assert.deepEqual(migrateSqlite(reader), {from: SCHEMA_VERSION, to: SCHEMA_VERSION})
    } finally {
      writer.exec('ROLLBACK')
      writer.close()
      reader.close()
    }
  })

  it('a database at version 2 gets only the migrations after 2', () => {
    const path = join(dir, 'v2.sqlite')
    databaseAt(path, 2)
    const db = new DatabaseSync(path)
    try {
      assert.deepEqual(migrateSqlite(db), {from: 2, to: SCHEMA_VERSION})
      assert.equal(userVersion(db), SCHEMA_VERSION)
    } finally {
      db.close()
    }
  })

  it('a migration that fails leaves the database as it was, at its version, and no transaction open', () => {
    const path = join(dir, 'clash.sqlite')
    databaseAt(path, 2)
    const db = new DatabaseSync(path)
    try {
      // a column a later migration adds, already there: that migration fails
      db.exec('ALTER TABLE certificates ADD COLUMN claims TEXT')
      assert.throws(() => migrateSqlite(db), {code: 'ERR_SQLITE_ERROR'})
      assert.equal(db.isTransaction, false)
      assert.equal(userVersion(db), 2)
    } finally {
      db.close()
    }
  })

  it("the purge keeps a spent token's id an hour past its expiry: a replica whose clock runs behind still knows it", async () => {
    const s = new SqliteStore(join(dir, 'purge.sqlite'), {background: false})
    try {
      const now = 1_800_000_000
      // expired ten minutes ago by this replica's clock; a replica ten minutes behind still takes it
      assert.deepEqual(await s.issue({token: {id: 'recent', expiresAt: now - 600, issuedAt: 0}, record: record()}), {
        ok: true,
      })
      assert.deepEqual(
        await s.issue({token: {id: 'old', expiresAt: now - PURGE_MARGIN_SECONDS - 1, issuedAt: 0}, record: record()}),
        {
          ok: true,
        },
      )
      assert.equal(await purgeSpentTokens(s, now * 1000), 1)
      assert.equal(
        (await s.issue({token: {id: 'recent', expiresAt: now - 600, issuedAt: 0}, record: record()})).ok,
        false,
        'still spent',
      )
      assert.equal(await s.spentToken('old'), undefined)
    } finally {
      await s.close()
    }
  })

  it('a token spent before its details were recorded: replayed, with no time and no serial', async () => {
    const path = join(dir, 'v1.sqlite')
    databaseAt(path, 1)
    const db = new DatabaseSync(path)
    db.exec("INSERT INTO used_tokens (token_id, expires_at) VALUES ('old', 9999999999)")
    db.close()
    const s = new SqliteStore(path, {background: false})
    try {
      assert.deepEqual(await s.issue({token: token('old'), record: record()}), {
        ok: false,
        reason: 'replayed',
        usedAt: null,
        serial: null,
      } satisfies IssueOutcome)
      assert.deepEqual(await s.spentToken('old'), {usedAt: null, serial: null})
    } finally {
      await s.close()
    }
  })
})

describe('SQLite store: the stored emergency stop', () => {
  it('a record this version cannot read still stops issuance (fail closed), with a reason to show', () => {
    assert.deepEqual(parseStop('{"at": 5, "reason": "key leak"}'), {at: 5, reason: 'key leak'})
    for (const text of ['{"at": "5", "reason": 7}', 'not json', '[]']) {
      const stop = parseStop(text)
      assert.equal(stop.at, 0, text)
      assert.equal(typeof stop.reason, 'string', text)
      assert.notEqual(stop.reason, '', text)
    }
    assert.deepEqual(parseStop('{"reason": "r"}'), {at: 0, reason: 'r'})
  })
})

describe('SQLite store: group commit, the hold, close', () => {
  let dir: string
  let s: SqliteStore | undefined
  beforeEach(() => {
    dir = tempDir('sshca-store-')
    s = undefined
  })
  afterEach(async () => {
    await s?.close()
  })

  it('the checkpointer runs only for a file opened in the background: autocheckpoint off there, on elsewhere', async () => {
    const bg = new SqliteStore(join(dir, 'bg.sqlite'), {checkpointEveryMs: 2 ** 31 - 1})
    const cli = new SqliteStore(join(dir, 'cli.sqlite'), {background: false})
    const mem = new SqliteStore(':memory:')
    try {
      assert.equal(pragma(inside(bg).db, 'wal_autocheckpoint'), 0)
      assert.equal(pragma(inside(cli).db, 'wal_autocheckpoint'), 1000)
      assert.equal(pragma(inside(mem).db, 'wal_autocheckpoint'), 1000)
    } finally {
      await bg.close()
      await cli.close()
      await mem.close()
    }
  })

  it('issuances in one turn share one commit; its size and a duration within the call are reported', async () => {
    const commits: [number, number][] = []
    s = new SqliteStore(join(dir, 'db.sqlite'), {background: false, onCommit: (n, secs) => commits.push([n, secs])})
    const t0 = performance.now()
    const outcomes = await Promise.all([1, 2, 3].map((i) => s!.issue({token: token(`t${i}`), record: record()})))
    const elapsed = (performance.now() - t0) / 1000
    assert.ok(outcomes.every((o) => o.ok))
    assert.equal(commits.length, 1)
    assert.equal(commits[0]![0], 3)
    assert.ok(commits[0]![1] >= 0 && commits[0]![1] <= elapsed, `${commits[0]![1]} s, the call took ${elapsed} s`)
    // an admin write with no issuance waiting commits no empty batch
    await s.revoke({serial: 1n, keyId: null, keyFingerprint: null, reason: 'x', revokedAt: 1})
    await s.close()
    s = undefined
    assert.equal(commits.length, 1)
  })

  it('while the checkpointer holds, issuances wait, also those whose commit was due before it began; its release commits them', async () => {
    s = new SqliteStore(join(dir, 'db.sqlite'), {background: false})
    const early = settled(s.issue({token: token('early'), record: record()}))
    inside(s).hold(true) // before the commit scheduled for `early` runs
    const a = settled(s.issue({token: token('a'), record: record()}))
    await turns()
    assert.equal(early.done || a.done, false, 'committed during the hold')
    inside(s).hold(false)
    await turns()
    assert.deepEqual([early.value, a.value], [{ok: true}, {ok: true}])
  })

  it('a batch that fails spends no token and leaves no transaction open: the next one commits', async () => {
    s = new SqliteStore(join(dir, 'db.sqlite'), {background: false})
    assert.deepEqual(await s.issue({token: token('a'), record: record({serial: 77n})}), {ok: true})
    // a serial issued already: the insert fails after the token was spent, inside the batch
    await assert.rejects(s.issue({token: token('b'), record: record({serial: 77n})}), {code: 'ERR_SQLITE_ERROR'})
    assert.equal(await s.spentToken('b'), undefined)
    assert.equal(inside(s).db.isTransaction, false)
    assert.deepEqual(await s.issue({token: token('b'), record: record({serial: 78n})}), {ok: true})
  })

  it('an admin write that fails is rolled back: nothing of it kept, the next one commits', async () => {
    s = new SqliteStore(join(dir, 'db.sqlite'), {background: false})
    await assert.rejects(s.recordAdminEvent('first', {n: 1n}, 1), TypeError) // JSON has no BigInt
    assert.equal(inside(s).db.isTransaction, false)
    await s.recordAdminEvent('second', {}, 2)
    assert.deepEqual(
      (await s.adminEventsAfter(0, 10)).map((e) => e.event),
      ['second'],
    )
  })

  it('an admin write during a hold commits the issuances before it first (a certificate asked for before its key was revoked)', async () => {
    s = new SqliteStore(join(dir, 'db.sqlite'), {background: false})
    inside(s).hold(true)
    const asked = settled(s.issue({token: token('a'), record: record({keyId: 'kid-revoked'})}))
    await s.revoke({serial: null, keyId: 'kid-revoked', keyFingerprint: null, reason: 'x', revokedAt: 1})
    await turns(1)
    assert.deepEqual(asked, {done: true, value: {ok: true}})
    inside(s).hold(false)
  })

  it('close commits what is waiting, also during a hold, then closes (twice is fine); a closed store fails ping', async () => {
    const store = new SqliteStore(join(dir, 'db.sqlite'), {background: false})
    inside(store).hold(true)
    const waiting = settled(store.issue({token: token('w'), record: record()}))
    await store.close()
    await turns(1)
    assert.deepEqual(waiting, {done: true, value: {ok: true}})
    assert.equal(inside(store).db.isOpen, false)
    await store.close()
    await assert.rejects(store.ping())
    const again = new SqliteStore(join(dir, 'db.sqlite'), {background: false})
    try {
      assert.equal((await again.spentToken('w'))?.serial !== null, true)
    } finally {
      await again.close()
    }
  })

  it('a failed batch is rolled back: the same connection commits again once it can write', async () => {
    s = new SqliteStore(join(dir, 'db.sqlite'), {background: false})
    inside(s).db.exec('PRAGMA query_only = 1')
    await assert.rejects(s.issue({token: token('t'), record: record()}), {code: 'ERR_STORE_UNAVAILABLE'})
    await assert.rejects(s.setIssuanceStop({at: 1, reason: 'r'}), {code: 'ERR_STORE_UNAVAILABLE'})
    inside(s).db.exec('PRAGMA query_only = 0')
    assert.deepEqual(await s.issue({token: token('t'), record: record()}), {ok: true})
    await s.setIssuanceStop({at: 1, reason: 'r'})
    assert.deepEqual(await s.issuanceStop(), {at: 1, reason: 'r'})
  })

  it("closing a background store copies its WAL into the database for the file's other readers", async () => {
    const path = join(dir, 'db.sqlite')
    const other = new DatabaseSync(path) // keeps the file open: close then cannot checkpoint as the last one
    try {
      const bg = new SqliteStore(path, {checkpointEveryMs: 2 ** 31 - 1})
      // a read opens the WAL for this connection too
      other.prepare('SELECT count(*) FROM certificates').get()
      await Promise.all(
        Array.from({length: 50}, (_, i) =>
          bg.issue({token: token(`t${i}`), record: record({certificate: 'x'.repeat(2000)})}),
        ),
      )
      await bg.close()
      // the database file alone (as a backup that copies it, or a reader without the WAL, sees it)
      copyFileSync(path, join(dir, 'copy.sqlite'))
      const copy = new DatabaseSync(join(dir, 'copy.sqlite'))
      assert.equal(Number(Object.values(copy.prepare('SELECT count(*) FROM certificates').get()!)[0]), 50)
      copy.close()
      // a command's short-lived store leaves checkpoints to SQLite
      const cli = new SqliteStore(path, {background: false})
      await cli.issue({token: token('cli'), record: record({certificate: 'y'.repeat(2000)})})
      const size = statSync(path).size
      await cli.close()
      assert.equal(statSync(path).size, size)
    } finally {
      other.close()
    }
  })
})

describe('SQLite store: what only this backend can get wrong', () => {
  let s: SqliteStore
  beforeEach(() => {
    s = new SqliteStore(join(tempDir('sshca-store-'), 'db.sqlite'), {background: false})
  })
  afterEach(async () => {
    await s.close()
  })

  it('a user certificate starts no host lineage: it is never a current host certificate', async () => {
    assert.deepEqual(await s.issue({token: token('u'), record: record({certType: 'user'})}), {ok: true})
    assert.deepEqual(await s.currentHostCertificates(0), [])
  })

  it('certificates: several filters at once; "forever" read back exactly', async () => {
    const forever = (1n << 63n) - 1n
    const a = record({subject: 'alice', keyId: 'k1', validBefore: (1n << 64n) - 1n})
    await s.issue({token: token('a'), record: a})
    await s.issue({token: token('b'), record: record({subject: 'alice', keyId: 'k2'})})
    const found = await s.certificates({subject: 'alice', keyId: 'k1'})
    assert.deepEqual(
      found.map((c) => [c.serial, c.validBefore]),
      [[a.serial, forever]],
    )
  })

  it('exclusive: one holder per name and file; other names and other files run meanwhile', async () => {
    let releaseA!: () => void
    const a = s.exclusive('audit', () => new Promise<string>((r) => (releaseA = () => r('a'))))
    const other = settled(s.exclusive('krl', async () => 'other'))
    await turns()
    assert.deepEqual(other, {done: true, value: 'other'})
    releaseA()
    assert.equal(await a, 'a')
  })

  it('exclusive: after the first holder ends, a third waits for the second (the queue is not dropped)', async () => {
    const order: string[] = []
    let releaseA!: () => void
    let releaseB!: () => void
    const a = s.exclusive('x', () => new Promise<void>((r) => (releaseA = r)))
    const b = s.exclusive('x', () => {
      order.push('b starts')
      return new Promise<void>((r) => (releaseB = r))
    })
    await turns()
    releaseA()
    await a
    await turns()
    const c = s.exclusive('x', async () => {
      order.push('c runs')
    })
    await turns()
    order.push('b ends')
    releaseB()
    await Promise.all([b, c])
    assert.deepEqual(order, ['b starts', 'b ends', 'c runs'])
  })
})
