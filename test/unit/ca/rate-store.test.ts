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

  it('reads without counting: nothing for an unknown key or a window that ended, else the count and the time left', async () => {
    let now = 5_000
    const s = new SharedRateStore(undefined, () => now)
    const read = (k: string) =>
      new Promise<{current: number; ttl: number}>((resolve) => s.read(k, (_e, v) => resolve(v), 1000))
    assert.deepEqual(await read('k'), {current: 0, ttl: 0})
    await incr(s, 'k')
    now += 300
    assert.deepEqual(await read('k'), {current: 1, ttl: 700})
    now += 700
    assert.deepEqual(await read('k'), {current: 0, ttl: 0}, 'the window ends at its last millisecond')
  })

  it('a key whose window starts again counts as the newest: the pruning drops keys idle longer', async () => {
    let now = 0
    const s = new SharedRateStore(undefined, () => now)
    await incr(s, 'busy', 10)
    for (let i = 0; i < 49_999; i++) await incr(s, `k${i}`, 10_000_000)
    now = 100 // busy's window (10 ms) has ended: its next request starts a new one
    await incr(s, 'busy', 10)
    for (let i = 0; i < 5; i++) await incr(s, `late${i}`, 10_000_000)
    const read = (k: string, w: number) =>
      new Promise<{current: number}>((resolve) => s.read(k, (_e, v) => resolve(v), w))
    assert.equal((await read('busy', 10_000)).current, 1, 'busy was renewed after the others, so it is kept')
    assert.equal((await read('k0', 10_000_000)).current, 0, 'the oldest idle keys went first')
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
