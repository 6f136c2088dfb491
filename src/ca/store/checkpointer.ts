/**
 * Runs SQLite WAL checkpoints on a worker thread, so their fsyncs never stall a request on the main
 * thread (auto-checkpoints inside commits were a visible share of the CA's p99 latency). The main
 * connection sets wal_autocheckpoint = 0; this worker checkpoints PASSIVE every second, which copies
 * what it can without blocking the writer.
 *
 * The WAL file only starts over from its beginning when a write begins after a checkpoint copied
 * *every* frame; under steady load the writer always adds frames while the worker copies, so that
 * never happened and the WAL grew without bound (1.2 GB in a 10-minute soak at 200 certificates/s).
 * So once the WAL is past RESTART_PAGES, the worker asks the main thread to hold its commits (they
 * queue, the event loop runs on), copies the few frames written meanwhile, and lets it go: the next
 * commit restarts the WAL. The hold lasts one small checkpoint; the main thread ends it by itself
 * after MAX_HOLD_MS should the worker not answer.
 */
import type * as Sqlite from 'node:sqlite'
import type * as WorkerThreads from 'node:worker_threads'
import {Worker} from 'node:worker_threads'

export interface Checkpointer {
  stop(): Promise<void>
}

/** 1000 pages of 4 KiB, SQLite's own auto-checkpoint threshold. */
export const RESTART_PAGES = 1000
export const MAX_HOLD_MS = 1000

type ToMain = 'hold' | 'release'
type ToWorker = 'held' | 'stop'

/** `hold(true)` must stop commits until `hold(false)`; it is only ever called between event-loop tasks. */
export function startCheckpointer(path: string, hold: (on: boolean) => void, intervalMs = 1000): Checkpointer {
  // the worker runs checkpointWorker's own text, not this file: the single executable has no file to
  // start a worker from, and one code path serves every way sshca is installed
  const worker = new Worker(`(${checkpointWorker.toString()})(require)`, {
    eval: true,
    workerData: {path, intervalMs, restartPages: RESTART_PAGES},
  })
  worker.unref()
  let timer: NodeJS.Timeout | undefined
  const release = (): void => {
    clearTimeout(timer)
    timer = undefined
    hold(false)
  }
  worker.on('message', (m: ToMain) => {
    if (m === 'hold') {
      hold(true)
      timer = setTimeout(release, MAX_HOLD_MS)
      timer.unref()
      worker.postMessage('held' satisfies ToWorker)
    } else {
      release()
    }
  })
  return {
    async stop() {
      // unref'd while running so it never keeps a process alive; ref'd while we wait for it to end
      worker.ref()
      worker.postMessage('stop' satisfies ToWorker)
      await new Promise<void>((resolve) => worker.once('exit', () => resolve()))
      release()
    },
  }
}

/**
 * The worker thread's program. Self-contained (it is started from its source text): everything it
 * uses comes through `req`, nothing from this module's scope.
 */
function checkpointWorker(req: NodeJS.Require): void {
  const {parentPort, workerData} = req('node:worker_threads') as typeof WorkerThreads
  const {DatabaseSync} = req('node:sqlite') as typeof Sqlite
  const {path, intervalMs, restartPages} = workerData as {path: string; intervalMs: number; restartPages: number}
  const db = new DatabaseSync(path)
  db.exec('PRAGMA busy_timeout = 5000;')
  const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)')
  const passive = (): {busy: number; log: number; checkpointed: number} | undefined => {
    try {
      return checkpoint.get() as {busy: number; log: number; checkpointed: number}
    } catch {
      return undefined // busy or locked: the next tick tries again
    }
  }
  let stopped = false
  let onHeld: (() => void) | undefined
  let wake: (() => void) | undefined
  parentPort!.on('message', (m: ToWorker) => {
    if (m === 'stop') {
      stopped = true
      wake?.()
    }
    onHeld?.()
  })
  const tick = async (): Promise<void> => {
    const r = passive()
    if (r && r.log >= restartPages && !stopped) {
      // the bulk is copied; with commits held, copy the rest so the next commit restarts the WAL
      await new Promise<void>((resolve) => {
        onHeld = resolve
        parentPort!.postMessage('hold' satisfies ToMain)
      })
      onHeld = undefined
      passive()
      parentPort!.postMessage('release' satisfies ToMain)
    }
  }
  const loop = async (): Promise<void> => {
    while (!stopped) {
      await tick()
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, intervalMs)
        wake = () => {
          clearTimeout(t)
          resolve()
        }
      })
    }
    db.close()
    parentPort!.close()
  }
  void loop()
}
