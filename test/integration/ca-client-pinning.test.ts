/**
 * CaClient's pin, as seen from the network: its connections trust the context's root and nothing else
 * (not the process's defaults, however they were widened), check the server's name against the
 * certificate, and share no TLS session with another client. CaClient builds one secure context for
 * its agent (not `ca` per connection); these hold whichever way it is built.
 */
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {CaClient} from '../../src/client/ca-api/ca-client.ts'
import {boolean, object} from '../../src/protocol/check.ts'
import {createIntermediate, createRoot, createTlsCert, type IssuedCert} from '../../src/ca/keys/pki.ts'
import {rejectsCode} from '../helpers/assert.ts'
import {ROOT} from '../helpers/cli.ts'
import {run} from '../helpers/proc.ts'
import {json, startScripted, type ScriptedServer} from '../helpers/scripted-server.ts'
import {tempDir} from '../helpers/tmp.ts'

const Ok = object({ok: boolean()})

describe("CaClient trusts the context's pinned root alone", function () {
  this.timeout(90_000)
  let pinned: IssuedCert
  let mallory: IssuedCert
  /** Chains to the pinned root, for 127.0.0.1. */
  let ca: ScriptedServer
  /** Chains to the pinned root, but names only localhost. */
  let misnamed: ScriptedServer
  /** Chains to Mallory's root, for 127.0.0.1. */
  let impostor: ScriptedServer

  before(async () => {
    pinned = await createRoot('Pinned')
    const mid = await createIntermediate('Pinned', pinned)
    mallory = await createRoot('Mallory')
    const mmid = await createIntermediate('Mallory', mallory)
    ca = await startScripted(await createTlsCert(['127.0.0.1'], mid), [mid])
    misnamed = await startScripted(await createTlsCert(['localhost'], mid), [mid])
    impostor = await startScripted(await createTlsCert(['127.0.0.1'], mmid), [mmid])
    for (const s of [ca, misnamed, impostor]) s.answer = () => json({ok: true})
  })
  after(async () => {
    await Promise.all([ca, misnamed, impostor].map((s) => s?.stop()))
  })

  it("reaches a CA whose chain ends in the pinned root, over one connection's session or several", async () => {
    const c = new CaClient(ca.url, pinned.pem)
    try {
      assert.deepEqual(await c.call('GET', '/a', Ok), {ok: true})
      // a second connection (the first is busy): the agent offers the first one's TLS session
      await Promise.all([c.call('GET', '/b', Ok), c.call('GET', '/c', Ok)])
    } finally {
      c.close()
    }
  })

  it('refuses a certificate of the pinned root for another name (the hostname check still runs): ERR_TRUST_TLS', async () => {
    const c = new CaClient(misnamed.url, pinned.pem)
    try {
      await rejectsCode(c.call('GET', '/', Ok), 'ERR_TRUST_TLS', {}, /ERR_TLS_CERT_ALTNAME_INVALID/)
    } finally {
      c.close()
    }
  })

  it('a client pinned to another root gets no session of one that reached the CA: ERR_TRUST_TLS', async () => {
    const good = new CaClient(ca.url, pinned.pem)
    const other = new CaClient(ca.url, mallory.pem)
    const wrong = new CaClient(impostor.url, pinned.pem)
    try {
      await good.call('GET', '/', Ok)
      await rejectsCode(other.call('GET', '/', Ok), 'ERR_TRUST_TLS')
      // the pinned root's client, at a server of Mallory's on another port
      await rejectsCode(wrong.call('GET', '/', Ok), 'ERR_TRUST_TLS')
    } finally {
      good.close()
      other.close()
      wrong.close()
    }
  })

  it("refuses Mallory whom the process's default roots vouch for (NODE_EXTRA_CA_CERTS, the system's store)", async () => {
    const dir = tempDir()
    writeFileSync(join(dir, 'mallory.pem'), mallory.pem)
    // in a child process: the defaults are the process's, and this one's are not to be widened
    const script = `import {CaClient} from ${JSON.stringify(join(ROOT, 'src/client/ca-api/ca-client.ts'))}
import {get} from 'node:https'
const schema = {safeParse: (v) => ({success: true, data: v})}
const out = {}
const probe = (url) => new Promise((resolve) => get(url, {agent: false}, (res) => { res.resume(); resolve(String(res.statusCode)) }).on('error', (e) => resolve(e.code)))
// the defaults do vouch for Mallory here (else the refusal below would prove nothing)
out.defaults = await probe(${JSON.stringify(`${impostor.url}/`)})
for (const [name, url] of [['impostor', ${JSON.stringify(impostor.url)}], ['ca', ${JSON.stringify(ca.url)}]]) {
  const c = new CaClient(url, ${JSON.stringify(pinned.pem)})
  out[name] = await c.call('GET', '/', schema).then(() => 'ok', (e) => e.code)
  c.close()
}
process.stdout.write(JSON.stringify(out))
`
    for (const [flags, env] of [
      [[], {NODE_EXTRA_CA_CERTS: join(dir, 'mallory.pem')}],
      [['--use-openssl-ca'], {SSL_CERT_FILE: join(dir, 'mallory.pem')}],
    ] as const) {
      const r = await run(process.execPath, [...flags, '--input-type=module', '-e', script], {
        env: {...process.env, ...env},
        timeoutMs: 30_000,
      })
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(JSON.parse(r.stdout), {defaults: '200', impostor: 'ERR_TRUST_TLS', ca: 'ok'}, flags.join(' '))
    }
  })
})
