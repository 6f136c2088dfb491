/**
 * Prometheus metrics on their own address: after real issuances, policy denials, a bad token and a
 * rate-limited request against a running CA, `curl /metrics` shows each count where it belongs.
 */
import assert from 'node:assert/strict'
import {once} from 'node:events'
import {connect} from 'node:net'
import {defaultWorkers} from '../../src/ca/server.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {run} from '../helpers/proc.ts'
import {startTestCa, type TestCa} from '../helpers/ca.ts'

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** The text format, one sample per line (enough of it for these assertions). */
function parse(text: string): Sample[] {
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!m) continue
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!
    out.push({name: m[1]!, labels, value: Number(m[3])})
  }
  return out
}

const value = (samples: Sample[], name: string, want: Record<string, string>): number | undefined =>
  samples.find((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v))?.value

describe('metrics: Prometheus text on metrics.address', function () {
  this.timeout(120_000)
  let gh: GithubIssuer
  let t: TestCa
  const sign = async (ott: string) =>
    t.call('POST', '/ssh/sign', {
      publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'),
      ott,
      certType: 'user',
    })

  before(async () => {
    gh = await startGithubIssuer()
    t = await startTestCa(
      {
        metrics: {address: '127.0.0.1:0'},
        limits: {rate: {max: 6, window: '1m'}},
        provisioners: [
          {
            name: 'ci',
            type: 'oidc',
            issuer: gh.issuer,
            audience: 'sshca-ci',
            rules: [
              {name: 'deploy', match: {repository: 'acme/app'}, certificate: {principals: ['deploy'], ttl: '10m'}},
            ],
          },
        ],
      },
      {metricsAddress: '127.0.0.1:0'},
    )
  })
  after(async () => {
    await t?.stop()
    await gh?.stop()
  })

  it('counts issuances, denials by reason, token outcomes, JWKS fetches, latency, commits, rate limits and expiry', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await sign(await gh.mint())).status, 201)
    for (let i = 0; i < 2; i++) assert.equal((await sign(await gh.mint({repository: 'evil/app'}))).status, 403)
    assert.equal((await sign('not-a-token')).status, 401)
    // the seventh signing request from this address in the window
    assert.equal((await sign(await gh.mint())).status, 429)

    assert.ok(t.ca.metricsUrl, 'the CA reports where its metrics are')
    const curl = await run('curl', ['-sS', '--fail', t.ca.metricsUrl!])
    assert.equal(curl.code, 0, curl.stderr)
    const m = parse(curl.stdout)

    assert.equal(
      value(m, 'sshca_certificates_total', {
        outcome: 'issued',
        provisioner: 'ci',
        rule: 'deploy',
        type: 'user',
        reason: '',
      }),
      3,
    )
    assert.equal(
      value(m, 'sshca_certificates_total', {
        outcome: 'denied',
        provisioner: 'ci',
        type: 'user',
        reason: 'no_rule_matched',
      }),
      2,
    )
    assert.equal(value(m, 'sshca_certificates_total', {outcome: 'denied', reason: 'token_invalid'}), 1)
    assert.equal(value(m, 'sshca_certificates_total', {outcome: 'denied', reason: 'rate_limited'}), 1)
    assert.equal(value(m, 'sshca_rate_limited_requests_total', {route: '/ssh/sign'}), 1)
    assert.equal(value(m, 'sshca_token_verifications_total', {provisioner: 'ci', outcome: 'valid'}), 5)
    assert.equal(value(m, 'sshca_token_verifications_total', {outcome: 'token_invalid'}), 1)
    // each worker thread keeps its own copy of the issuer's keys: one fetch for each that verified a
    // token (connections land on either; which ones is the kernel's choice)
    const fetches = value(m, 'sshca_jwks_fetches_total', {issuer: gh.issuer, outcome: 'ok'}) ?? 0
    assert.ok(fetches >= 1 && fetches <= defaultWorkers(), `${fetches} JWKS fetches for ${defaultWorkers()} workers`)
    assert.equal(value(m, 'sshca_http_request_duration_seconds_count', {route: '/ssh/sign', status: '201'}), 3)
    assert.equal(value(m, 'sshca_http_request_duration_seconds_count', {route: '/ssh/sign', status: '403'}), 2)
    assert.equal(value(m, 'sshca_http_request_duration_seconds_count', {route: '/ssh/sign', status: '429'}), 1)
    assert.equal(value(m, 'sshca_store_commit_batch_size_sum', {}), 3)
    assert.ok((value(m, 'sshca_store_commit_duration_seconds_count', {}) ?? 0) >= 1)
    const tls = value(m, 'sshca_certificate_expiry_timestamp_seconds', {certificate: 'tls'})!
    const days = (tls - Date.now() / 1000) / 86400
    assert.ok(days > 360 && days < 366, `TLS certificate expiry ${days} days away`)
    assert.ok(value(m, 'sshca_certificate_expiry_timestamp_seconds', {certificate: 'root'})! > tls)
    assert.ok(value(m, 'sshca_ssh_ca_key_since_timestamp_seconds', {kind: 'user', id: 'user-1', state: 'active'})! > 0)
    // nothing per-subject or secret is a label
    assert.doesNotMatch(curl.stdout, /acme\/app|evil\/app|eyJ/)
  })

  it('serves metrics only on its own address, and the API does not serve them', async () => {
    assert.equal((await t.call('GET', '/metrics')).status, 404)
    const other = await run('curl', [
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      t.ca.metricsUrl!.replace('/metrics', '/ssh/roots'),
    ])
    assert.equal(other.stdout, '404')
  })

  it('closing the CA ends the metrics connections: a client dripping its headers to /metrics does not hold it open', async () => {
    const own = await startTestCa({metrics: {address: '127.0.0.1:0'}}, {metricsAddress: '127.0.0.1:0'})
    const u = new URL(own.ca.metricsUrl!)
    const socket = connect(Number(u.port), u.hostname)
    await once(socket, 'connect')
    socket.on('error', () => undefined)
    socket.write('GET /metrics HTTP/1.1\r\nHost: m\r\n')
    const drip = setInterval(() => socket.writable && socket.write('X-Slow: a\r\n'), 300)
    try {
      await new Promise((r) => setTimeout(r, 500))
      let stopped = false
      const stop = own.stop().then(() => (stopped = true))
      await Promise.race([stop, new Promise((r) => setTimeout(r, 20_000))])
      assert.ok(stopped, 'close() returned with a client dripping its headers to /metrics')
    } finally {
      clearInterval(drip)
      socket.destroy()
    }
  })
})
