/**
 * A CA that sheds load says when to come back (503, Retry-After), and the client comes back: `sshca
 * login` waits where a person sees it and signs in once the CA has room; a CA that keeps shedding is
 * asked a bounded number of times. The CA is the real one, with room for one signing request, held by
 * a request whose rule's authorizing webhook answers only when the test says so.
 */
import assert from 'node:assert/strict'
import {createServer, type Server} from 'node:http'
import {CaClient} from '../../src/client/ca-api/ca-client.ts'
import {RETRY, showRetryWaits, type RetryWait} from '../../src/client/ca-api/retry.ts'
import {SshcaError} from '../../src/errors.ts'
import {SshSignResponse} from '../../src/protocol/api.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {waitFor} from '../helpers/proc.ts'
import {currentUser} from '../helpers/openssh.ts'
import {spawnSshca, startWorld, type World} from '../helpers/world.ts'

const keyB64 = () => generatePrivateKey('ed25519').publicKey.blob.toString('base64')

describe('the client comes back when the CA sheds load', function () {
  this.timeout(120_000)
  let w: World
  let slow: Server
  let slowUrl = ''
  let release!: () => void
  let gate!: Promise<void>
  let hits = 0
  const hold = () => {
    gate = new Promise<void>((r) => (release = r))
    hits = 0
  }

  before(async () => {
    // an issuer (gh's keys under its own URL) whose rule asks a webhook that answers only when the
    // test says so: a request of that issuer holds the CA's one signing place meanwhile
    slow = createServer((req, res) => {
      const answer = (body: unknown) =>
        res.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify(body))
      if (req.url === '/hook') {
        hits++
        req.resume()
        return void gate.then(() => answer({allow: true}))
      }
      if (req.url === '/.well-known/openid-configuration') return answer({issuer: slowUrl, jwks_uri: `${slowUrl}/jwks`})
      void fetch(`${w.gh.issuer}/.well-known/jwks`).then(async (r) => answer(await r.json()))
    })
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r))
    slowUrl = `http://127.0.0.1:${(slow.address() as {port: number}).port}`
    w = await startWorld(
      {},
      {
        provisioners: () => [
          {
            name: 'held',
            type: 'oidc',
            issuer: slowUrl,
            audience: 'sshca-ci',
            rules: [
              {
                name: 'any',
                match: {repository: 'acme/app'},
                webhook: {url: `${slowUrl}/hook`, timeout: '25s'},
                certificate: {principals: ['deploy'], ttl: '5m'},
              },
            ],
          },
        ],
        settings: {limits: {maxInFlight: 1, rate: false, requestTimeout: '30s'}},
      },
    )
    await w.bootstrap()
  })
  after(async () => {
    release?.()
    showRetryWaits(undefined)
    await w?.stop()
    slow?.closeAllConnections()
    slow?.close()
  })

  it('sshca login is shed (503), shows the wait on stderr, and signs in on its next attempt', async () => {
    hold()
    const holding = w.t.call('POST', '/ssh/sign', {publicKey: keyB64(), ott: await w.gh.mint({iss: slowUrl})})
    await waitFor('the holding request to wait on its webhook', () => hits > 0, 30_000)
    const login = spawnSshca(['login', '--identity-token-file', '-', '--json'], w.env, await w.gh.mint())
    await login.waitFor(/is busy \(HTTP 503\); asking again in \d+\.\d s \(attempt 2 of 4\)/)
    release()
    const r = await login.exit()
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout) as {certificate: {principals: string[]}}
    assert.deepEqual(doc.certificate.principals, [currentUser()])
    assert.equal((await holding).status, 201)
    // the CA refused the first attempt without spending its token: the second was issued on it
    const lines = w.t.audit().filter((l) => l.provisioner === 'ci' || l.reason === 'overloaded')
    assert.deepEqual(
      lines.map((l) => l.event),
      ['certificate_denied', 'certificate_issued'],
    )
  })

  it('a CA that keeps shedding is asked RETRY.attempts times in all, each wait shown, then the error is ERR_CA_UNAVAILABLE', async () => {
    hold()
    const holding = w.t.call('POST', '/ssh/sign', {publicKey: keyB64(), ott: await w.gh.mint({iss: slowUrl})})
    await waitFor('the holding request to wait on its webhook', () => hits > 0, 30_000)
    const waits: RetryWait[] = []
    showRetryWaits((wait) => void waits.push(wait))
    const ca = new CaClient(w.t.url, w.t.rootPem)
    const mark = w.t.mark()
    try {
      await assert.rejects(
        ca.call('POST', '/ssh/sign', SshSignResponse, {publicKey: keyB64(), ott: await w.gh.mint()}),
        (e) => e instanceof SshcaError && e.code === 'ERR_CA_UNAVAILABLE',
      )
    } finally {
      ca.close()
      showRetryWaits(undefined)
      release()
    }
    assert.deepEqual(
      waits.map((x) => [x.status, x.attempt, x.of]),
      [
        [503, 2, RETRY.attempts],
        [503, 3, RETRY.attempts],
        [503, 4, RETRY.attempts],
      ],
    )
    // 1, 2, 4 s (Retry-After says 1), each with up to half again at random
    waits.forEach((x, i) => assert.ok(x.ms >= 1000 * 2 ** i && x.ms < 1500 * 2 ** i, `${x.ms} ms`))
    assert.equal(w.t.since(mark).filter((l) => l.reason === 'overloaded').length, RETRY.attempts)
    assert.equal((await holding).status, 201)
  })
})
