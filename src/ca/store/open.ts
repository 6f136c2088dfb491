/**
 * The one way to open the store a ca.yaml names (step-ca's db.New): the server, the admin commands
 * and the benchmarks all come through here, so a second backend (PostgreSQL) is one more case.
 * `role`: the server keeps its connection for hours and checkpoints SQLite's WAL on a worker thread;
 * an admin command opens, writes a row or two and closes.
 */
import {dirname} from 'node:path'
import {privateDir} from '../../util/fs.ts'
import {resolveInDir, type CaConfig} from '../config/config.ts'
import {SqliteStore} from './sqlite.ts'
import type {Store} from './store.ts'

export type StoreRole = 'server' | 'admin'

export async function openStore(config: Pick<CaConfig, 'db' | 'dir'>, role: StoreRole): Promise<Store> {
  const path = resolveInDir(config, config.db.path)
  await privateDir(dirname(path))
  return new SqliteStore(path, {background: role === 'server', durability: config.db.durability})
}

/** Runs `fn` with the store open, and closes it whatever happens. */
export async function withStore<T>(config: Pick<CaConfig, 'db' | 'dir'>, role: StoreRole, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await openStore(config, role)
  try {
    return await fn(store)
  } finally {
    await store.close()
  }
}
