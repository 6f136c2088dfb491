/**
 * callWebhook (src/ca/authority/webhook.ts) against a real HTTPS endpoint on loopback, the attacks
 * played by the network path or the endpoint: each must leave the call denied (fail closed).
 */
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import {createServer, type Server} from 'node:https'
import {join} from 'node:path'
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
})
