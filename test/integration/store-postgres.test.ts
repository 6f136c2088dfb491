/**
 * The PostgreSQL store against a real PostgreSQL (Debian's server, started in a temp dir by the
 * harness): the same contract suite as SQLite, then what only a shared server has: migrations raced
 * by replicas starting together, a schema too new or too old, the password file, and an outage that
 * fails closed and heals without reopening the store.
 */
import assert from 'node:assert/strict'
import {chmodSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import pg from 'pg'
import {parseConfig, type CaConfig} from '../../src/ca/config/config.ts'
import {migrateStore, openStore} from '../../src/ca/store/open.ts'
import {createRoot, createTlsCert} from '../../src/ca/keys/pki.ts'
import {SCHEMA_VERSION} from '../../src/ca/store/migrations.ts'
import {RESTORE_LEEWAY, type IssuedRecord, type IssueOutcome, type Store} from '../../src/ca/store/store.ts'
import {batchItem} from '../../src/ca/store/postgres.ts'
import {record, storeContract} from '../contract/store.ts'
import {startPostgres, type TestPostgres} from '../helpers/postgres.ts'
import {sshca} from '../helpers/cli.ts'
import {tempDir} from '../helpers/tmp.ts'
import {waitFor} from '../helpers/proc.ts'

/** ca.yaml with this db block, parsed as `ca serve` would (defaults, checks). */
function configWith(db: Record<string, unknown>): CaConfig {
  const dir = tempDir('sshca-pgcfg-')
  const text = JSON.stringify({db})
  return parseConfig(text, join(dir, 'ca.yaml')).config
}

let server: TestPostgres
const urls = new WeakMap<object, string>()

async function openOn(url: string, over: Record<string, unknown> = {}): Promise<Store> {
  const s = await openStore(configWith(server.db({url, pool: 4, ...over})), 'server')
  urls.set(s, url)
  return s
}

/** A connection of its own to `url`'s database, as another replica would hold one (a transaction left open). */
async function rawClient(url: string): Promise<pg.Client> {
  const c = new pg.Client({
    host: '127.0.0.1',
    port: server.port,
    user: 'sshca',
    password: server.password,
    database: url.split('/').pop(),
  })
  await c.connect()
  return c
}

/** How many sessions of `url`'s database wait for an advisory lock (pg_locks: a wait seen, not slept for). */
async function advisoryWaits(url: string): Promise<number> {
  return Number(
    (
      await server.psql(
        `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = '${url.split('/').pop()}'`,
      )
    ).trim(),
  )
}

describe('PostgreSQL store', function () {
  this.timeout(60_000)
  before(async () => {
    server = await startPostgres()
  })
  after(async () => server?.destroy())

  storeContract(
    'PostgreSQL',
    async () => openOn(await server.createDatabase()),
    async (of) => openOn(urls.get(of)!),
  )

  describe('host key takeovers raced across replicas (key_in_use)', () => {
    const host = (fp: string, keyId: string) =>
      record({certType: 'host', keyFingerprint: fp, keyId, validAfter: 1n, validBefore: 0x7fff_ffffn})
    /** A raw connection to the database, to hold another replica's issuance open mid-transaction. */
    async function replicaMidIssue(url: string, items: unknown[]): Promise<{commit(): Promise<void>}> {
      const c = await rawClient(url)
      await c.query('BEGIN')
      await c.query('SELECT sshca_issue($1::jsonb)', [JSON.stringify(items)])
      return {commit: async () => (await c.query('COMMIT'), await c.end())}
    }
    it("a takeover waits for the victim's renewal in flight, then sees its head: key_in_use", async () => {
      const url = await server.createDatabase()
      const s = await openOn(url)
      try {
        const victim = host('SHA256:raced-victim', 'host:victim')
        const attacker = host('SHA256:raced-attacker', 'host:attacker')
        await s.issue({token: {id: 'v', expiresAt: 3000, issuedAt: 0}, record: victim, lineage: {kind: 'enrol'}})
        await s.issue({token: {id: 'a', expiresAt: 3000, issuedAt: 0}, record: attacker, lineage: {kind: 'enrol'}})
        const renewed = host(victim.keyFingerprint, victim.keyId)
        const renewal = await replicaMidIssue(url, [
          batchItem({
            token: {id: 'v-renew', expiresAt: 3000, issuedAt: 0},
            record: renewed,
            lineage: {kind: 'renew', parent: victim.serial},
          }),
        ])
        const enrol = s.issue({
          token: {id: 'a-enrol', expiresAt: 3000, issuedAt: 0},
          record: host(victim.keyFingerprint, attacker.keyId),
          lineage: {kind: 'enrol'},
        })
        const rekey = s.issue({
          token: {id: 'a-rekey', expiresAt: 3000, issuedAt: 0},
          record: host(victim.keyFingerprint, attacker.keyId),
          lineage: {kind: 'rekey', parent: attacker.serial, parentKey: attacker.keyFingerprint},
        })
        await new Promise((r) => setTimeout(r, 300))
        await renewal.commit()
        const newest = renewed.serial.toString()
        assert.deepEqual(await enrol, {ok: false, reason: 'key_in_use', newest})
        assert.deepEqual(await rekey, {ok: false, reason: 'key_in_use', newest})
        const next = host(victim.keyFingerprint, victim.keyId)
        assert.deepEqual(
          await s.issue({
            token: {id: 'v-2', expiresAt: 3000, issuedAt: 0},
            record: next,
            lineage: {kind: 'renew', parent: renewed.serial},
          }),
          {ok: true},
        )
      } finally {
        await s.close()
      }
    })

    it("an enrolment racing a host's first enrolment of its key, under another name: key_in_use", async () => {
      const url = await server.createDatabase()
      const s = await openOn(url)
      try {
        const victim = host('SHA256:first-victim', 'host:victim')
        const first = await replicaMidIssue(url, [
          batchItem({token: {id: 'v', expiresAt: 3000, issuedAt: 0}, record: victim, lineage: {kind: 'enrol'}}),
        ])
        const attempt = s.issue({
          token: {id: 'a', expiresAt: 3000, issuedAt: 0},
          record: host(victim.keyFingerprint, 'host:attacker'),
          lineage: {kind: 'enrol'},
        })
        await new Promise((r) => setTimeout(r, 300))
        await first.commit()
        assert.deepEqual(await attempt, {ok: false, reason: 'key_in_use', newest: victim.serial.toString()})
      } finally {
        await s.close()
      }
    })
  })

  describe('the issuance gate: a stop or a restore mark and the issuances in flight on other replicas', () => {
    /**
     * Whether `p` settled by the time a session of `url`'s database waits for an advisory lock (the
     * gate), or 20 s passed: a wait seen in pg_locks, not a sleep a busy machine could outlast.
     */
    const settledYet = async (p: Promise<unknown>, url: string): Promise<boolean> => {
      let settled = false
      void p.then(
        () => (settled = true),
        () => (settled = true),
      )
      for (const t0 = Date.now(); !settled && Date.now() - t0 < 20_000 && (await advisoryWaits(url)) === 0;)
        await new Promise((r) => setTimeout(r, 20))
      return settled
    }

    it("refuses to open a database whose sessions default to another isolation level than read committed (the locks' arguments need it)", async () => {
      const url = await server.createDatabase()
      const name = url.split('/').pop()!
      await server.psql(`ALTER DATABASE ${name} SET default_transaction_isolation = 'repeatable read'`)
      await assert.rejects(openOn(url), (err: {code?: string; message?: string}) => {
        assert.equal(err.code, 'ERR_CA_CONFIG')
        assert.match(err.message ?? '', /isolation level "repeatable read".*"read committed"/)
        return true
      })
      await server.psql(`ALTER DATABASE ${name} RESET default_transaction_isolation`)
      await (await openOn(url)).close()
    })

    it('an issuance on a connection opened after the default isolation level changed is refused (503), never run at that level', async () => {
      const url = await server.createDatabase()
      const name = url.split('/').pop()!
      const s = await openOn(url)
      try {
        assert.deepEqual(await s.issue({token: {id: 'before', expiresAt: 3000, issuedAt: 0}, record: record()}), {
          ok: true,
        })
        // a DBA changes the default under a running CA, and its pool opens new connections with it
        await server.psql(`ALTER DATABASE ${name} SET default_transaction_isolation = 'repeatable read'`)
        await server.psql(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${name}' AND pid <> pg_backend_pid()`,
        )
        let last: unknown
        for (let i = 0; i < 5; i++) {
          try {
            last = await s.issue({token: {id: `after-${i}`, expiresAt: 3000, issuedAt: 0}, record: record()})
          } catch (err) {
            last = err
            // the first tries may meet the connections just terminated; then a new one at the new default
            if (/isolation level read committed, not repeatable read/.test((err as Error).message)) break
          }
        }
        assert.equal((last as {code?: string}).code, 'ERR_STORE_UNAVAILABLE', JSON.stringify(last))
        assert.match((last as Error).message, /isolation level read committed, not repeatable read/)
        assert.equal((await s.certificates({limit: 10})).length, 1, 'nothing issued at the other level')
      } finally {
        await server.psql(`ALTER DATABASE ${name} RESET default_transaction_isolation`)
        await s.close()
      }
    })

    it('ca stop-issuance waits for an issuance in flight on another replica: it commits first, and is counted', async () => {
      const url = await server.createDatabase()
      const s = await openOn(url)
      const c = await rawClient(url)
      try {
        const flying = record({serial: 901n})
        await c.query('BEGIN')
        const [{out}] = (
          await c.query('SELECT sshca_issue_gated($1::jsonb, $2) AS out', [
            JSON.stringify([batchItem({token: {id: 'in-flight', expiresAt: 3000, issuedAt: 0}, record: flying})]),
            RESTORE_LEEWAY,
          ])
        ).rows as [{out: unknown}]
        assert.deepEqual(out, [{outcome: 'ok'}])
        const stop = s.setIssuanceStop({at: 5, reason: 'incident'})
        assert.equal(await settledYet(stop, url), false, 'the stop did not wait for the issuance in flight')
        await c.query('COMMIT')
        await stop
        // what the stop command counts once it returns holds the certificate that was in flight
        assert.ok(await s.findCertificate(901n))
        assert.deepEqual(await s.issue({token: {id: 'after', expiresAt: 3000, issuedAt: 0}, record: record()}), {
          ok: false,
          reason: 'stopped',
          stop: {at: 5, reason: 'incident'},
        })
      } finally {
        await c.end()
        await s.close()
      }
    })

    it('an issuance waits for a stop being written, then is refused by it (a fresh read, not its first snapshot)', async () => {
      const url = await server.createDatabase()
      const s = await openOn(url)
      const c = await rawClient(url)
      try {
        await c.query('BEGIN')
        await c.query("SELECT pg_advisory_xact_lock(hashtextextended('sshca issuance gate', 0))")
        await c.query("INSERT INTO meta (key, value) VALUES ('issuance_stop', $1)", [
          JSON.stringify({at: 6, reason: 'being written'}),
        ])
        const issuance = s.issue({token: {id: 'racing', expiresAt: 3000, issuedAt: 0}, record: record({serial: 902n})})
        assert.equal(await settledYet(issuance, url), false, 'the issuance did not wait for the stop being written')
        await c.query('COMMIT')
        assert.deepEqual(await issuance, {ok: false, reason: 'stopped', stop: {at: 6, reason: 'being written'}})
        assert.equal(await s.findCertificate(902n), undefined)
      } finally {
        await c.end()
        await s.close()
      }
    })
  })

  describe("a host revocation raced with renewals on other replicas: the lineages' lock", () => {
    const fresh = {validAfter: 1n, validBefore: 0x7fff_ffffn}
    const host = (fp: string) => record({certType: 'host', keyFingerprint: fp, keyId: 'host:raced', ...fresh})
    const revoked = {event: 'certificate_revoked', at: 60, fields: () => ({})}
    // a connection a failed test left mid-transaction would hold its locks past the test
    const connections: pg.Client[] = []
    afterEach(async () => {
      await Promise.all(connections.splice(0).map((c) => c.end().catch(() => undefined)))
    })
    /** Another replica's transaction on a connection of its own, left open until commit(). */
    async function otherReplica(
      url: string,
    ): Promise<{query(sql: string, values?: unknown[]): Promise<unknown>; commit(): Promise<void>}> {
      const c = await rawClient(url)
      connections.push(c)
      await c.query('BEGIN')
      return {query: (sql, values) => c.query(sql, values), commit: async () => void (await c.query('COMMIT'))}
    }
    /** enrol a (k1) → renew b (k1): a lineage on its way. */
    async function lineage(s: Store, tag: string) {
      const a = host(`SHA256:${tag}-k1`)
      const b = host(a.keyFingerprint)
      assert.deepEqual(
        await s.issue({token: {id: `${tag}-a`, expiresAt: 3000, issuedAt: 0}, record: a, lineage: {kind: 'enrol'}}),
        {
          ok: true,
        },
      )
      assert.deepEqual(
        await s.issue({
          token: {id: `${tag}-b`, expiresAt: 3000, issuedAt: 0},
          record: b,
          lineage: {kind: 'renew', parent: a.serial},
        }),
        {ok: true},
      )
      return {a, b}
    }

    it('a rekey in flight when ca revoke --serial starts: the revocation waits for its commit, then revokes it too', async () => {
      const url = await server.createDatabase()
      const s = await openOn(url)
      try {
        const {a, b} = await lineage(s, 'first')
        const c = host('SHA256:first-k2')
        const rekey = await otherReplica(url)
        await rekey.query('SELECT sshca_issue_gated($1::jsonb, $2)', [
          JSON.stringify([
            batchItem({
              token: {id: 'first-c', expiresAt: 3000, issuedAt: 0},
              record: c,
              lineage: {kind: 'rekey', parent: b.serial, parentKey: b.keyFingerprint},
            }),
          ]),
          RESTORE_LEEWAY,
        ])
        let settled = false
        const revocation = s
          .revokeAll([{serial: a.serial, keyId: null, keyFingerprint: null, reason: 'stolen', revokedAt: 60}], revoked)
          .finally(() => (settled = true))
        // without the lock the revocation reads the descendants now, before the rekey commits, and misses c
        await waitFor(
          'the revocation to wait for the lock, or to be done',
          async () => settled || (await advisoryWaits(url)) > 0,
        )
        assert.equal(settled, false, 'the revocation did not wait for the rekey in flight')
        await rekey.commit()
        const saved = await revocation
        assert.deepEqual(new Set(saved.slice(1).map((r) => r.serial)), new Set([b.serial, c.serial]))
        const renewal = await s.issue({
          token: {id: 'first-d', expiresAt: 3000, issuedAt: 0},
          record: host(c.keyFingerprint),
          lineage: {kind: 'renew', parent: c.serial},
        })
        assert.equal(!renewal.ok && renewal.reason, 'revoked')
      } finally {
        await s.close()
      }
    })

    it('a renewal arriving while a revocation holds the lock: it waits for the commit, then finds its parent revoked', async () => {
      const url = await server.createDatabase()
      const s = await openOn(url)
      try {
        const {a, b} = await lineage(s, 'second')
        // another replica's ca revoke, as PostgresStore.revokeIn writes it, between its rows and its commit
        const revocation = await otherReplica(url)
        await revocation.query("SELECT pg_advisory_xact_lock(hashtextextended('sshca host lineages', 0))")
        for (const [id, serial, of] of [
          ['root', a.serial, null],
          ['child', b.serial, 'root'],
        ] as const)
          await revocation.query(
            "INSERT INTO revocations (id, serial, key_id, key_fingerprint, reason, revoked_at, cascade_of) VALUES ($1, $2, NULL, NULL, 'stolen', 60, $3)",
            [id, serial.toString(), of],
          )
        let settled = false
        const renewal = s
          .issue({
            token: {id: 'second-c', expiresAt: 3000, issuedAt: 0},
            record: host(b.keyFingerprint),
            lineage: {kind: 'renew', parent: b.serial},
          })
          .finally(() => (settled = true))
        // without the lock the renewal checks now, sees no committed revocation, and is issued
        await waitFor(
          'the renewal to wait for the lock, or to be done',
          async () => settled || (await advisoryWaits(url)) > 0,
        )
        assert.equal(settled, false, 'the renewal did not wait for the revocation in flight')
        await revocation.commit()
        const out = await renewal
        assert.equal(!out.ok && out.reason, 'revoked')
        assert.equal(!out.ok && out.reason === 'revoked' && out.revocation.id, 'child')
      } finally {
        await s.close()
      }
    })

    it('renewals and rekeys racing on two replicas while a third revokes the first certificate: every one committed is revoked', async () => {
      const url = await server.createDatabase()
      const [s, r, admin] = await Promise.all([openOn(url), openOn(url), openOn(url)])
      let stop = false
      try {
        const {a, b} = await lineage(s, 'load')
        let head = b
        const issued: IssuedRecord[] = [b]
        let ended = false
        let step = 0
        // each step: four attempts from the head, on both replicas, each in its own turn (one wins)
        const renewing = (async () => {
          while (!stop) {
            step++
            const recs = Array.from({length: 4}, () =>
              host(step % 3 === 0 ? `SHA256:load-k${step}` : head.keyFingerprint),
            )
            const pending: Promise<IssueOutcome>[] = []
            for (const [i, rec] of recs.entries()) {
              const lineage =
                rec.keyFingerprint === head.keyFingerprint
                  ? ({kind: 'renew', parent: head.serial} as const)
                  : ({kind: 'rekey', parent: head.serial, parentKey: head.keyFingerprint} as const)
              pending.push(
                (i % 2 ? r : s).issue({
                  token: {id: `load-${step}-${i}`, expiresAt: 3000, issuedAt: 0},
                  record: rec,
                  lineage,
                }),
              )
              await new Promise((res) => setImmediate(res))
            }
            const out = await Promise.all(pending)
            const won = recs.filter((_, i) => out[i]!.ok)
            if (out.every((o) => !o.ok && o.reason === 'revoked')) return (ended = true)
            if (won[0]) {
              head = won[0]
              issued.push(won[0])
            }
          }
        })()
        await waitFor('a few renewals', () => issued.length >= 4)
        const saved = await admin.revokeAll(
          [{serial: a.serial, keyId: null, keyFingerprint: null, reason: 'stolen', revokedAt: 60}],
          revoked,
        )
        // the lineage ends at once; a head that escaped the revocation would go on renewing
        const after = step
        await waitFor('the lineage to end, or 20 more steps', () => ended || step > after + 20)
        stop = true
        await renewing
        const covered = new Set((await r.revocationSnapshot()).revocations.map((x) => x.serial))
        const missed = issued.filter((x) => !covered.has(x.serial)).map((x) => x.serial.toString())
        assert.deepEqual(
          missed,
          [],
          `committed after the revocation read its descendants (${saved.length - 1} covered)`,
        )
        assert.ok(ended, 'the newest certificate still renews')
      } finally {
        stop = true
        await Promise.all([s.close(), r.close(), admin.close()])
      }
    })
  })

  describe('one bad issuance in a group commit fails only itself', () => {
    /** Issuances sent in one event-loop turn: one sshca_issue call, one batch. */
    const together = (s: Store, reqs: Parameters<Store['issue']>[0][]) =>
      Promise.allSettled(reqs.map((r) => s.issue(r)))

    it('a value the database refuses (expires_at not a number): the good issuances of its batch are recorded', async () => {
      const s = await openOn(await server.createDatabase())
      try {
        const good = [record(), record()]
        const poisoned = record()
        const [a, bad, b] = await together(s, [
          {token: {id: 'good-1', expiresAt: 3000, issuedAt: 0}, record: good[0]!},
          {token: {id: 'poisoned', expiresAt: Number.NaN, issuedAt: 0}, record: poisoned},
          {token: {id: 'good-2', expiresAt: 3000, issuedAt: 0}, record: good[1]!},
        ])
        assert.deepEqual(a, {status: 'fulfilled', value: {ok: true}})
        assert.deepEqual(b, {status: 'fulfilled', value: {ok: true}})
        assert.equal(bad!.status, 'rejected')
        for (const r of good) assert.deepEqual(await s.findCertificate(r.serial), r)
        assert.equal(await s.findCertificate(poisoned.serial), undefined)
        // a replay in a batch is still a replay: the item-by-item path keeps the store's verdicts
        const [again, fresh] = await together(s, [
          {token: {id: 'good-1', expiresAt: 3000, issuedAt: 0}, record: record()},
          {token: {id: 'good-3', expiresAt: 3000, issuedAt: 0}, record: record()},
        ])
        assert.equal(again?.status === 'fulfilled' && again.value.ok, false)
        assert.deepEqual(fresh, {status: 'fulfilled', value: {ok: true}})
      } finally {
        await s.close()
      }
    })

    it("the item-by-item path after a refused batch stays within one call's wait: an item it could not send in time fails, nothing of it written", async () => {
      // db.timeout 1 s: a call waits up to 1 s for a connection and 1.5 s for its statement. Another
      // replica holds the spends of good-1..3 uncommitted, so each statement on them waits out its
      // statement_timeout (1 s). Item by item, good-1 started in time and waited its second; good-2 and
      // good-3 would have started past the first second and ended past the call's 2.5 s (they did, each
      // a second more: 3 s for good-3, the connection closed by then, the token spent for nobody had it
      // committed)
      const url = await server.createDatabase()
      const s = await openOn(url, {timeout: 1})
      const ids = ['good-1', 'good-2', 'good-3']
      const other = await rawClient(url)
      try {
        await other.query('BEGIN')
        await other.query('SELECT sshca_issue($1::jsonb)', [
          JSON.stringify(ids.map((id) => batchItem({token: {id, expiresAt: 3000, issuedAt: 0}, record: record()}))),
        ])
        const goods = ids.map(() => record())
        const [poisoned, ...rest] = await together(s, [
          {token: {id: 'poisoned', expiresAt: Number.NaN, issuedAt: 0}, record: record()},
          ...ids.map((id, i) => ({token: {id, expiresAt: 3000, issuedAt: 0}, record: goods[i]!})),
        ])
        assert.equal(poisoned!.status, 'rejected')
        const reasons = rest.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'fulfilled'))
        assert.match(reasons[0]!, /statement timeout/, 'good-1 was sent, and waited out its statement')
        for (const r of reasons.slice(1)) assert.match(r, /did not record the issuance within db\.timeout/)
        for (const r of rest) assert.equal((r as PromiseRejectedResult).reason.code, 'ERR_STORE_UNAVAILABLE')
        await other.query('ROLLBACK')
        for (const g of goods) assert.equal(await s.findCertificate(g.serial), undefined)
        for (const id of ids) assert.equal(await s.spentToken(id), undefined)
      } finally {
        await other.end().catch(() => undefined)
        await s.close()
      }
    })

    it('a NUL or a lone surrogate in what an IdP controls (sub, claims) or in a token id: stored escaped, the batch succeeds', async () => {
      const s = await openOn(await server.createDatabase())
      try {
        const good = record()
        const hostile = record({
          subject: 'mallory\u0000\ud800x\udc00',
          claims: {sub: 'mallory\u0000', 'k\u0000': '\udfff', nested: ['\u0000']},
        })
        const [a, h] = await together(s, [
          {token: {id: 'good', expiresAt: 3000, issuedAt: 0}, record: good},
          {token: {id: 'sshpop#a\u0000b', expiresAt: 3000, issuedAt: 0}, record: hostile},
        ])
        assert.deepEqual(a, {status: 'fulfilled', value: {ok: true}})
        assert.deepEqual(h, {status: 'fulfilled', value: {ok: true}})
        const row = (await s.findCertificate(hostile.serial))!
        // the JSON escape, six characters, where the character was; the claims column is JSON and keeps them
        assert.equal(row.subject, 'mallory\\u0000\\ud800x\\udc00')
        assert.deepEqual(row.claims, hostile.claims)
        assert.deepEqual(await s.findCertificate(good.serial), good)
        assert.equal((await s.spentToken('sshpop#a\\u0000b'))?.serial, String(hostile.serial))
      } finally {
        await s.close()
      }
    })
  })

  describe('migrations', () => {
    it('replicas starting at once on an empty database: every one opens, each migration is applied once', async () => {
      const url = await server.createDatabase()
      const stores = await Promise.all(Array.from({length: 4}, () => openOn(url)))
      const db = url.split('/').pop()!
      assert.equal(
        await server.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations", db),
        `${Array.from({length: SCHEMA_VERSION}, (_, i) => i + 1).join(',')}\n`,
      )
      assert.deepEqual(await stores[0]!.issue({token: {id: 't', expiresAt: 9, issuedAt: 0}, record: record()}), {
        ok: true,
      })
      await Promise.all(stores.map((s) => s.close()))
    })

    it('refuses a database from a newer sshca; with autoMigrate off, refuses an old one until `ca migrate`', async () => {
      const url = await server.createDatabase()
      const db = url.split('/').pop()!
      const config = configWith(server.db({url, autoMigrate: false}))
      await assert.rejects(
        openStore(config, 'server'),
        (e: {code?: string; message: string}) =>
          e.code === 'ERR_CA_CONFIG' && /schema version 0; this sshca needs/.test(e.message),
      )
      assert.deepEqual(await migrateStore(config), {from: 0, to: SCHEMA_VERSION, backend: 'postgresql'})
      assert.deepEqual(await migrateStore(config), {from: SCHEMA_VERSION, to: SCHEMA_VERSION, backend: 'postgresql'})
      await (await openStore(config, 'server')).close()
      await server.psql(
        `INSERT INTO schema_migrations (version, name) VALUES (${SCHEMA_VERSION + 1}, 'from the future')`,
        db,
      )
      await assert.rejects(
        openStore(config, 'server'),
        (e: {code?: string; message: string}) => e.code === 'ERR_CA_CONFIG' && /newer than this sshca/.test(e.message),
      )
    })
  })

  describe('metrics', () => {
    it('reports each group commit to the meter: its batch size and how long the round trip took', async () => {
      const url = await server.createDatabase()
      const commits: [number, number][] = []
      const s = await openStore(configWith(server.db({url, pool: 4})), 'server', {
        onCommit: (n, seconds) => commits.push([n, seconds]),
      })
      try {
        const outs = await Promise.all(
          Array.from({length: 5}, (_, i) =>
            s.issue({token: {id: `metered-${i}`, expiresAt: 9, issuedAt: 0}, record: record()}),
          ),
        )
        assert.ok(outs.every((o) => o.ok))
        assert.equal(
          commits.reduce((sum, [n]) => sum + n, 0),
          5,
        )
        assert.ok(
          commits.every(([n, seconds]) => n >= 1 && seconds > 0 && seconds < 60),
          JSON.stringify(commits),
        )
      } finally {
        await s.close()
      }
    })
  })

  describe('sshca ca migrate', () => {
    it('applies what is pending once, on PostgreSQL and on SQLite, and says from which version to which', async () => {
      const url = await server.createDatabase()
      for (const db of [server.db({url}), {type: 'sqlite', path: 'db/sshca.sqlite'}]) {
        const dir = tempDir('sshca-migrate-')
        writeFileSync(join(dir, 'ca.yaml'), JSON.stringify({db}))
        const first = await sshca(['ca', 'migrate', '--config', join(dir, 'ca.yaml'), '--json'])
        assert.equal(first.code, 0, first.stderr)
        assert.deepEqual(JSON.parse(first.stdout), {
          config: join(dir, 'ca.yaml'),
          backend: db.type,
          from: 0,
          to: SCHEMA_VERSION,
          applied: SCHEMA_VERSION,
        })
        const again = await sshca(['ca', 'migrate', '--config', join(dir, 'ca.yaml')])
        assert.equal(again.code, 0, again.stderr)
        assert.match(again.stdout, new RegExp(`at schema version ${SCHEMA_VERSION}; nothing to apply`))
      }
    })

    it('exits 6 (unreachable) naming the database when it cannot connect, without the password', async () => {
      const dir = tempDir('sshca-migrate-')
      writeFileSync(
        join(dir, 'ca.yaml'),
        JSON.stringify({db: server.db({url: 'postgres://sshca@127.0.0.1:1/sshca', timeout: 2})}),
      )
      const r = await sshca(['ca', 'migrate', '--config', join(dir, 'ca.yaml')])
      assert.equal(r.code, 6, r.stderr)
      assert.match(r.stderr, /database is unavailable/)
      assert.ok(!r.stderr.includes(server.password))
    })
  })

  describe('connection settings', () => {
    it('takes the password from db.passwordFile or $PGPASSWORD; refuses a file others can read and a URL holding one', async () => {
      const url = await server.createDatabase()
      const dir = tempDir('sshca-pgpw-')
      const loose = join(dir, 'pw')
      writeFileSync(loose, `${server.password}\n`)
      chmodSync(loose, 0o644)
      await assert.rejects(
        openStore(configWith(server.db({url, passwordFile: loose})), 'admin'),
        (e: {code?: string}) => e.code === 'ERR_FILE_PERMISSIONS',
      )
      const wrong = join(dir, 'wrong')
      writeFileSync(wrong, 'not the password\n', {mode: 0o600})
      await assert.rejects(
        openStore(configWith(server.db({url, passwordFile: wrong})), 'admin'),
        /password authentication failed/,
      )
      const {passwordFile: _, ...noFile} = server.db({url})
      const saved = process.env.PGPASSWORD
      process.env.PGPASSWORD = server.password
      try {
        await (await openStore(configWith(noFile), 'admin')).close()
      } finally {
        if (saved === undefined) delete process.env.PGPASSWORD
        else process.env.PGPASSWORD = saved
      }
      assert.throws(
        () => configWith(server.db({url: url.replace('sshca@', `sshca:${server.password}@`)})),
        (e: Error) => /db\.url: holds a password/.test(e.message) && !e.message.includes(server.password),
      )
      assert.throws(
        () => configWith(server.db({url: `${url}?sslmode=require`})),
        /db\.url: \?sslmode= is not supported: TLS is set with db\.tls/,
      )
    })
  })

  describe('TLS to the database', () => {
    let tls: TestPostgres
    let caFile: string
    let otherCa: string
    before(async () => {
      const root = await createRoot('db CA')
      const leaf = await createTlsCert(['127.0.0.1'], {cert: root.cert, key: root.key})
      const dir = tempDir('sshca-pgtls-')
      caFile = join(dir, 'db-ca.crt')
      writeFileSync(caFile, root.pem)
      otherCa = join(dir, 'other-ca.crt')
      writeFileSync(otherCa, (await createRoot('someone else')).pem)
      tls = await startPostgres({
        files: {'server.crt': leaf.pem, 'server.key': leaf.key.export({type: 'pkcs8', format: 'pem'}) as string},
        settings: {ssl: 'on', ssl_cert_file: '{dir}/server.crt', ssl_key_file: '{dir}/server.key'},
      })
    })
    after(async () => tls?.destroy())

    it("verify-full with the database's CA connects; another CA, or no TLS where it is demanded, is refused", async () => {
      const open = (t: Record<string, unknown>) => openStore(configWith(tls.db({tls: t})), 'admin')
      await (await open({mode: 'verify-full', ca: caFile})).close()
      await (await open({mode: 'verify-ca', ca: caFile})).close()
      await assert.rejects(
        open({mode: 'verify-full', ca: otherCa}),
        (e: {code?: string; message: string}) => e.code === 'ERR_STORE_UNAVAILABLE' && /certificate/.test(e.message),
      )
      // the server really speaks TLS to us: pg_stat_ssl says so for our connection
      const s = await open({mode: 'verify-full', ca: caFile})
      try {
        assert.equal(
          await tls.psql(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'sshca'",
          ),
          '1\n',
        )
      } finally {
        await s.close()
      }
      await assert.rejects(
        openStore(configWith(server.db({tls: {mode: 'verify-full', ca: caFile}})), 'admin'),
        (e: {code?: string; message: string}) =>
          e.code === 'ERR_STORE_UNAVAILABLE' && /does not support SSL/.test(e.message),
      )
    })
  })

  describe('outage', () => {
    // its own server: stopping the shared one would pull it from under the other tests
    let own: TestPostgres
    before(async () => {
      own = await startPostgres()
    })
    after(async () => own?.destroy())

    it('fails closed with ERR_STORE_UNAVAILABLE within db.timeout while the server is down, and heals without reopening', async () => {
      const s = await openStore(configWith(own.db({pool: 3, timeout: 2})), 'server')
      try {
        assert.deepEqual(await s.issue({token: {id: 'before', expiresAt: 9, issuedAt: 0}, record: record()}), {
          ok: true,
        })
        await own.stop()
        const t0 = Date.now()
        const outcomes = await Promise.allSettled([
          s.issue({token: {id: 'during', expiresAt: 9, issuedAt: 0}, record: record()}),
          s.ping(),
          s.revocations(),
          s.recordAdminEvent('certificate_revoked', {}, 1),
        ])
        assert.ok(Date.now() - t0 < 4_000, `took ${Date.now() - t0} ms`)
        for (const o of outcomes)
          assert.equal(
            o.status === 'rejected' && (o.reason as {code?: string}).code,
            'ERR_STORE_UNAVAILABLE',
            JSON.stringify(o),
          )
        await own.start()
        // the pool reconnects by itself; the token refused during the outage was not spent
        assert.deepEqual(await s.issue({token: {id: 'during', expiresAt: 9, issuedAt: 0}, record: record()}), {
          ok: true,
        })
        assert.equal((await s.issue({token: {id: 'before', expiresAt: 9, issuedAt: 0}, record: record()})).ok, false)
        await s.ping()
      } finally {
        await s.close()
      }
    })
  })
})
