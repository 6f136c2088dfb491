import assert from 'node:assert/strict'
import {SharedRateStore} from '../../../src/ca/http/rate-store.ts'

describe('SharedRateStore (per-address signing allowance)', () => {
  const incr = (s: SharedRateStore, key: string, windowMs = 1000) =>
    new Promise<{current: number; ttl: number}>((resolve) => s.incr(key, (_e, r) => resolve(r), windowMs))

  it('counts per key within a window and starts again after it', async () => {
    let now = 10_000
    const s = new SharedRateStore(undefined, () => now)
    assert.deepEqual(await incr(s, 'a'), {current: 1, ttl: 1000})
    now += 400
    assert.deepEqual(await incr(s, 'a'), {current: 2, ttl: 600})
    assert.equal((await incr(s, 'b')).current, 1)
    now += 600
    assert.deepEqual(await incr(s, 'a'), {current: 1, ttl: 1000})
  })

  it('is its own child, so every route shares one allowance', async () => {
    const s = new SharedRateStore()
    const child = s.child()
    assert.equal(child, s)
    await incr(s, 'x')
    assert.equal((await incr(child, 'x')).current, 2)
  })

  it('reads without counting', async () => {
    const s = new SharedRateStore(undefined, () => 0)
    await incr(s, 'k')
    const r = await new Promise<{current: number}>((resolve) => s.read('k', (_e, v) => resolve(v), 1000))
    assert.equal(r.current, 1)
    assert.equal((await incr(s, 'k')).current, 2)
  })

  it('keeps at most 50 000 addresses, dropping the oldest', async () => {
    let now = 0
    const s = new SharedRateStore(undefined, () => now)
    for (let i = 0; i < 50_010; i++) {
      now++
      await incr(s, `k${i}`, 10_000_000)
    }
    assert.equal(s.size, 50_000)
    // the first ten were dropped: they start over
    assert.equal((await incr(s, 'k0', 10_000_000)).current, 1)
    assert.equal((await incr(s, 'k50009', 10_000_000)).current, 2)
  })
})
