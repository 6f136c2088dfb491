/**
 * When the client asks the CA again: only on 503/429 with a Retry-After in seconds the CA names, a
 * bounded number of times and seconds, with jitter so shed clients do not return together.
 */
import assert from 'node:assert/strict'
import {RETRY, retryNote, retryWait} from '../../../src/client/ca-api/retry.ts'

const res = (status: number, retryAfter?: string) => ({
  status,
  headers: retryAfter === undefined ? {} : {'retry-after': retryAfter},
})
const none = () => 0
const most = () => 0.999_999

describe('retryWait', () => {
  it('backs off 1, 2, 4 s for the 2nd, 3rd, 4th attempt where Retry-After names less', () => {
    assert.deepEqual(
      [1, 2, 3].map((attempt) => retryWait(res(503, '1'), attempt, 0, none)?.ms),
      [1000, 2000, 4000],
    )
    assert.deepEqual(
      [1, 2, 3].map((attempt) => retryWait(res(503, '1'), attempt, 0, most)?.ms),
      [1499, 2999, 5999],
    )
    assert.equal(retryWait(res(503, '3'), 2, 0, none)?.ms, 3000)
    assert.equal(retryWait(res(503, '0'), 3, 0, none)?.ms, 4000)
  })

  it('waits what a 503 or 429 names in Retry-After, plus up to half of it (at least half a second) at random', () => {
    assert.deepEqual(retryWait(res(503, '1'), 1, 0, none), {status: 503, ms: 1000, attempt: 2, of: RETRY.attempts})
    assert.equal(retryWait(res(503, '1'), 1, 0, most)?.ms, 1499)
    assert.equal(retryWait(res(429, '4'), 1, 0, none)?.ms, 4000)
    assert.equal(retryWait(res(429, '4'), 1, 0, most)?.ms, 5999)
    assert.equal(retryWait(res(503, '0'), 1, 0, most)?.ms, 1499) // never sooner than the back-off
    assert.equal(retryWait(res(503, ' 2 '), 1, 0, none)?.ms, 2000)
    assert.equal(retryWait(res(503, String(RETRY.maxWait)), 1, 0, none)?.ms, RETRY.maxWait * 1000)
  })

  it('gives up on any other status, without the header, on a date, a fraction, a list, or a wait past maxWait', () => {
    for (const status of [200, 201, 400, 401, 403, 404, 408, 413, 500, 502, 504])
      assert.equal(retryWait(res(status, '1'), 1, 0, none), undefined, String(status))
    for (const header of [undefined, '', 'Wed, 21 Oct 2026 07:28:00 GMT', '1.5', '-1', '1, 2', 'soon', '100'])
      assert.equal(retryWait(res(503, header), 1, 0, none), undefined, String(header))
    assert.equal(retryWait(res(503, String(RETRY.maxWait + 1)), 1, 0, none), undefined)
    assert.equal(retryWait({status: 503, headers: {'retry-after': ['1', '1']}}, 1, 0, none), undefined)
  })

  it('asks at most RETRY.attempts times, and waits at most RETRY.total seconds in all', () => {
    assert.equal(retryWait(res(503, '1'), RETRY.attempts - 1, 0, none)?.attempt, RETRY.attempts)
    assert.equal(retryWait(res(503, '1'), RETRY.attempts, 0, none), undefined)
    const total = RETRY.total * 1000
    assert.equal(retryWait(res(503, '1'), 1, total - 1000, none)?.ms, 1000)
    assert.equal(retryWait(res(503, '1'), 1, total - 999, none), undefined)
  })

  it('says what it waits for, and for how long', () => {
    const busy = retryNote({status: 503, ms: 1234, attempt: 2, of: 4}, 'https://ca.example')
    const limited = retryNote({status: 429, ms: 4000, attempt: 3, of: 4}, 'https://ca.example')
    assert.notEqual(busy.replace('503', ''), limited.replace('429', ''))
    for (const [note, bits] of [
      [busy, ['https://ca.example', '503', '1.2 s', '2 of 4']],
      [limited, ['https://ca.example', '429', '4.0 s', '3 of 4']],
    ] as const)
      for (const bit of bits) assert.ok(note.includes(bit), `${bit} in ${note}`)
    assert.ok(busy.endsWith('\n'))
  })
})
