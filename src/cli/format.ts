/** Small formatting helpers shared by the renderers. Pure: the clock and time zone are parameters. */
import {FOREVER} from '../ssh/cert.ts'
import {isoFromSeconds} from '../util/iso-time.ts'
import {terminalText} from '../util/text.ts'

/** `2026-11-23T17:00:00` in the process's local time zone, as ssh-keygen prints times. */
export function localTimestamp(seconds: bigint | number): string {
  // past Date's last day (the year 275760) only our own arithmetic reaches: UTC, and marked so (Z)
  if (Number(seconds) > 8_640_000_000_000) return isoFromSeconds(BigInt(seconds)).replace('.000Z', 'Z')
  const d = new Date(Number(seconds) * 1000)
  const p = (n: number): string => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
}

/** ssh-keygen's validity wording: forever / before X / after X / from X to Y. */
export function validityText(validAfter: bigint, validBefore: bigint): string {
  if (validAfter === 0n && validBefore === FOREVER) return 'forever'
  if (validAfter === 0n) return `before ${localTimestamp(validBefore)}`
  if (validBefore === FOREVER) return `after ${localTimestamp(validAfter)}`
  return `from ${localTimestamp(validAfter)} to ${localTimestamp(validBefore)}`
}

/** `3d4h`, `7h59m`, `12m30s`, `45s`: the two largest units, starting at the first non-zero one. */
export function shortDuration(totalSeconds: number): string {
  let s = Math.max(0, Math.floor(totalSeconds))
  const units: [string, number][] = [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ]
  const parts: string[] = []
  for (const [u, n] of units) {
    if (parts.length === 0 && s < n && n !== 1) continue
    const v = Math.floor(s / n)
    s -= v * n
    parts.push(`${v}${u}`)
    if (parts.length === 2) break
  }
  return parts.join('')
}

/** ISO 8601 (UTC) for JSON, or null for the open ends of a validity ("always", "forever"). */
export function isoOrNull(seconds: bigint, openEnd: bigint): string | null {
  return seconds === openEnd ? null : isoFromSeconds(seconds)
}

/**
 * Pads columns of a table; the last column is not padded. Cells are made terminal-safe first
 * (terminalText), so a cell whose control characters print as escapes keeps its column.
 */
export function table(cells: string[][]): string {
  if (cells.length === 0) return ''
  const rows = cells.map((r) => r.map(terminalText))
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!)))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  )
}
