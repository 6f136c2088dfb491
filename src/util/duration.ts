/** Durations as people write them in config and flags: `90s`, `15m`, `8h`, `30d`, `1h30m`. */

const UNIT: Record<string, number> = {s: 1, m: 60, h: 3600, d: 86400}

/** Seconds, or undefined when `text` is not a positive duration. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim()
  if (!/^(\d+[smhd])+$/.test(t)) return undefined
  let total = 0
  for (const [, n, u] of t.matchAll(/(\d+)([smhd])/g)) total += Number(n) * UNIT[u!]!
  return total > 0 && Number.isSafeInteger(total) ? total : undefined
}

/** The inverse, largest units first: 28800 → `8h`, 5400 → `1h30m`. */
export function formatDuration(seconds: number): string {
  let s = Math.floor(seconds)
  if (s <= 0) return '0s'
  let out = ''
  for (const [u, n] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (s >= n) {
      out += `${Math.floor(s / n)}${u}`
      s %= n
    }
  }
  return out
}
