/** Small helpers for benchmarks: medians of repeated runs, operations per second, printing. */
import {spawn, spawnSync} from 'node:child_process'

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}

/** Runs `fn` repeatedly for about `ms` milliseconds after a warm-up; returns operations per second. */
export function opsPerSecond(fn: () => void, ms = 1500): number {
  const warm = performance.now() + 200
  while (performance.now() < warm) fn()
  let n = 0
  const start = performance.now()
  let now = start
  while (now - start < ms) {
    for (let i = 0; i < 50; i++) fn()
    n += 50
    now = performance.now()
  }
  return (n * 1000) / (now - start)
}

export async function opsPerSecondAsync(fn: () => Promise<void>, ms = 1500): Promise<number> {
  const warm = performance.now() + 200
  while (performance.now() < warm) await fn()
  let n = 0
  const start = performance.now()
  let now = start
  while (now - start < ms) {
    await fn()
    n++
    now = performance.now()
  }
  return (n * 1000) / (now - start)
}

/** Wall time of a whole process in milliseconds, median of `runs` after one warm-up. */
/**
 * Wall time of whole processes, medians of `runs` each after a warm-up run. The commands take turns,
 * run after run, so each sees the same neighbours: a ratio of two medians measured minutes apart on a
 * shared box says more about the box than about the commands.
 */
export function wallMs<const C extends readonly Command[]>(
  commands: C,
  runs = 15,
): {[K in keyof C]: {median: number; all: number[]}} {
  const once = ({cmd, args, env}: Command): number => {
    const t = performance.now()
    const r = spawnSync(cmd, args, {env, stdio: ['ignore', 'pipe', 'pipe']})
    const dt = performance.now() - t
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`)
    return dt
  }
  for (const c of commands) once(c)
  const all = commands.map((): number[] => [])
  for (let i = 0; i < runs; i++) for (const [j, c] of commands.entries()) all[j]!.push(once(c))
  return all.map((a) => ({median: median(a), all: a})) as {[K in keyof C]: {median: number; all: number[]}}
}

interface Command {
  cmd: string
  args: string[]
  env: NodeJS.ProcessEnv
}

export interface Row {
  name: string
  value: string
  target?: string
  ok?: boolean
}

export function print(title: string, rows: Row[]): void {
  console.log(`\n${title}`)
  const w = Math.max(...rows.map((r) => r.name.length))
  for (const r of rows) {
    const verdict = r.ok === undefined ? '' : r.ok ? '  ✓' : '  ✗ below target'
    console.log(`  ${r.name.padEnd(w)}  ${r.value}${r.target ? `   (target ${r.target})` : ''}${verdict}`)
  }
}

/** Wall time of one process, without blocking this one's event loop (servers here keep serving). */
export function timedRun(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ms: number; code: number | null; stderr: string}> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const child = spawn(cmd, args, {env, stdio: ['ignore', 'ignore', 'pipe']})
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ms: performance.now() - t0, code, stderr}))
  })
}
