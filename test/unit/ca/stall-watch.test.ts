/**
 * The worker watchdog's judgement (src/ca/workers.ts, StallWatch): a worker is stalled once its beat
 * count has stood still for WORKER_STALL_MS since it was last seen to move, looking every second; a
 * look that comes late (the whole process may have stood still) counts one beat. The watchdog
 * itself, ending a real looping worker of a real `ca serve`, is in test/integration/ca-workers.test.ts.
 */
import assert from 'node:assert/strict'
import {StallWatch, WORKER_STALL_MS} from '../../../src/ca/workers.ts'

/** Looks every `step` ms from `from` to `to` (both included) with the counts `beats(t)` gives; what each look found stalled, by time. */
function lookEvery(
  watch: StallWatch<string>,
  from: number,
  to: number,
  beats: (t: number) => [string, number][],
  step = 1000,
): Map<number, [string, number][]> {
  const found = new Map<number, [string, number][]>()
  for (let t = from; t <= to; t += step) {
    const stalled = watch.look(t, beats(t))
    if (stalled.length > 0) found.set(t, stalled)
  }
  return found
}

describe('the worker watchdog (StallWatch)', () => {
  it('a count that moves is never stalled, however long it is watched', () => {
    const watch = new StallWatch<string>()
    assert.deepEqual([...lookEvery(watch, 0, 60_000, (t) => [['w', t / 1000]])], [])
  })

  it('a count that stands still is stalled once it has for WORKER_STALL_MS, measured from when it last moved', () => {
    const watch = new StallWatch<string>()
    // it moves until 3 s, then stands still
    const found = lookEvery(watch, 0, 20_000, (t) => [['w', Math.min(t, 3000)]])
    const first = [...found.keys()][0]
    assert.equal(first, 3000 + WORKER_STALL_MS)
    assert.deepEqual(found.get(first!), [['w', WORKER_STALL_MS]])
    // named at every look after (the pool ends it once: it leaves the serving list), for how long by then
    assert.deepEqual(found.get(first! + 2000), [['w', WORKER_STALL_MS + 2000]])
  })

  it('a worker seen for the first time is not judged: its measure starts there', () => {
    const watch = new StallWatch<string>()
    assert.deepEqual(watch.look(0, [['a', 5]]), [])
    // a second worker joins at 8 s (a replacement) with a count that never moves
    const found = lookEvery(watch, 1000, 30_000, (t) => [
      ['a', t],
      ...(t >= 8000 ? [['b', 0] as [string, number]] : []),
    ])
    assert.deepEqual(found.get(8000 + WORKER_STALL_MS), [['b', WORKER_STALL_MS]])
    assert.equal([...found.keys()][0], 8000 + WORKER_STALL_MS)
  })

  it('each worker alone: one standing still among others that move', () => {
    const watch = new StallWatch<string>()
    const found = lookEvery(watch, 0, WORKER_STALL_MS, (t) => [
      ['a', t],
      ['b', 7],
      ['c', t * 2],
    ])
    assert.deepEqual([...found], [[WORKER_STALL_MS, [['b', WORKER_STALL_MS]]]])
  })

  it('a look that comes late counts one beat: the process stood still (SIGSTOP), and its workers with it', () => {
    const watch = new StallWatch<string>()
    // counts move until 1 s; then nothing is looked at for 12 s; then looks every second again
    lookEvery(watch, 0, 1000, (t) => [['w', t]])
    assert.deepEqual(watch.look(13_000, [['w', 1000]]), [], 'the late look')
    const found = lookEvery(watch, 14_000, 30_000, () => [['w', 1000]])
    assert.equal([...found.keys()][0], 13_000 + WORKER_STALL_MS - 1000)
    assert.deepEqual(found.get(22_000), [['w', WORKER_STALL_MS]])
    // the count moving right after the late look (the workers beat as the process goes on): nothing
    const again = new StallWatch<string>()
    lookEvery(again, 0, 1000, (t) => [['w', t]])
    again.look(13_000, [['w', 1000]])
    assert.deepEqual([...lookEvery(again, 14_000, 40_000, (t) => [['w', t]])], [])
  })

  it('a main thread late again and again (a store that holds it 3 s every 4) still finds a stalled worker', () => {
    const watch = new StallWatch<string>()
    const found = new Map<number, [string, number][]>()
    // looks at 0, 1, 4, 5, 8, 9, …: every other gap is late
    for (let t = 0; t <= 60_000; t += t % 4000 === 0 ? 1000 : 3000) {
      const stalled = watch.look(t, [['w', 0]])
      if (stalled.length > 0) found.set(t, stalled)
    }
    // each on-time gap counts a second, each late one a beat (a second): ten of them
    assert.equal([...found.keys()][0], 20_000)
  })

  it('looks two seconds apart are not late: a count standing still between them is stalled in time', () => {
    const watch = new StallWatch<string>()
    const found = lookEvery(watch, 0, 20_000, () => [['w', 0]], 2000)
    assert.equal([...found.keys()][0], WORKER_STALL_MS)
  })

  it('a worker forgotten (it ended) is measured afresh if seen again', () => {
    const watch = new StallWatch<string>()
    lookEvery(watch, 0, 9000, () => [['w', 0]])
    watch.forget('w')
    assert.deepEqual(watch.look(10_000, [['w', 0]]), [])
    assert.deepEqual(watch.look(11_000, [['w', 0]]), [])
  })
})
