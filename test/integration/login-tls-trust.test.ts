/**
 * A login with a token file talks TLS to its CA and nothing else, so its process trusts the context's
 * pinned root alone (trustOnlyRoot): no connection it opens can be vouched for by another authority,
 * not even one that NODE_EXTRA_CA_CERTS names. Performed for real: Mallory's HTTPS server, whose chain
 * ends in a root that NODE_EXTRA_CA_CERTS names, against Node in a child process (the trust is the
 * process's).
 */
import assert from 'node:assert/strict'
import {X509Certificate} from 'node:crypto'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {createIntermediate, createRoot, createTlsCert} from '../../src/ca/keys/pki.ts'
import {ROOT, sshca} from '../helpers/cli.ts'
import {run} from '../helpers/proc.ts'
import {json, startScripted, type ScriptedServer} from '../helpers/scripted-server.ts'
import {tempDir} from '../helpers/tmp.ts'
import {startWorld, type World} from '../helpers/world.ts'

/** Records, as the process exits, the roots a TLS connection without a `ca` of its own trusts. */
const PROBE = `const tls = require('node:tls')
process.on('exit', () => {
  require('node:fs').writeFileSync(process.env.PROBE_OUT, JSON.stringify(tls.getCACertificates('default')))
})
`

describe('a login with a token file trusts the CA root alone', function () {
  this.timeout(90_000)
  let w: World
  let mallory: ScriptedServer
  let dir: string
  /** NODE_EXTRA_CA_CERTS: Mallory's root. */
  let extra: NodeJS.ProcessEnv
  const fingerprints = (pems: string[]): string[] => pems.map((p) => new X509Certificate(p).fingerprint256).sort()

  before(async () => {
    w = await startWorld()
    await w.bootstrap()
    const root = await createRoot('Mallory')
    const intermediate = await createIntermediate('Mallory', root)
    mallory = await startScripted(await createTlsCert(['127.0.0.1'], intermediate), [intermediate])
    mallory.answer = () => json({ok: true})
    dir = tempDir()
    writeFileSync(join(dir, 'mallory-root.pem'), root.pem)
    writeFileSync(join(dir, 'probe.cjs'), PROBE)
    extra = {NODE_EXTRA_CA_CERTS: join(dir, 'mallory-root.pem')}
  })
  after(async () => {
    await mallory?.stop()
    await w?.stop()
  })

  /** What a GET without a pinned root gets from each URL (a status, or the TLS error's code), in a child Node. */
  async function reach(urls: string[], pin: boolean): Promise<string[]> {
    const script = `import {get} from 'node:https'
import {readFileSync} from 'node:fs'
import {trustOnlyRoot} from ${JSON.stringify(join(ROOT, 'src/client/ca-api/trust-only.ts'))}
if (${pin}) trustOnlyRoot(readFileSync(${JSON.stringify(join(w.home, 'contexts/test/root_ca.crt'))}, 'utf8'))
const one = (url) => new Promise((resolve) => {
  get(url, {agent: false}, (res) => { res.resume(); resolve(String(res.statusCode)) }).on('error', (e) => resolve(e.code ?? e.message))
})
const out = []
for (const url of ${JSON.stringify(urls)}) out.push(await one(url))
process.stdout.write(JSON.stringify(out))
`
    const r = await run(process.execPath, ['--input-type=module', '-e', script], {
      env: {...process.env, ...extra},
      timeoutMs: 30_000,
    })
    assert.equal(r.code, 0, r.stderr)
    return JSON.parse(r.stdout) as string[]
  }

  it('trustOnlyRoot: Mallory, whom NODE_EXTRA_CA_CERTS vouches for, is refused; the CA is still reached', async () => {
    const urls = [`${mallory.url}/`, `${w.t.url}/health`]
    // without it, NODE_EXTRA_CA_CERTS is in force (the refusal below is the pin's doing) and the CA's root is not
    assert.deepEqual(await reach(urls, false), ['200', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'])
    assert.deepEqual(await reach(urls, true), ['UNABLE_TO_GET_ISSUER_CERT_LOCALLY', '200'])
  })

  for (const path of ['fast path', 'oclif']) {
    it(`sshca login --identity-token-file (${path}): the process trusts the context's root and nothing else`, async () => {
      const token = join(dir, `token-${path}`)
      writeFileSync(token, await w.gh.mint(), {mode: 0o600})
      const out = join(dir, `roots-${path}.json`)
      const r = await sshca(['login', '--identity-token-file', token], {
        env: {
          ...w.env,
          ...extra,
          NODE_OPTIONS: `--require ${join(dir, 'probe.cjs')}`,
          PROBE_OUT: out,
          ...(path === 'oclif' ? {SSHCA_NO_FAST_PATH: '1'} : {}),
        },
      })
      assert.equal(r.code, 0, r.stderr)
      const root = readFileSync(join(w.home, 'contexts/test/root_ca.crt'), 'utf8')
      assert.deepEqual(fingerprints(JSON.parse(readFileSync(out, 'utf8')) as string[]), fingerprints([root]))
    })
  }

  // root_ca.crt damaged by hand or by a torn disk: Node's setDefaultCACertificates throws at a block that
  // does not parse, where the pinned client's context skips it. The login must go as it went before the
  // process-wide pin (CaClient trusting what parses), never fail with an internal error; the process's
  // other connections then trust nothing
  const BAD_BLOCK = '-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n'
  for (const [what, damage, code] of [
    ['a pinned root followed by a block that does not parse', (pem: string) => pem + BAD_BLOCK, 0],
    ['a truncated pinned root', (pem: string) => `${pem.slice(0, -60)}\n-----END CERTIFICATE-----\n`, 4],
  ] as const) {
    it(`${what}: no internal error; the process's other connections trust nothing`, async () => {
      const file = join(w.home, 'contexts/test/root_ca.crt')
      const root = readFileSync(file, 'utf8')
      writeFileSync(file, damage(root))
      try {
        const token = join(dir, `token-${code}`)
        writeFileSync(token, await w.gh.mint(), {mode: 0o600})
        const out = join(dir, `roots-damaged-${code}.json`)
        const r = await sshca(
          ['login', '--identity-token-file', token, '--no-agent', '--out', join(dir, `key-${code}`)],
          {
            env: {...w.env, ...extra, NODE_OPTIONS: `--require ${join(dir, 'probe.cjs')}`, PROBE_OUT: out},
          },
        )
        assert.doesNotMatch(r.stderr, /ERR_INTERNAL/)
        assert.equal(r.code, code, r.stderr)
        if (code === 4) assert.match(r.stderr, /ERR_TRUST_TLS/)
        assert.deepEqual(JSON.parse(readFileSync(out, 'utf8')), [])
      } finally {
        writeFileSync(file, root)
      }
    })
  }

  it('a command that may reach an identity provider keeps the default roots (NODE_EXTRA_CA_CERTS among them)', async () => {
    const out = join(dir, 'roots-list.json')
    const r = await sshca(['list'], {
      env: {...w.env, ...extra, NODE_OPTIONS: `--require ${join(dir, 'probe.cjs')}`, PROBE_OUT: out},
    })
    assert.equal(r.code, 0, r.stderr)
    const roots = fingerprints(JSON.parse(readFileSync(out, 'utf8')) as string[])
    assert.ok(roots.includes(fingerprints([readFileSync(join(dir, 'mallory-root.pem'), 'utf8')])[0]!))
    assert.ok(roots.length > 1)
  })
})
