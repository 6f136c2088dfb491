/**
 * Requests Node's HTTP parser refuses, and URLs fastify's router cannot decode, never reach a route
 * or the error handler; they used to get fastify's own error body (`{error, message, statusCode}`,
 * no request id). Found by test/fuzz/http.test.ts: they get the API's `{status, message,
 * request_id}` like every other error.
 */
import assert from 'node:assert/strict'
import {connect} from 'node:tls'
import {request} from 'undici'
import {startTestCa, type TestCa} from '../helpers/ca.ts'

describe('CA: malformed HTTP gets the API error shape', function () {
  this.timeout(60_000)
  let t: TestCa
  before(async () => {
    t = await startTestCa({provisioners: []})
  })
  after(async () => {
    await t?.stop()
  })

  /** One raw request over TLS; the response as the server wrote it (it closes the connection). */
  function raw(text: string): Promise<string> {
    return new Promise((resolve, reject) => {
      let out = ''
      const s = connect({host: '127.0.0.1', port: t.ca.port, ca: t.rootPem, checkServerIdentity: () => undefined}, () =>
        s.write(text),
      )
      s.setEncoding('utf8')
      s.on('data', (d: string) => (out += d))
      s.on('close', () => resolve(out))
      s.on('error', reject)
    })
  }

  function assertShape(status: number, headers: Record<string, string | string[] | undefined>, body: string): void {
    const json = JSON.parse(body) as Record<string, unknown>
    assert.deepEqual(Object.keys(json).sort(), ['message', 'request_id', 'status'])
    assert.equal(json.status, status)
    assert.match(String(json.message), /malformed HTTP request/)
    assert.equal(json.request_id, headers['x-request-id'])
    assert.match(String(headers['content-type']), /^application\/json/)
  }

  it('headers over the limit: 431 with {status, message, request_id}', async () => {
    const res = await request(`${t.url}/ssh/sign`, {
      method: 'POST',
      dispatcher: t.dispatcher,
      headers: {'content-type': 'application/json', 'x-big': 'a'.repeat(20_000)},
      body: '{}',
    })
    assert.equal(res.statusCode, 431)
    assertShape(431, res.headers, await res.body.text())
  })

  it("a URL the router cannot decode: 400 with {status, message, request_id}, not fastify's own body", async () => {
    for (const path of ['/%', '/1.0/ssh/sign%zz', '/root/%e0%a4%a']) {
      const reply = await raw(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
      const [head, body] = reply.split('\r\n\r\n') as [string, string]
      const [statusLine, ...lines] = head.split('\r\n')
      assert.match(statusLine!, /^HTTP\/1\.1 400 /)
      const headers = Object.fromEntries(
        lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
      )
      const json = JSON.parse(body) as Record<string, unknown>
      assert.deepEqual(Object.keys(json).sort(), ['message', 'request_id', 'status'], body)
      assert.equal(json.status, 400)
      assert.equal(json.request_id, headers['x-request-id'])
    }
  })

  for (const [name, text] of [
    ['a request line that is not HTTP', 'GARBAGE\r\n\r\n'],
    ['a Content-Length that is not a number', 'POST /ssh/sign HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n'],
    [
      'a broken chunked body',
      'POST /ssh/sign HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n',
    ],
  ] as const) {
    it(`${name}: 400 with {status, message, request_id}, and the CA keeps serving`, async () => {
      const reply = await raw(text)
      const [head, body] = reply.split('\r\n\r\n') as [string, string]
      const [statusLine, ...lines] = head.split('\r\n')
      assert.match(statusLine!, /^HTTP\/1\.1 400 /)
      const headers = Object.fromEntries(
        lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
      )
      assertShape(400, headers, body)
      assert.equal((await t.call('GET', '/health')).status, 200)
    })
  }
})
