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
