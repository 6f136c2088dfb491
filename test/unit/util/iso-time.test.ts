/**
 * isoFromSeconds against Date's toISOString wherever Date reaches (to the year 275760), and against the
 * Gregorian calendar's 400-year period beyond it (the u64 seconds a certificate may carry).
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {isoFromSeconds} from '../../../src/util/iso-time.ts'

const DATE_MAX_SECONDS = 8_640_000_000_000n // new Date(8.64e15) is Date's last instant
const ERA_SECONDS = 146_097n * 86_400n // 400 Gregorian years
const byDate = (s: bigint): string => new Date(Number(s) * 1000).toISOString()

describe('isoFromSeconds', () => {
  it('writes what toISOString writes: edges, leap days, four-digit and expanded years', () => {
    const at = (iso: string): bigint => BigInt(Date.parse(iso) / 1000)
    for (const s of [
      0n,
      1n,
      59n,
      86_399n,
      86_400n,
      at('2000-02-29T12:00:00Z'), // divisible by 400: a leap year
      at('2000-03-01T00:00:00Z'),
      at('2100-02-28T23:59:59Z'), // divisible by 100, not by 400: no 29th
      at('2100-03-01T00:00:00Z'),
      at('2024-02-29T00:00:00Z'),
      at('2024-12-31T23:59:59Z'),
      253_402_300_799n, // 9999-12-31T23:59:59
      253_402_300_800n, // +010000-01-01
      DATE_MAX_SECONDS,
    ])
      assert.equal(isoFromSeconds(s), byDate(s), String(s))
    assert.equal(isoFromSeconds(1_795_714_920n), '2026-11-26T17:42:00.000Z')
    assert.equal(isoFromSeconds(253_402_300_800n), '+010000-01-01T00:00:00.000Z')
  })

  it('agrees with toISOString on random times within its range', () => {
    fc.assert(
      fc.property(fc.bigInt({min: 0n, max: DATE_MAX_SECONDS}), (s) => isoFromSeconds(s) === byDate(s)),
      {numRuns: 20_000},
    )
  })

  it('beyond Date: 400 years on is the same day and time, up to 2^64 − 1 seconds', () => {
    const split = (iso: string): [bigint, string] => {
      const m = /^\+?(\d+)(-.*)$/.exec(iso)!
      return [BigInt(m[1]!), m[2]!]
    }
    fc.assert(
      fc.property(fc.bigInt({min: 0n, max: DATE_MAX_SECONDS}), fc.bigInt({min: 1n, max: 1n << 60n}), (s, k) => {
        const later = s + k * ERA_SECONDS
        fc.pre(later < 1n << 64n)
        const [y0, rest0] = split(byDate(s))
        const [y1, rest1] = split(isoFromSeconds(later))
        return y1 === y0 + 400n * k && rest1 === rest0
      }),
      {numRuns: 5_000},
    )
    // 2^62 and the largest u64 (OpenSSH's "forever"), as Python's datetime has them: the day and time of
    // the seconds modulo 400 years, and 400 years times the periods in the year
    assert.equal(isoFromSeconds(1n << 62n), '+146138514283-06-19T07:45:04.000Z')
    assert.equal(isoFromSeconds((1n << 64n) - 1n), '+584554051223-11-09T07:00:15.000Z')
  })

  it('refuses what no certificate can carry', () => {
    assert.throws(() => isoFromSeconds(-1n), RangeError)
    assert.throws(() => isoFromSeconds(1n << 64n), RangeError)
  })
})
