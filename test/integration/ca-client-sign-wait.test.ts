/**
 * A CA may hold POST /ssh/sign on a rule's authorizing webhook, sending nothing, for up to
 * WEBHOOK_MAX_SECONDS, and then on its database. sshca's client must still be there when the answer comes: a client that gave
 * up after its usual 15 s without a byte left the certificate the webhook then allowed, and the token
 * it spent, to nobody.
 */
import assert from 'node:assert/strict'
import {CaClient, REQUEST_DEADLINE_MS, SIGN_IDLE_TIMEOUT_MS} from '../../src/client/ca-api/ca-client.ts'
import {parseConfig, signingWaitSeconds} from '../../src/ca/config/config.ts'
import {createIntermediate, createRoot, createTlsCert, type IssuedCert} from '../../src/ca/keys/pki.ts'
import {SshSignResponse, WEBHOOK_MAX_SECONDS} from '../../src/protocol/api.ts'
import {json, startScripted, type ScriptedServer} from '../helpers/scripted-server.ts'

describe('POST /ssh/sign waits as long as a CA may hold it on a webhook', function () {
  this.timeout(90_000)
  let root: IssuedCert
  let ca: ScriptedServer

  before(async () => {
    root = await createRoot('Sign wait')
    const mid = await createIntermediate('Sign wait', root)
    ca = await startScripted(await createTlsCert(['127.0.0.1'], mid), [mid])
  })
  after(async () => ca?.stop())

  it("the wait covers the longest webhook, the database's wait after it, and stays within the whole request deadline", () => {
    // PostgreSQL at its default db.timeout: a connection, then the statement
    const {db} = parseConfig('db: {type: postgresql, url: "postgres://sshca@127.0.0.1/sshca"}\n', 'ca.yaml').config
    // the token's spend read before the webhook, the issuance after it: 30 + 2 x 10.5 s
    assert.ok(SIGN_IDLE_TIMEOUT_MS > signingWaitSeconds(db, WEBHOOK_MAX_SECONDS) * 1000, `${SIGN_IDLE_TIMEOUT_MS} ms`)
    assert.ok(SIGN_IDLE_TIMEOUT_MS < REQUEST_DEADLINE_MS, `${SIGN_IDLE_TIMEOUT_MS} ms`)
  })

  it('an answer after 16 s without a byte (past the 15 s other requests wait) is taken', async () => {
    ca.answer = (path) =>
      path === '/ssh/sign'
        ? new Promise((resolve) => setTimeout(() => resolve(json({crt: 'AAAA'}, 201)), 16_000))
        : json({}, 404)
    const c = new CaClient(ca.url, root.pem)
    try {
      const started = Date.now()
      const r = await c.call('POST', '/ssh/sign', SshSignResponse, {publicKey: 'x', ott: 'y', certType: 'user'})
      assert.equal(r.crt, 'AAAA')
      assert.ok(Date.now() - started >= 16_000)
    } finally {
      c.close()
    }
  })

  it('so is one to POST /ssh/renew: the CA reads the certificate, its revocations, then issues (three waits on its database)', async () => {
    // given up on at 15 s, the renewal commits for nobody: the lineage moves to a certificate the host
    // never got (the next renewal gets it again, SECURITY.md row 62, a day later with a daily timer)
    ca.answer = (path) =>
      path === '/ssh/renew'
        ? new Promise((resolve) => setTimeout(() => resolve(json({crt: 'AAAA'}, 201)), 16_000))
        : json({}, 404)
    const c = new CaClient(ca.url, root.pem)
    try {
      const r = await c.call('POST', '/ssh/renew', SshSignResponse, {ott: 'y'})
      assert.equal(r.crt, 'AAAA')
    } finally {
      c.close()
    }
  })
})
