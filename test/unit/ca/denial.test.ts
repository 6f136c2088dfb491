/**
 * A denial is an answer, not a fault: it carries its code, reason and details, but no stack (capturing
 * one was a quarter of what a shed request cost under overload), and it leaves other errors' stacks alone.
 */
import assert from 'node:assert/strict'
import {isSshcaError} from '../../../src/errors.ts'
import {denial, DenialError, reasonOf} from '../../../src/ca/policy/types.ts'

describe('denials', () => {
  it('carry code, reason and details but no stack frames; Error.stackTraceLimit is left as it was', () => {
    const before = Error.stackTraceLimit
    const d = denial('ERR_CA_OVERLOADED', 'overloaded', 'too many', {retry_after_seconds: 1})
    assert.ok(d instanceof DenialError && isSshcaError(d, 'ERR_CA_OVERLOADED'))
    assert.equal(reasonOf(d), 'overloaded')
    assert.deepEqual(d.details, {retry_after_seconds: 1, reason: 'overloaded'})
    assert.equal(d.stack, 'DenialError: too many')
    assert.equal(Error.stackTraceLimit, before)
    assert.match(new Error('x').stack ?? '', /\n\s+at /)
  })

  it('restore the limit a caller had set', () => {
    const before = Error.stackTraceLimit
    Error.stackTraceLimit = 3
    try {
      denial('ERR_POLICY_DENIED', 'no_rule_matched', 'no rule')
      assert.equal(Error.stackTraceLimit, 3)
    } finally {
      Error.stackTraceLimit = before
    }
  })
})
