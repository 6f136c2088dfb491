/**
 * A certificate's validity bound (seconds since the epoch, any u64) in ISO 8601, as Date's toISOString
 * writes it: `2026-11-26T17:42:00.000Z`, years past 9999 as `+010000-…` (ISO 8601's expanded years,
 * six digits or more). Its own arithmetic, not Date: toISOString throws past the year 275760, so one
 * certificate valid until 2^62 (another tool's "forever") made `sshca list` and `inspect` fail, and its
 * first call costs `sshca list` 0.2 ms of a 7 ms budget (V8 sets up its date cache).
 */

/** `seconds` (0 ≤ seconds < 2^64) as toISOString would write it, at any size. */
export function isoFromSeconds(seconds: bigint): string {
  if (seconds < 0n || seconds >= 1n << 64n) throw new RangeError(`not a u64 time: ${seconds}`)
  // below 2^53 days: every step exact in doubles (days < 2.2e14, eras < 1.5e9)
  const days = Number(seconds / 86400n)
  const secondOfDay = Number(seconds % 86400n)
  const {year, month, day} = civilFromDays(days)
  const two = (n: number): string => String(n).padStart(2, '0')
  const y = year <= 9999 ? String(year).padStart(4, '0') : `+${String(year).padStart(6, '0')}`
  const hh = Math.floor(secondOfDay / 3600)
  const mm = Math.floor((secondOfDay % 3600) / 60)
  return `${y}-${two(month)}-${two(day)}T${two(hh)}:${two(mm)}:${two(secondOfDay % 60)}.000Z`
}

/**
 * The proleptic Gregorian date `days` after 1970-01-01 (days ≥ 0), by Howard Hinnant's civil_from_days
 * (chrono-compatible low-level date algorithms): eras of 400 years (146,097 days) from 0000-03-01.
 */
export function civilFromDays(days: number): {year: number; month: number; day: number} {
  const z = days + 719_468
  const era = Math.floor(z / 146_097)
  const doe = z - era * 146_097 // [0, 146096]
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365) // [0, 399]
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100)) // [0, 365]
  const mp = Math.floor((5 * doy + 2) / 153) // [0, 11], March first
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1
  const month = mp < 10 ? mp + 3 : mp - 9
  return {year: yoe + era * 400 + (month <= 2 ? 1 : 0), month, day}
}
