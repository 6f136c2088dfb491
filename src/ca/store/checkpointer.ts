/**
 * Runs SQLite WAL checkpoints on a worker thread, so their fsyncs never stall a request on the main
 * thread (auto-checkpoints inside commits were a visible share of the CA's p99 latency). The main
 * connection sets wal_autocheckpoint = 0; this worker checkpoints PASSIVE every second, which copies
 * what it can without blocking the writer.
 */
import {isMainThread, parentPort, Worker, workerData} from 'node:worker_threads'
import {DatabaseSync} from 'node:sqlite'

export interface Checkpointer {
  stop(): Promise<void>
}

export function startCheckpointer(path: string, intervalMs = 1000): Checkpointer {
  const worker = new Worker(new URL(import.meta.url), {workerData: {path, intervalMs}})
  worker.unref()
  return {
    async stop() {
      // unref'd while running so it never keeps a process alive; ref'd while we wait for it to end
      worker.ref()
      worker.postMessage('stop')
      await new Promise<void>((resolve) => worker.once('exit', () => resolve()))
    },
  }
}

if (!isMainThread && workerData && typeof (workerData as {path?: unknown}).path === 'string') {
  const {path, intervalMs} = workerData as {path: string; intervalMs: number}
  const db = new DatabaseSync(path)
  db.exec('PRAGMA busy_timeout = 5000;')
  const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)')
  const timer = setInterval(() => {
    try {
      checkpoint.get()
    } catch {
      // busy or locked: the next tick tries again
    }
  }, intervalMs)
  parentPort!.on('message', () => {
    clearInterval(timer)
    db.close()
    parentPort!.close()
  })
}
