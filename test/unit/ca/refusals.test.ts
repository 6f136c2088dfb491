/**
 * src/ca/observe/refusals.ts: floods of refusals made before a token is read become a line per window
 * per client; everything else reaches the audit log as it was written. Timers are node:test's mock
 * timers, so nothing here depends on how busy the machine is.
 */
import assert from 'node:assert/strict'
import {mock} from 'node:test'
import {memoryAuditLog} from '../../../src/ca/observe/audit.ts'
import {coalesceRefusals} from '../../../src/ca/observe/refusals.ts'

const shed = (n: number, client = '192.0.2.1', route = '/ssh/sign') => ({
  request_id: `r${n}`,
  client_address: client,
  route,
  reason: 'overloaded',
  status: 503,
  detail: 'too many signing requests in flight',
})

describe('audit: refusals before the token is read are coalesced', () => {
  beforeEach(() => mock.timers.enable({apis: ['setTimeout']}))
  afterEach(() => mock.timers.reset())

  it('a flood from one client: its first refusal at once, the rest as one line when the window ends', async () => {
    const inner = memoryAuditLog()
    const log = coalesceRefusals(inner, {windowMs: 1000})
    for (let i = 0; i < 5000; i++) log.write('certificate_denied', shed(i))
    assert.deepEqual(inner.events, [{event: 'certificate_denied', ...shed(0)}])
    mock.timers.tick(999)
    assert.equal(inner.events.length, 1)
    mock.timers.tick(1)
    const {request_id: _, ...rest} = shed(4999)
    assert.deepEqual(inner.events[1], {event: 'certificate_denied', ...rest, repeated: 4999, window_ms: 1000})
    // the next window starts with a line of its own again
    log.write('certificate_denied', shed(5000))
    assert.deepEqual(inner.events[2], {event: 'certificate_denied', ...shed(5000)})
    mock.timers.tick(1000)
    assert.equal(inner.events.length, 3, 'a window with one refusal writes nothing more')
    await log.close()
  })

  it('kept apart by client, route, reason and event; rate_limited too; other lines pass through at once', async () => {
    const inner = memoryAuditLog()
    const log = coalesceRefusals(inner)
    for (let i = 0; i < 3; i++) {
      log.write('certificate_denied', shed(i, '192.0.2.1'))
      log.write('certificate_denied', shed(i, '192.0.2.2'))
      log.write('certificate_denied', shed(i, '192.0.2.1', '/1.0/ssh/sign'))
      log.write('rate_limited', {...shed(i), reason: 'rate_limited', status: 429})
      log.write('certificate_denied', {...shed(i), reason: 'token_invalid', status: 401})
      log.write('certificate_issued', {request_id: `i${i}`, serial: String(i)})
    }
    // 4 keys' first lines, and every line that is not a flood's
    assert.equal(inner.events.length, 4 + 3 + 3)
    assert.equal(inner.events.filter((e) => e.reason === 'token_invalid').length, 3)
    assert.equal(inner.events.filter((e) => e.event === 'certificate_issued').length, 3)
    mock.timers.tick(1000)
    const summaries = inner.events.filter((e) => e.repeated !== undefined)
    assert.equal(summaries.length, 4)
    assert.ok(summaries.every((e) => e.repeated === 2 && e.request_id === undefined))
    assert.deepEqual(summaries.map((e) => `${e.event} ${e.reason} ${e.client_address} ${e.route}`).sort(), [
      'certificate_denied overloaded 192.0.2.1 /1.0/ssh/sign',
      'certificate_denied overloaded 192.0.2.1 /ssh/sign',
      'certificate_denied overloaded 192.0.2.2 /ssh/sign',
      'rate_limited rate_limited 192.0.2.1 /ssh/sign',
    ])
    await log.close()
  })

  it('many clients at once: past maxKeys they share one key (overflow, how many clients, none named); the lines stay bounded', async () => {
    const inner = memoryAuditLog()
    const log = coalesceRefusals(inner, {maxKeys: 10})
    for (let round = 0; round < 3; round++)
      for (let c = 0; c < 1000; c++) log.write('certificate_denied', shed(c, `10.0.${c >> 8}.${c & 255}`))
    // 10 clients' first lines and the shared key's first
    assert.equal(inner.events.length, 11)
    assert.deepEqual(
      [inner.events[10]!.overflow, inner.events[10]!.client_address, inner.events[10]!.route],
      [true, undefined, undefined],
    )
    mock.timers.tick(1000)
    assert.equal(inner.events.length, 22)
    const shared = inner.events.find((e) => e.overflow && e.repeated !== undefined)!
    // 3 × 990 refusals from the clients past the first 10, one of them written at once
    assert.equal(shared.repeated, 3 * 990 - 1)
    assert.equal(shared.clients, 990)
    assert.equal(shared.client_address, undefined)
    await log.close()
  })

  it('a client address is cut to 64 characters (behind a proxy trusted for any X-Forwarded-For it is what the client sent)', async () => {
    const inner = memoryAuditLog()
    const log = coalesceRefusals(inner)
    log.write('certificate_denied', shed(0, 'x'.repeat(10_000)))
    log.write('certificate_denied', shed(1, `${'x'.repeat(64)}y`))
    assert.equal(inner.events.length, 1, 'both cut to the same 64 characters: one key')
    assert.equal(inner.events[0]!.client_address, 'x'.repeat(64))
    await log.close()
  })

  it('flush() writes what is counted at once, and the next refusal starts a window of its own', async () => {
    const inner = memoryAuditLog()
    const log = coalesceRefusals(inner)
    for (let i = 0; i < 3; i++) log.write('certificate_denied', shed(i))
    log.flush()
    assert.deepEqual(
      inner.events.map((e) => e.repeated),
      [undefined, 2],
    )
    log.write('certificate_denied', shed(3))
    assert.equal(inner.events[2]!.request_id, 'r3')
    mock.timers.tick(1000)
    assert.equal(inner.events.length, 3)
    await log.close()
  })

  it('after close() every line goes straight through', async () => {
    const inner = memoryAuditLog()
    const log = coalesceRefusals(inner)
    await log.close()
    log.write('certificate_denied', shed(0))
    log.write('certificate_denied', shed(1))
    assert.equal(inner.events.length, 2)
  })

  it('close() writes what is counted and closes the log under it', async () => {
    let closed = false
    const inner = memoryAuditLog()
    const log = coalesceRefusals({write: (e, f) => inner.write(e, f), close: async () => void (closed = true)})
    for (let i = 0; i < 3; i++) log.write('certificate_denied', shed(i))
    await log.close()
    assert.deepEqual(
      inner.events.map((e) => e.repeated),
      [undefined, 2],
    )
    assert.ok(closed)
  })

  it('an audit log that cannot be written (a full disk): the first line throws to the caller, as before; the count is dropped quietly', async () => {
    const failing = {
      write: () => {
        throw new Error('ENOSPC')
      },
      close: async () => {},
    }
    const log = coalesceRefusals(failing)
    assert.throws(() => log.write('certificate_denied', shed(0)), /ENOSPC/)
    log.write('certificate_denied', shed(1))
    assert.doesNotThrow(() => mock.timers.tick(1000))
    await log.close()
  })
})
