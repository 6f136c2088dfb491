/**
 * callWebhook (src/ca/authority/webhook.ts) against a real HTTPS endpoint on loopback, the attacks
 * played by the network path or the endpoint: each must leave the call denied (fail closed).
 */
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import {createServer as createPlainServer, type Server as PlainServer} from 'node:http'
import {createServer, type Server} from 'node:https'
import {join} from 'node:path'
import {createServer as createTcpServer, type Server as TcpServer} from 'node:net'
import tls from 'node:tls'
import {callWebhook} from '../../../src/ca/authority/webhook.ts'
import {createRoot, createTlsCert} from '../../../src/ca/keys/pki.ts'
import {tempDir} from '../../helpers/tmp.ts'

describe('callWebhook: what the network path or the endpoint may try', function () {
  this.timeout(30_000)
  const dir = tempDir('sshca-webhook-call-')
  let hook: Server
  let url = ''
  let rootPem = ''

  before(async () => {
    const root = await createRoot('webhook call test')
    rootPem = root.pem
    const cert = await createTlsCert(['127.0.0.1'], {cert: root.cert, key: root.key})
    hook = createServer({key: cert.key.export({type: 'pkcs8', format: 'pem'}), cert: cert.pem}, (req, res) => {
      req.resume()
      req.on('end', () => res.writeHead(200, {'content-type': 'application/json'}).end('{"allow": true}'))
    })
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve))
    url = `https://127.0.0.1:${(hook.address() as {port: number}).port}/authorize`
  })
  after(async () => {
    hook?.closeAllConnections()
    await new Promise((resolve) => hook?.close(resolve))
  })

  it('a CA file that holds no certificate (empty, truncated) denies: the system CAs are not trusted instead', async function () {
    // the attacker: anyone with a certificate for the webhook's name from a CA the system trusts (a
    // public CA, a corporate one). The system store is made to trust the test root to play that part
    if (typeof tls.setDefaultCACertificates !== 'function') this.skip()
    const system = tls.getCACertificates('default')
    tls.setDefaultCACertificates([...system, rootPem])
    try {
      // the endpoint itself answers allow when its CA is the configured one
      const pinned = join(dir, 'pinned-ca.pem')
      writeFileSync(pinned, rootPem)
      assert.equal(
        (await callWebhook({url, timeout: 5, ca: pinned}, '{}')).allow,
        true,
        'the test endpoint answers allow',
      )
      for (const [name, text] of [
        ['empty', ''],
        ['blank', '\n\n'],
        ['no-certificate', 'not a certificate\n'],
      ] as const) {
        const file = join(dir, `${name}.pem`)
        writeFileSync(file, text)
        const o = await callWebhook({url, timeout: 5, ca: file}, '{}')
        assert.equal(o.allow, false, `${name}: the configured CA file vouches for nothing, so nothing is allowed`)
        assert.equal(o.status, null, `${name}: nothing was sent`)
      }
    } finally {
      tls.setDefaultCACertificates(system)
    }
  })
  /** A loopback endpoint that writes `raw` (a whole HTTP answer, or the start of one) once the request arrives. */
  const scripted = async (
    raw: string | ((write: (s: string) => void) => void),
  ): Promise<{url: string; server: TcpServer}> => {
    const server = createTcpServer((socket) => {
      socket.on('error', () => {})
      socket.once('data', () => (typeof raw === 'string' ? socket.write(raw) : raw((s) => socket.write(s))))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return {url: `http://127.0.0.1:${(server.address() as {port: number}).port}/authorize`, server}
  }

  it('a redirect is not followed: the place it names is never asked, and the call denies', async () => {
    let asked = 0
    const target: PlainServer = createPlainServer((_req, res) => {
      asked++
      res.end('{"allow": true}')
    })
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve))
    const to = `http://127.0.0.1:${(target.address() as {port: number}).port}/`
    const {url: from, server} = await scripted(
      `HTTP/1.1 307 Temporary Redirect\r\nlocation: ${to}\r\ncontent-length: 0\r\n\r\n`,
    )
    try {
      const o = await callWebhook({url: from, timeout: 2}, '{}')
      assert.deepEqual([o.allow, o.status], [false, 307])
      assert.equal(asked, 0)
    } finally {
      server.close()
      target.close()
    }
  })

  for (const [what, raw] of [
    ['a body cut off before its content-length', 'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"allow": true}'],
    ['a chunked body cut off', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nf\r\n{"allow": true}\r\n'],
    [
      'two answers on one connection, the first a refusal',
      'HTTP/1.1 200 OK\r\ncontent-length: 16\r\n\r\n{"allow": false}HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{"allow": true}',
    ],
    [
      'an answer over 64 KiB',
      `HTTP/1.1 200 OK\r\ncontent-length: ${70_000 + 15}\r\n\r\n{"allow": true}${' '.repeat(70_000)}`,
    ],
  ] as const) {
    it(`denies ${what}`, async () => {
      const {url: at, server} = await scripted((write) => {
        write(raw)
      })
      try {
        // the cut-off ones: the endpoint leaves the connection open, the timeout ends the call
        assert.equal((await callWebhook({url: at, timeout: 1}, '{}')).allow, false)
      } finally {
        server.close()
      }
    })
  }

  it('a body that never ends is cut at the timeout', async () => {
    let timer: NodeJS.Timeout | undefined
    const {url: at, server} = await scripted((write) => {
      write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n')
      timer = setInterval(() => write('1\r\n \r\n'), 50)
    })
    try {
      const started = Date.now()
      const o = await callWebhook({url: at, timeout: 1}, '{}')
      assert.equal(o.allow, false)
      assert.ok(Date.now() - started < 2500, 'bounded by the timeout')
    } finally {
      clearInterval(timer)
      server.close()
    }
  })
})
