/**
 * Rotating the X.509 root clients pin, with the CLI as processes against a running CA: the old root
 * vouches for the new one (a cross-certificate), so contexts pinned to the old root keep working and
 * learn the new root by themselves, bootstrap works with either fingerprint during the overlap, hosts
 * keep renewing, and only after `retire` is the old root gone.
 */
import assert from 'node:assert/strict'
import {X509Certificate, createHash} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {connect} from 'node:tls'
import {join} from 'node:path'
import {sshca} from '../helpers/cli.ts'
import {runOk, waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {startWorld, type World} from '../helpers/world.ts'

const fpOf = (pem: string) => createHash('sha256').update(new X509Certificate(pem).raw).digest('hex')
const pinned = (home: string, ctx: string) =>
  [
    ...readFileSync(join(home, 'contexts', ctx, 'root_ca.crt'), 'utf8').matchAll(
      /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g,
    ),
  ].map((m) => fpOf(m[0]))

/** The subjects of the chain the CA presents over TLS (not verified: this only looks). */
function presentedChain(url: string): Promise<string[]> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const s = connect({host: u.hostname, port: Number(u.port), rejectUnauthorized: false}, () => {
      const out: string[] = []
      let c = s.getPeerCertificate(true)
      const seen = new Set<string>()
      while (c && !seen.has(c.fingerprint256)) {
        seen.add(c.fingerprint256)
        out.push(`${c.subject.CN} <- ${c.issuer.CN}`)
        c = c.issuerCertificate
      }
      s.end()
      resolve(out)
    })
    s.on('error', reject)
  })
}

