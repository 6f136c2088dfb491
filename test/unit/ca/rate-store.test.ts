import assert from 'node:assert/strict'
import {Worker} from 'node:worker_threads'
import {SharedRateStore, SharedRateTable} from '../../../src/ca/http/rate-store.ts'

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

describe('SharedRateTable (the allowance in shared memory, for the worker threads)', () => {
  const WINDOW = 60_000

  it('counts per address within a window, starts again after it, reads without counting', () => {
    const t = new SharedRateTable(SharedRateTable.memory())
    assert.deepEqual(t.read('192.0.2.1', 1000), {current: 0, ttl: 0})
    assert.deepEqual(t.incr('192.0.2.1', 1000, 10_000), {current: 1, ttl: 1000})
    assert.deepEqual(t.incr('192.0.2.1', 1000, 10_400), {current: 2, ttl: 600})
    assert.deepEqual(t.read('192.0.2.1', 10_500), {current: 2, ttl: 500})
    assert.equal(t.incr('192.0.2.2', 1000, 10_400).current, 1)
    assert.deepEqual(t.read('192.0.2.1', 11_000), {current: 0, ttl: 0}, 'the window ends at its last millisecond')
    assert.deepEqual(t.incr('192.0.2.1', 1000, 11_000), {current: 1, ttl: 1000})
  })

  it('one allowance for every table on the same memory, as each worker has its own', () => {
    const memory = SharedRateTable.memory()
    const a = new SharedRateTable(memory)
    const b = new SharedRateTable(memory)
    a.incr('2001:db8::1', WINDOW, 0)
    assert.equal(b.incr('2001:db8::1', WINDOW, 1).current, 2)
    assert.equal(a.read('2001:db8::1', 2).current, 2)
  })

  it('addresses are compared whole: long ones sharing their first 48 bytes, an address and its prefix, count apart', () => {
    const t = new SharedRateTable(SharedRateTable.memory())
    const stem = 'x'.repeat(60)
    assert.equal(t.incr(`${stem}a`, WINDOW, 0).current, 1)
    assert.equal(t.incr(`${stem}b`, WINDOW, 0).current, 1)
    assert.equal(t.incr(`${stem}a`, WINDOW, 0).current, 2)
    assert.equal(t.incr('10.0.0.1', WINDOW, 0).current, 1)
    assert.equal(t.incr('10.0.0.10', WINDOW, 0).current, 1)
    assert.equal(t.incr('10.0.0.1', WINDOW, 0).current, 2)
    assert.equal(t.incr('', WINDOW, 0).current, 1)
    assert.equal(t.incr('', WINDOW, 0).current, 2)
  })

  it('bounded: more addresses than slots never merge counts; the windows pushed out are the ones ending first', () => {
    const t = new SharedRateTable(SharedRateTable.memory())
    const n = 100_000 // more than its 65,536 slots
    for (let i = 0; i < n; i++) assert.equal(t.incr(`a${i}`, WINDOW + i, 0).current, 1)
    let kept = 0
    for (let i = 0; i < n; i++) {
      const c = t.read(`a${i}`, 1).current
      assert.ok(c === 0 || c === 1, `a${i} counted ${c}`)
      kept += c
    }
    assert.ok(kept > 60_000, `only ${kept} of the windows kept`)
    // the newest windows (ending last) were never pushed out for older ones
    for (let i = n - 100; i < n; i++) assert.equal(t.read(`a${i}`, 1).current, 1, `a${i}`)
  })

  it('a count past 2^31 - 1 in one window stays there: it never wraps to a negative count, under any max', () => {
    // 2^31 refused requests in one window (a day's window, ~25,000 a second): an Int32 count that
    // wrapped to -2^31 would let the address sign again, `current > max` false for another 2^31 requests
    const memory = SharedRateTable.memory()
    const t = new SharedRateTable(memory)
    const window = 86_400_000
    assert.equal(t.incr('198.51.100.9signing', window, 0).current, 1)
    // skip the 2^31 - 3 requests between: set the address's count where they would have left it
    const counts = new Int32Array(memory, 8 + (1 << 16) * 8, 1 << 16)
    const slot = counts.indexOf(1)
    assert.ok(slot >= 0 && counts.lastIndexOf(1) === slot)
    counts[slot] = 2 ** 31 - 2
    let last = 2 ** 31 - 2
    for (let i = 0; i < 3; i++) {
      const {current} = t.incr('198.51.100.9signing', window, 1000 + i)
      assert.ok(current >= last, `request ${i + 1} past 2^31 - 2 counted ${current}`)
      last = current
    }
    assert.ok(t.read('198.51.100.9signing', 2000).current >= 2 ** 31 - 1)
  })

  it('where an address lands depends on the whole seed, not on its low 16 bits alone', () => {
    // the slot a table with `seed` gives `key` (its count, 1, is the only one in the table)
    const slotOf = (seed: number, key: string): number => {
      const memory = SharedRateTable.memory()
      new Int32Array(memory, 0, 2)[1] = seed
      new SharedRateTable(memory).incr(key, WINDOW, 0)
      return new Int32Array(memory, 8 + (1 << 16) * 8, 1 << 16).indexOf(1)
    }
    let moved = 0
    for (let i = 0; i < 16; i++) {
      const key = `203.0.113.${i}signing`
      const low = (i * 7919) & 0xffff
      if (slotOf(low, key) !== slotOf(low | ((i + 1) << 20), key)) moved++
    }
    // 16 seeds' worth of placements (65,536) could be tried from outside; 31 bits' cannot
    assert.ok(moved >= 14, `only ${moved} of 16 addresses moved with the seed's high bits`)
  })

  it('two threads counting one address at once lose no request', async () => {
    const memory = SharedRateTable.memory()
    const module = new URL('../../../src/ca/http/rate-store.ts', import.meta.url).href
    const each = 200_000
    // both start counting together: each waits at this barrier until the other is there
    const ready = new Int32Array(new SharedArrayBuffer(4))
    const run = () =>
      new Promise<void>((resolve, reject) => {
        const w = new Worker(
          `import(${JSON.stringify(module)}).then(({SharedRateTable}) => {
            const {workerData, parentPort} = require('node:worker_threads')
            const t = new SharedRateTable(workerData.memory)
            Atomics.add(workerData.ready, 0, 1)
            while (Atomics.load(workerData.ready, 0) < 2) Atomics.wait(workerData.ready, 0, 1, 1)
            for (let i = 0; i < workerData.each; i++) t.incr('198.51.100.7', 60000, 0)
            parentPort.postMessage('done')
          })`,
          {eval: true, workerData: {memory, each, ready}},
        )
        w.once('message', () => resolve())
        w.once('error', reject)
      })
    await Promise.all([run(), run()])
    assert.equal(new SharedRateTable(memory).read('198.51.100.7', 1).current, 2 * each)
  })

  it("the lock of a thread that ended holding it is released for the others (and only that thread's)", async () => {
    const memory = SharedRateTable.memory()
    const lock = new Int32Array(memory, 0, 1)
    lock[0] = 4242 + 1 // thread 4242 died between taking the lock and giving it back
    const module = new URL('../../../src/ca/http/rate-store.ts', import.meta.url).href
    const w = new Worker(
      `import(${JSON.stringify(module)}).then(({SharedRateTable}) => {
        const {workerData, parentPort} = require('node:worker_threads')
        parentPort.postMessage(new SharedRateTable(workerData.memory).incr('k', 1000, 0).current)
      })`,
      {eval: true, workerData: {memory}},
    )
    const answered = new Promise<number>((resolve, reject) => {
      w.once('message', resolve)
      w.once('error', reject)
    })
    const early = await Promise.race([answered, new Promise((r) => setTimeout(() => r('waiting'), 200))])
    assert.equal(early, 'waiting', 'the other thread waits while the lock is held')
    SharedRateTable.releaseLock(memory, 17)
    assert.equal(lock[0], 4243, "another thread's id releases nothing")
    SharedRateTable.releaseLock(memory, 4242)
    assert.equal(await answered, 1)
    await w.terminate()
  })
})
