/**
 * The glob algebra behind host patterns (src/ssh/host-pattern.ts) against brute force: matching
 * against a regular expression, covering and intersecting against every name over a small alphabet.
 * These decide which hosts a CA's certificates are trusted for (`sshca config --pattern` may only
 * narrow them) and which contexts are warned about as overlapping.
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {globCovers, globMatches, globsIntersect} from '../../src/ssh/host-pattern.ts'
import {property} from './fuzz.ts'

/** ssh's match_pattern as a regular expression: `*` any run (dots included), `?` one character. */
const reference = (glob: string, name: string): boolean =>
  new RegExp(
    `^${[...glob].map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.]/g, '\\.'))).join('')}$`,
  ).test(name)

const glob = (max: number) =>
  fc.array(fc.constantFrom('a', 'b', '.', '*', '?'), {maxLength: max}).map((cs) => cs.join(''))
const name = (max: number) => fc.array(fc.constantFrom('a', 'b', '.'), {maxLength: max}).map((cs) => cs.join(''))

/** Every name over a, b, "." and x (a character no glob here names) of length 0..max. */
function names(max: number): string[] {
  const out = ['']
  let level = ['']
  for (let n = 1; n <= max; n++) {
    level = level.flatMap((s) => ['a', 'b', '.', 'x'].map((c) => s + c))
    out.push(...level)
  }
  return out
}
const UP_TO_6 = names(6)

describe('host pattern globs against brute force', () => {
  property(
    'globMatches is ssh match_pattern',
    400,
    fc.property(glob(8), name(8), (g, n) => globMatches(g, n) === reference(g, n)),
  )

  property(
    'globCovers is sound: when it says inner ⊆ outer, every name inner matches, outer matches',
    300,
    fc.property(glob(4), glob(4), (outer, inner) => {
      if (!globCovers(outer, inner)) return true
      return UP_TO_6.every((n) => !globMatches(inner, n) || globMatches(outer, n))
    }),
  )

  property(
    'globCovers is exact for a name without wildcards, and for equal globs',
    300,
    fc.property(
      glob(6),
      name(6),
      (outer, n) => globCovers(outer, n) === globMatches(outer, n) && globCovers(outer, outer),
    ),
  )

  property(
    'globsIntersect: true exactly when some name matches both',
    300,
    fc.property(
      glob(3),
      glob(3),
      (a, b) => globsIntersect(a, b) === UP_TO_6.some((n) => globMatches(a, n) && globMatches(b, n)),
    ),
  )

  it('long patterns end (matching is memoized: without it this runs for ages, past the test timeout)', () => {
    const many = `${'*a'.repeat(20)}b`
    const hay = 'a'.repeat(60)
    assert.equal(globMatches(many, hay), false)
    assert.equal(globCovers(many, hay), false)
    assert.equal(globsIntersect(many, `${hay}c`), false)
  })
})