describe('X.509 root rotation: the old root vouches for the new one', function () {
  this.timeout(240_000)
  let w: World
  let oldFp: string
  let newFp: string
  const hostDir = tempDir('sshca-root-host-')
  const hostKey = join(hostDir, 'ssh_host_ed25519_key')
  const ca = () => ['--config', w.t.init.config]
  const ok = async (args: string[], env?: NodeJS.ProcessEnv) => {
    const r = await sshca(args, env ? {env} : {})
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
    return r
  }
  const roots = async () => (await w.t.call('GET', '/roots')).json as {crts: string[]; crossSigned?: string[]}

  before(async () => {
    w = await startWorld({keysIntervalMs: 100})
    oldFp = w.t.init.rootFingerprint
    // three machines that pinned the old root: one refreshes during the overlap, one only after
    // activation, one never until after retirement
    for (const c of ['laptop', 'stale', 'late']) await w.bootstrap(c)
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'host', '-f', hostKey])
    const t = await ok(['ca', 'token', '--host', 'web1', ...ca(), '--password-file', w.t.passwordFile])
    await ok(
      [
        'certificate',
        '--host',
        '--sign',
        '--context',
        'laptop',
        '--token',
        t.stdout.trim().split('\n').pop()!,
        'web1',
        `${hostKey}.pub`,
      ],
      w.env,
    )
  })
  after(async () => w?.stop())

  it('prepare: /roots lists both roots and the cross-certificate; a refreshing client pins the new root', async () => {
    await ok(['ca', 'rotate', 'prepare', '--kind', 'root', ...ca(), '--password-file', w.t.passwordFile])
    await waitFor('the CA to publish the next root', async () => (await roots()).crts.length === 2, 20_000)
    const r = await roots()
    newFp = fpOf(r.crts[1]!)
    assert.equal(fpOf(r.crts[0]!), oldFp)
    assert.equal(r.crossSigned!.length, 1)
    const cross = new X509Certificate(r.crossSigned![0]!)
    assert.ok(
      cross.checkIssued(new X509Certificate(r.crts[0]!)) && cross.verify(new X509Certificate(r.crts[0]!).publicKey),
      'the old root signed the cross-certificate',
    )
    assert.equal(cross.subject, new X509Certificate(r.crts[1]!).subject)
    // the laptop refreshes (any command that talks to the CA): it now pins both
    await ok(['config', '--roots', '--context', 'laptop'], w.env)
    assert.deepEqual(pinned(w.home, 'laptop'), [oldFp, newFp])
    assert.deepEqual(pinned(w.home, 'stale'), [oldFp])
  })

  it('the new root is pinned only when the pinned root vouches for it: a root the CA merely lists is not trusted', async () => {
    const {nextPinnedRoots} = await import('../../src/client/ca-api/roots.ts')
    const {createRoot} = await import('../../src/ca/keys/pki.ts')
    const rogue = await createRoot('rogue', new Date(), 2)
    const r = await roots()
    const pinnedNow = [new X509Certificate(r.crts[0]!)]
    // listed, with no certificate from the pinned root: refused
    const listed = nextPinnedRoots(pinnedNow, [...pinnedNow, new X509Certificate(rogue.pem)], [], new Date())
    assert.deepEqual(listed.adopted, [])
    // with the real cross-certificate, which certifies another key: refused
    const swapped = nextPinnedRoots(
      pinnedNow,
      [...pinnedNow, new X509Certificate(rogue.pem)],
      r.crossSigned!.map((p) => new X509Certificate(p)),
      new Date(),
    )
    assert.deepEqual(swapped.adopted, [])
    // a CA (or someone in its place) that publishes only a root this machine cannot vouch for does not
    // make it drop the one it pins: trust never falls to nothing by itself
    const replaced = nextPinnedRoots(pinnedNow, [new X509Certificate(rogue.pem)], [], new Date())
    assert.deepEqual(
      replaced.roots.map((c) => c.fingerprint256),
      pinnedNow.map((c) => c.fingerprint256),
    )
    assert.deepEqual(replaced.dropped, [])
  })

  it('activate: the TLS chain verifies for either root; a context pinning only the old root still connects and learns the new one', async () => {
    await ok(['ca', 'rotate', 'activate', '--kind', 'root', ...ca(), '--password-file', w.t.passwordFile])
    await waitFor('the CA to present the new chain', async () => (await presentedChain(w.t.url)).length >= 3, 20_000)
    const chain = await presentedChain(w.t.url)
    // the new intermediate as the old root issued it, then the old root as the new root certified it
    assert.match(chain[1]!, /2 Intermediate CA <- Test Root CA$/, `chain: ${chain.join(' | ')}`)
    assert.match(chain[2]!, /^Test Root CA <- Test Root CA 2$/, `chain: ${chain.join(' | ')}`)
    assert.deepEqual(pinned(w.home, 'stale'), [oldFp])
    await ok(['config', '--roots', '--context', 'stale'], w.env)
    assert.deepEqual(pinned(w.home, 'stale'), [oldFp, newFp])
    const ctx = JSON.parse(readFileSync(join(w.home, 'contexts', 'stale', 'context.json'), 'utf8'))
    assert.equal(ctx.rootFingerprint, newFp, 'the context names the CA by its newest root from now on')
  })

  it('bootstrap works with the old fingerprint and with the new one during the overlap (each verifies the same TLS chain)', async () => {
    // by the old fingerprint: the old root, and the new one it vouches for
    await ok(['bootstrap', '--ca-url', w.t.url, '--fingerprint', oldFp, '--context', 'by-old'], w.env)
    assert.deepEqual(pinned(w.home, 'by-old'), [oldFp, newFp])
    // by the new fingerprint: the new root alone (nothing makes it trust the root being retired)
    await ok(['bootstrap', '--ca-url', w.t.url, '--fingerprint', newFp, '--context', 'by-new'], w.env)
    assert.deepEqual(pinned(w.home, 'by-new'), [newFp])
    await ok(['config', '--roots', '--context', 'by-new'], w.env)
  })

  it('a host keeps renewing across the rotation (tokens naming either root are accepted)', async () => {
    const r = await ok(['renew', '--context', 'laptop', '--force', `${hostKey}-cert.pub`, hostKey, '--json'], w.env)
    assert.equal(JSON.parse(r.stdout).renewed, true)
  })

  it('retire: only the new root is published; refreshed contexts keep working and drop the old root, a context that never refreshed fails closed', async () => {
    await ok(['ca', 'rotate', 'retire', '--kind', 'root', ...ca()])
    await waitFor('the CA to drop the old root', async () => (await roots()).crts.length === 1, 20_000)
    assert.equal(fpOf((await roots()).crts[0]!), newFp)
    assert.equal((await roots()).crossSigned, undefined)
    await waitFor(
      'the CA to present the chain without the cross-certificate',
      async () => (await presentedChain(w.t.url)).length === 2,
      20_000,
    )
    await ok(['config', '--roots', '--context', 'laptop'], w.env)
    assert.deepEqual(pinned(w.home, 'laptop'), [newFp])
    // bootstrap by the retired root's fingerprint: no longer served
    const old = await sshca(['bootstrap', '--ca-url', w.t.url, '--fingerprint', oldFp, '--context', 'too-late'], {
      env: w.env,
    })
    assert.equal(old.code, 4)
    assert.match(old.stderr, /ERR_TRUST_FINGERPRINT_MISMATCH/)
    // a machine that slept through the whole overlap pins only the old root: the CA's TLS no longer chains to it
    const late = await sshca(['config', '--roots', '--context', 'late'], {env: w.env})
    assert.equal(late.code, 4)
    assert.match(late.stderr, /ERR_TRUST_TLS/)
    const r = await ok(['renew', '--context', 'laptop', '--force', `${hostKey}-cert.pub`, hostKey, '--json'], w.env)
    assert.equal(JSON.parse(r.stdout).renewed, true)
    // the audit log has each step
    await waitFor(
      'the root rotation in the audit log',
      () =>
        ['ca_root_prepared', 'ca_root_activated', 'ca_root_retired'].every((e) =>
          w.t.audit().some((l) => l.event === e),
        ),
      20_000,
    )
  })
})
