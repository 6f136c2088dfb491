/**
 * What cuts off a request that waits on its rule's webhook. limits.requestTimeout bounds the
 * request's arrival (headers and body: Node's server.requestTimeout), not its answer: a request
 * received in full waits for its webhook as long as the webhook's timeout. limits.idleTimeout (the
 * socket's timeout) closes a connection that nothing crosses for that long, so a webhook slower than
 * it leaves the client with a closed connection while an allow still issues the certificate and
 * spends the token. On the worker threads, with the settings of the CA's start.
 */
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import {createServer, type Server} from 'node:https'
import {connect} from 'node:tls'
import {join} from 'node:path'
import {createRoot, createTlsCert} from '../../src/ca/keys/pki.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {startTestCa, writePolicy, type TestCa} from '../helpers/ca.ts'
import {waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'

describe('a request waiting on its webhook: cut off by limits.idleTimeout, not limits.requestTimeout', function () {
  this.timeout(120_000)
  let gh: GithubIssuer
  let hook: Server
  let hookUrl = ''
  const dir = tempDir('sshca-webhook-deadline-')
  const caFile = join(dir, 'hook-ca.pem')
  /** The webhook allows, 3.5 s after the request (unless a test says otherwise). */
  const DELAY_MS = 3500
  let hookDelayMs = DELAY_MS

  const policy = (limits: Record<string, unknown>, timeout: number) => ({
    limits: {rate: false, ...limits},
    provisioners: [
      {
        name: 'ci',
        type: 'oidc',
        issuer: gh.issuer,
        audience: 'sshca-ci',
        rules: [
          {
            name: 'deploy',
            match: {repository: 'acme/app'},
            webhook: {url: hookUrl, timeout, ca: caFile},
            certificate: {principals: ['deploy'], ttl: '10m'},
          },
        ],
      },
    ],
  })
  const sign = async (t: TestCa, headers: Record<string, string> = {}) =>
    t
      .call(
        'POST',
        '/ssh/sign',
        {
          publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'),
          ott: await gh.mint(),
          certType: 'user',
        },
        headers,
      )
      .catch((err: Error) => ({status: 0, text: err.message}))
  /** Reloads `next`; the webhook.timeout warnings of the reload's policy_loaded. */
  const reload = async (t: TestCa, next: Record<string, unknown>): Promise<string[]> => {
    await writePolicy(t.init.config, next)
    const mark = t.mark()
    assert.equal(await t.ca.reload(), true)
    const line = t.since(mark).find((l) => l.event === 'policy_loaded')!
    return (line.warnings as string[]).filter((w) => w.includes('webhook.timeout'))
  }

  before(async () => {
    gh = await startGithubIssuer()
    const root = await createRoot('webhook deadline test')
    const tls = await createTlsCert(['127.0.0.1'], {cert: root.cert, key: root.key})
    writeFileSync(caFile, root.pem)
    hook = createServer({key: tls.key.export({type: 'pkcs8', format: 'pem'}), cert: tls.pem}, (req, res) => {
      req.resume()
      req.on('end', () =>
        setTimeout(() => res.writeHead(200, {'content-type': 'application/json'}).end('{"allow": true}'), hookDelayMs),
      )
    })
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve))
    hookUrl = `https://127.0.0.1:${(hook.address() as {port: number}).port}/authorize`
  })
  after(async () => {
    await gh?.stop()
    hook?.closeAllConnections()
    await new Promise((resolve) => hook?.close(resolve))
  })

  it("a reload raising requestTimeout and the webhook's timeout: no warning, and the request waits for the webhook past the start's requestTimeout", async () => {
    const t = await startTestCa(policy({requestTimeout: 2, headersTimeout: 1}, 1), {workers: 1})
    try {
      assert.deepEqual(await reload(t, policy({requestTimeout: 10, headersTimeout: 1}, 6)), [])
      const started = Date.now()
      const r = await sign(t)
      // 3.5 s: past the 2 s of the start's requestTimeout, which the server keeps
      assert.equal(r.status, 201, r.text)
      assert.ok(Date.now() - started >= DELAY_MS)
    } finally {
      await t.stop()
    }
  })

  it("a reload raising idleTimeout and the webhook's timeout is warned about: the start's idleTimeout closes the connection, and the allow issues for nobody", async () => {
    const t = await startTestCa(policy({idleTimeout: 2}, 1), {workers: 1})
    try {
      const warned = await reload(t, policy({idleTimeout: 60}, 6))
      assert.deepEqual(warned, [
        'provisioners[0].rules[0].webhook.timeout: 6s must be below limits.idleTimeout in force (2s until the CA restarts)',
      ])
      const mark = t.mark()
      const r = await sign(t)
      assert.equal(r.status, 0, `the connection is closed before any answer, not ${r.status} ${r.text}`)
      // the webhook answers after the connection closed: the certificate is issued, the token spent
      await waitFor('the webhook to answer', () => t.since(mark).some((l) => l.event === 'certificate_issued'))
    } finally {
      await t.stop()
    }
  })

  it("close() waits for a request waiting on its webhook past the start's requestTimeout", async () => {
    // close() ends a worker still serving requestTimeout + 5 s after it was told to stop (6 s here);
    // the webhook answers after 7 s, within its timeout of 12 s, which no check holds below requestTimeout
    const t = await startTestCa(policy({requestTimeout: 1, headersTimeout: 1}, 12), {workers: 1})
    let stopping: Promise<void> | undefined
    try {
      hookDelayMs = 7000
      // (connection: close, so that the worker ends once it has answered rather than at the deadline)
      const signing = sign(t, {connection: 'close'})
      await new Promise((resolve) => setTimeout(resolve, 500))
      stopping = t.ca.close()
      const r = await signing
      assert.equal(r.status, 201, `the request in flight is answered, not cut off: ${r.status} ${r.text}`)
      await stopping
    } finally {
      hookDelayMs = DELAY_MS
      await (stopping ?? t.stop())
      await t.dispatcher.close()
    }
  })

  it('close() ends a worker once its requests in flight are answered, their keep-alive connections too', async () => {
    // a keep-alive connection busy when close() began stays open once answered, unless the answer says
    // `connection: close`: the worker then ran until close()'s deadline (requestTimeout 1 s + the
    // webhook's 12 s + 5 s) and was ended there
    const t = await startTestCa(policy({requestTimeout: 1, headersTimeout: 1}, 12), {workers: 1})
    let stopping: Promise<void> | undefined
    try {
      hookDelayMs = 2000
      const signing = sign(t)
      await new Promise((resolve) => setTimeout(resolve, 500))
      stopping = t.ca.close()
      const r = await signing
      assert.equal(r.status, 201, `the request in flight is answered, not cut off: ${r.status} ${r.text}`)
      const answered = Date.now()
      await stopping
      assert.ok(Date.now() - answered < 5000, `the CA closed ${Date.now() - answered} ms after its last answer`)
    } finally {
      hookDelayMs = DELAY_MS
      await (stopping ?? t.stop())
      await t.dispatcher.close()
    }
  })

  it('close() loses no answer of requests pipelined on one connection: the first answered does not end it under the others', async () => {
    // the first answer said `connection: close` while a second request, pipelined behind it and
    // already on its webhook, was still being worked on: Node ended the connection after the first,
    // and the second was issued (its token spent) and its answer never sent
    const t = await startTestCa(policy({requestTimeout: 1, headersTimeout: 1}, 12), {workers: 1})
    let stopping: Promise<void> | undefined
    try {
      hookDelayMs = 2000
      const url = new URL(t.url)
      const request = async () => {
        const body = JSON.stringify({
          publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'),
          ott: await gh.mint(),
          certType: 'user',
        })
        return `POST /ssh/sign HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
      }
      const both = (await request()) + (await request())
      const mark = t.mark()
      const socket = connect({host: url.hostname, port: Number(url.port), ca: t.rootPem, servername: undefined})
      let received = ''
      socket.setEncoding('utf8')
      socket.on('data', (d: string) => (received += d))
      const ended = new Promise<void>((resolve) => {
        socket.on('close', () => resolve())
        socket.on('error', () => resolve())
      })
      await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()))
      // the two requests in one write: pipelined
      socket.write(both)
      await new Promise((resolve) => setTimeout(resolve, 500))
      stopping = t.ca.close()
      await ended
      await stopping
      const issued = t.since(mark).filter((l) => l.event === 'certificate_issued').length
      const answers = received.match(/HTTP\/1\.1 201 /g)?.length ?? 0
      assert.equal(issued, 2)
      assert.equal(answers, issued, `every certificate issued is answered: ${received.slice(0, 300)}`)
    } finally {
      hookDelayMs = DELAY_MS
      await (stopping ?? t.stop())
      await t.dispatcher.close()
    }
  })
})
