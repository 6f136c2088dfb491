import assert from 'node:assert/strict'

/** Asserts `fn` throws an SshcaError with this code whose details include `details` (a subset). */
export function throwsCode(
  fn: () => unknown,
  code: string,
  details: Record<string, unknown> = {},
  message?: RegExp,
): void {
  assert.throws(fn, (err: {code?: string; details?: Record<string, unknown>; message?: string}) => {
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`)
    for (const [k, v] of Object.entries(details)) assert.deepEqual(err.details?.[k], v, `details.${k}`)
    if (message) assert.match(err.message ?? '', message)
    return true
  })
}

export async function rejectsCode(
  p: Promise<unknown>,
  code: string,
  details: Record<string, unknown> = {},
  message?: RegExp,
): Promise<void> {
  await assert.rejects(p, (err: {code?: string; details?: Record<string, unknown>; message?: string}) => {
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`)
    for (const [k, v] of Object.entries(details)) assert.deepEqual(err.details?.[k], v, `details.${k}`)
    if (message) assert.match(err.message ?? '', message)
    return true
  })
}

/**
 * What a terminal acts on rather than shows (src/util/text.ts's policy, written out independently):
 * C0 controls but tab, newline and a CRLF's CR, DEL, C1, the bidirectional overrides, isolates and
 * marks, the line and paragraph separators, and the invisible characters (tag characters too) but
 * the zero-width joiners.
 * None of it may reach the screen raw.
 */
export const TERMINAL_UNSAFE =
  // eslint-disable-next-line no-control-regex, no-misleading-character-class -- the point; U+034F on its own
  /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\xad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\u3164\ufeff\uffa0\u{e0000}-\u{e007f}]|\r(?!\n)/u

/** What a JSON document sshca prints must never hold raw: a newline only between its lines. */
export const JSON_UNSAFE =
  // eslint-disable-next-line no-control-regex, no-misleading-character-class -- the point; U+034F on its own
  /[\x00-\x09\x0b-\x1f\x7f-\x9f\xad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\u3164\ufeff\uffa0\u{e0000}-\u{e007f}]/u
