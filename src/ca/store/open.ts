/**
 * The one way to open the store a ca.yaml names (step-ca's db.New): the server, the admin commands
 * and the benchmarks all come through here. SQLite (the default) is one file in the CA directory;
 * PostgreSQL is shared by N replicas (its client is loaded only when ca.yaml names it).
 * `role`: the server keeps its connections for hours (SQLite: checkpoints its WAL on a worker thread;
 * PostgreSQL: a pool of db.pool connections); an admin command opens, writes a row or two and closes.
 */
import {dirname} from 'node:path'
import {DatabaseSync} from 'node:sqlite'
import {privateDir} from '../../util/fs.ts'
import {resolveInDir, type CaConfig} from '../config/config.ts'
import {migrateSqlite, SqliteStore} from './sqlite.ts'
import type {Store} from './store.ts'

export type StoreRole = 'server' | 'admin'

/** `worker`: a worker thread of `ca serve` (src/ca/workers.ts) opens its own PostgreSQL pool, named after it in pg_stat_activity. */
export async function openStore(
  config: Pick<CaConfig, 'db' | 'dir'>,
  role: StoreRole,
  o: {worker?: number; onCommit?: (batchSize: number, seconds: number) => void} = {},
): Promise<Store> {
  const db = config.db
  if (db.type === 'postgresql') {
    const {PostgresStore, pgConfig} = await import('./postgres.ts')
    const pool = await pgConfig({...config, db}, role === 'server' ? db.pool : 2)
    if (o.worker !== undefined) pool.application_name = `${pool.application_name} worker ${o.worker}`
    return PostgresStore.open(pool, {migrate: db.autoMigrate, ...(o.onCommit ? {onCommit: o.onCommit} : {})})
  }
  const path = resolveInDir(config, db.path)
  await privateDir(dirname(path))
  return new SqliteStore(path, {
    background: role === 'server',
    durability: db.durability,
    ...(o.onCommit ? {onCommit: o.onCommit} : {}),
  })
}

/** Runs `fn` with the store open, and closes it whatever happens. */
export async function withStore<T>(
  config: Pick<CaConfig, 'db' | 'dir'>,
  role: StoreRole,
  fn: (store: Store) => Promise<T>,
): Promise<T> {
  const store = await openStore(config, role)
  try {
    return await fn(store)
  } finally {
    await store.close()
  }
}

/** `sshca ca migrate`: applies the migrations the database lacks; `from` = `to` when there were none. */
export async function migrateStore(
  config: Pick<CaConfig, 'db' | 'dir'>,
): Promise<{from: number; to: number; backend: 'sqlite' | 'postgresql'}> {
  const db = config.db
  if (db.type === 'postgresql') {
    const {migratePostgres, pgConfig, storeError} = await import('./postgres.ts')
    const pg = (await import('pg')).default
    const client = new pg.Client(await pgConfig({...config, db}, 1))
    client.on('error', () => undefined)
    try {
      await client.connect()
      return {...(await migratePostgres(client)), backend: 'postgresql'}
    } catch (err) {
      throw storeError(err)
    } finally {
      await client.end().catch(() => undefined)
    }
  }
  const path = resolveInDir(config, db.path)
  await privateDir(dirname(path))
  const sqlite = new DatabaseSync(path)
  try {
    sqlite.exec('PRAGMA busy_timeout = 5000;')
    return {...migrateSqlite(sqlite), backend: 'sqlite'}
  } finally {
    sqlite.close()
  }
}
