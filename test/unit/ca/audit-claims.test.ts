/**
 * The claims an audit line keeps (selectedClaims): identity and CI provenance cut to size, and every
 * claim the policy reads whole — a policy what-if replays them, and a list cut at 20 elements hid the
 * group a rule granted from (a what-if that showed the same policy taking a principal away).
 */
import assert from 'node:assert/strict'
import {selectedClaims} from '../../../src/ca/observe/audit.ts'

describe('selectedClaims: what an audit line keeps of a token', () => {
  const groups = Array.from({length: 25}, (_, i) => `g${i}`)
  const long = 'x'.repeat(400)
  const claims = {sub: 's', name: long, groups, actor: 'a', aud: 'secret-ish', nonce: 'n'}

  it('claims the policy does not read: the audited ones only, lists cut at 20 and text at 300', () => {
    assert.deepEqual(selectedClaims(claims), {
      sub: 's',
      name: long.slice(0, 300),
      groups: groups.slice(0, 20),
      actor: 'a',
    })
  })

  it('claims the policy reads: whole, audited or not', () => {
    assert.deepEqual(selectedClaims(claims, ['groups', 'name', 'nonce']), {
      sub: 's',
      name: long,
      groups,
      actor: 'a',
      nonce: 'n',
    })
  })
})
