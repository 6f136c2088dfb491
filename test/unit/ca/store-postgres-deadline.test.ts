/**
 * The PostgreSQL store's retries start no statement past the call's wait (postgres.ts, inTime): with a
 * pool whose connections are all taken, a retry waits for one first, and that wait counts too.
 * A fake pool, as pg's: query() is a connection from the pool, then the statement on it.
 */
import assert from 'node:assert/strict'
import {PostgresStore} from '../../../src/ca/store/postgres.ts'
import {SshcaError} from '../../../src/errors.ts'
import {record} from '../../contract/store.ts'

const T = 200 // db.timeout, ms
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

function fakePool(connectWaits: number[], statements: {at: number; attempt: number}[]) {
  let connects = 0
  const deadlock = () => Object.assign(new Error('deadlock detected'), {code: '40P01'})
  const client = {
    async query(_q: unknown) {
      statements.push({at: performance.now(), attempt: statements.length})
      await sleep(T * 0.6)
      throw deadlock()
    },
    release() {},
  }
  const pool = {
    options: {connectionTimeoutMillis: T},
    async connect() {
      await sleep(connectWaits[connects++] ?? 0)
      return client
    },
    async query(q: unknown) {
      const c = await pool.connect()
      try {
        return await c.query(q)
      } finally {
        c.release()
      }
    },
  }
  return pool
}

describe('PostgreSQL store: a retry and its connection wait', () => {
  it('a deadlock retry that waits for a connection past the call wait sends no statement; the call fails unavailable', async () => {
    const statements: {at: number; attempt: number}[] = []
    // the first statement has a connection at once and deadlocks after 0.6 T; the retry's connection
    // comes 0.9 T later: its statement would start at 1.5 T, past the last start (T)
    const pool = fakePool([0, T * 0.9, 0, 0], statements)
    const store = new (PostgresStore as unknown as new (p: unknown) => PostgresStore)(pool)
    const started = performance.now()
    const r = record({issuedAt: 1})
    await assert.rejects(
      store.issue({token: {id: 't1', expiresAt: 3000, issuedAt: 1}, record: r}),
      (e: unknown) => e instanceof SshcaError && e.code === 'ERR_STORE_UNAVAILABLE',
    )
    const late = statements.filter((s) => s.at - started > T + 20)
    assert.deepEqual(
      late.map((s) => Math.round(s.at - started)),
      [],
      `statements started past the last start (${T} ms after the call)`,
    )
  })
})
