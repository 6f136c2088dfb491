/**
 * bootstrap() in process, over real HTTPS on 127.0.0.1: against a real CA, and against servers that
 * lie. The root is fetched without TLS verification, so the fingerprint the person typed is the one
 * thing standing between them and a machine in the middle; every lie must end in an error and an
 * $SSHCA_HOME exactly as it was.
 */
import 'reflect-metadata'
import assert from 'node:assert/strict'
import {X509Certificate, webcrypto} from 'node:crypto'
import {mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, utimesSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import * as x509 from '@peculiar/x509'
import {certFingerprint, createIntermediate, createRoot, createTlsCert, type IssuedCert} from '../../src/ca/keys/pki.ts'
import {bootstrap, type BootstrapOptions} from '../../src/client/setup/bootstrap.ts'
import {HOME_LAYOUT, LAYOUT_FILE} from '../../src/client/home/home-layout.ts'
import {buildKrl} from '../../src/ssh/krl.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {rejectsCode} from '../helpers/assert.ts'
import {json, startScripted, type Answer, type ScriptedServer} from '../helpers/scripted-server.ts'
import {startTestCa, type TestCa} from '../helpers/ca.ts'
import {sshca} from '../helpers/cli.ts'
import {waitFor} from '../helpers/proc.ts'
import {snapshot} from '../helpers/snapshot.ts'
import {tempDir} from '../helpers/tmp.ts'
import {startWorld, type World} from '../helpers/world.ts'

/** A certificate made to measure: self-signed or not, CA or not, its name and signer chosen. */
async function craftCert(o: {
  ca: boolean
  subject: string
  issuer: string
  signer?: webcrypto.CryptoKeyPair
}): Promise<{pem: string; fingerprint: string}> {
  const alg = {name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256'} as const
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.create({
    subject: o.subject,
    issuer: o.issuer,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    publicKey: keys.publicKey,
    signingKey: (o.signer ?? keys).privateKey,
    signingAlgorithm: alg,
    extensions: [new x509.BasicConstraintsExtension(o.ca, undefined, true)],
  })
  return {pem: cert.toString('pem'), fingerprint: certFingerprint(cert.rawData)}
}

describe('bootstrap: the root fingerprint is checked against what the CA sends', function () {
  this.timeout(60_000)
  let t: TestCa
  /** Mallory's own PKI: her TLS certificate chains to her root, not to the CA's. */
  let mallory: {root: IssuedCert; intermediate: IssuedCert; tls: IssuedCert}
  let liar: ScriptedServer
  let home: string

  before(async () => {
    t = await startTestCa({ssh: {hostPattern: '*.example.com'}})
    const root = await createRoot('Mallory')
    const intermediate = await createIntermediate('Mallory', root)
    mallory = {root, intermediate, tls: await createTlsCert(['127.0.0.1'], intermediate)}
    liar = await startScripted(mallory.tls, [mallory.intermediate])
  })
  after(async () => {
    await liar?.stop()
    await t?.stop()
  })
  beforeEach(() => {
    home = join(tempDir('sshca-home-'), 'sshca')
    liar.requests = []
  })

  const run = (o: Partial<BootstrapOptions> = {}) =>
    bootstrap(home, {caUrl: liar.url, fingerprint: t.init.rootFingerprint, ...o})

  it('trusts the real CA: the context appears whole, 0700/0600, and becomes current', async () => {
    const fp = t.init.rootFingerprint.toUpperCase().match(/../g)!.join(':')
    const r = await bootstrap(home, {caUrl: `${t.url}//`, fingerprint: ` ${fp} `})
    const [userType, userKey] = t.init.userCaKey.split(' ')
    const [hostType, hostKey] = t.init.hostCaKey.split(' ')
    const dir = join(home, 'contexts', '127.0.0.1')
    const {krl, ...rest} = r
    assert.deepEqual(rest, {
      context: '127.0.0.1',
      caUrl: t.url,
      rootFingerprint: t.init.rootFingerprint,
      rootSubject: 'CN=Test Root CA',
      userCaKeys: [`${userType} ${userKey} 127.0.0.1 user CA`],
      hostCaKeys: [`${hostType} ${hostKey} 127.0.0.1 host CA`],
      hostPattern: '*.example.com',
      sameRoot: [],
      warnings: [],
      replaced: false,
    })
    assert.deepEqual([krl.status, krl.file], ['refreshed', join(dir, 'revoked_host_keys.krl')])
    assert.deepEqual(readdirSync(join(home, 'contexts')), ['127.0.0.1'])
    assert.deepEqual(readdirSync(dir).sort(), ['context.json', 'revoked_host_keys.krl', 'root_ca.crt'])
    for (const d of [home, join(home, 'contexts'), dir]) assert.equal(statSync(d).mode & 0o777, 0o700, d)
    for (const f of ['context.json', 'revoked_host_keys.krl', 'root_ca.crt'])
      assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f)
    assert.equal(statSync(join(home, 'current')).mode & 0o777, 0o600)
    assert.equal(readFileSync(join(home, 'current'), 'utf8'), '127.0.0.1\n')
    assert.equal(readFileSync(join(dir, 'root_ca.crt'), 'utf8').trim(), t.rootPem.trim())
    const {bootstrappedAt, ...settings} = JSON.parse(readFileSync(join(dir, 'context.json'), 'utf8'))
    assert.deepEqual(settings, {
      name: '127.0.0.1',
      caUrl: t.url,
      rootFingerprint: t.init.rootFingerprint,
      userCaKeys: r.userCaKeys,
      hostCaKeys: r.hostCaKeys,
      hostPattern: '*.example.com',
      // what the person was shown: config adopts no later change of the CA's pattern by itself
      acceptedCaPattern: '*.example.com',
    })
    assert.ok(Math.abs(Date.parse(bootstrappedAt) - Date.now()) < 60_000, bootstrappedAt)
  })

  it('a CA that serves another root for /root/{fingerprint}: ERR_TRUST_FINGERPRINT_MISMATCH, nothing written', async () => {
    liar.answer = () => json({ca: mallory.root.pem})
    await rejectsCode(run(), 'ERR_TRUST_FINGERPRINT_MISMATCH')
    assert.deepEqual(snapshot(home), {})
    // it asked for the root it was told to trust, and stopped at the first lie
    assert.deepEqual(liar.requests, [`GET /root/${t.init.rootFingerprint}`])
  })

  it('sshca bootstrap says so and exits 4, with nothing written', async () => {
    liar.answer = () => json({ca: mallory.root.pem})
    const r = await sshca(['bootstrap', '--ca-url', liar.url, '--fingerprint', t.init.rootFingerprint], {
      env: {SSHCA_HOME: home},
    })
    assert.equal(r.code, 4, r.stderr)
    assert.match(r.stderr, /ERR_TRUST_FINGERPRINT_MISMATCH/)
    assert.deepEqual(snapshot(home), {})
  })

  it('the same lie to someone who already trusts this CA, even with --force, changes none of their files', async () => {
    await bootstrap(home, {caUrl: t.url, fingerprint: t.init.rootFingerprint, context: 'prod'})
    const before = snapshot(home)
    liar.answer = () => json({ca: mallory.root.pem})
    await rejectsCode(run({context: 'prod', force: true}), 'ERR_TRUST_FINGERPRINT_MISMATCH')
    assert.deepEqual(snapshot(home), before)
  })

  it('a machine in the middle that relays the real root cannot prove TLS with it: ERR_TRUST_TLS, nothing written', async () => {
    liar.answer = (path) => (path.startsWith('/root/') ? json({ca: t.rootPem}) : json({userKey: [], hostKey: []}))
    await rejectsCode(run(), 'ERR_TRUST_TLS')
    assert.deepEqual(snapshot(home), {})
  })

  it('a fingerprint that names something other than a self-signed CA root is refused, nothing written', async () => {
    const other = (await webcrypto.subtle.generateKey({name: 'ECDSA', namedCurve: 'P-256'}, true, [
      'sign',
      'verify',
    ])) as webcrypto.CryptoKeyPair
    const impostors = {
      'the TLS certificate (not a CA, not self-signed)': {
        pem: mallory.tls.pem,
        fingerprint: certFingerprint(mallory.tls.der),
      },
      'an intermediate (a CA, issued by another)': {
        pem: mallory.intermediate.pem,
        fingerprint: certFingerprint(mallory.intermediate.der),
      },
      'a self-signed certificate that is not a CA': await craftCert({ca: false, subject: 'CN=Leaf', issuer: 'CN=Leaf'}),
      'a CA that names itself as issuer but was signed by another key': await craftCert({
        ca: true,
        subject: 'CN=Root',
        issuer: 'CN=Root',
        signer: other,
      }),
      'a CA signed by its own key under another issuer name': await craftCert({
        ca: true,
        subject: 'CN=Root',
        issuer: 'CN=Someone Else',
      }),
    }
    for (const [what, c] of Object.entries(impostors)) {
      liar.answer = () => json({ca: c.pem})
      await rejectsCode(run({fingerprint: c.fingerprint}), 'ERR_TRUST_FINGERPRINT_MISMATCH').catch((err: Error) =>
        assert.fail(`${what}: ${err.message}`),
      )
      assert.deepEqual(snapshot(home), {}, what)
    }
  })

  it('no root with that fingerprint (404) is a mismatch; an answer that is not a root is a bad response', async () => {
    liar.answer = () => ({status: 404, body: '{"error":"not found"}'})
    await rejectsCode(run(), 'ERR_TRUST_FINGERPRINT_MISMATCH')
    const answers: [string, Answer][] = [
      ['HTTP 500', json({ca: t.rootPem}, 500)],
      ['HTTP 200, no body', {status: 200, body: ''}],
      ['HTTP 200, not JSON', {status: 200, body: '<html>hello</html>'}],
      ['HTTP 200, no ca field', json({crts: [t.rootPem]})],
      ['HTTP 200, an empty ca', json({ca: ''})],
      [
        'HTTP 200, a ca that is not a certificate',
        json({ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'}),
      ],
    ]
    for (const [what, a] of answers) {
      liar.answer = () => a
      await rejectsCode(run(), 'ERR_CA_BAD_RESPONSE').catch((err: Error) => assert.fail(`${what}: ${err.message}`))
    }
    assert.deepEqual(snapshot(home), {})
    // what X.509 said about the bytes is kept for whoever debugs it
    liar.answer = () => json({ca: 'not a certificate'})
    await assert.rejects(run(), (err: Error) => err.cause instanceof Error)
  })

  it('a CA nobody answers for writes nothing (ERR_CA_UNREACHABLE)', async () => {
    const closed = await startScripted(mallory.tls, [])
    const url = closed.url
    await closed.stop()
    await rejectsCode(bootstrap(home, {caUrl: url, fingerprint: t.init.rootFingerprint}), 'ERR_CA_UNREACHABLE')
    assert.deepEqual(snapshot(home), {})
  })

  it('refuses a bad --ca-url, --fingerprint or --context before asking anyone anything', async () => {
    const bad: Partial<BootstrapOptions>[] = [
      {caUrl: 'not a url'},
      {caUrl: liar.url.replace('https:', 'http:')},
      {caUrl: `${liar.url}/?x=1`},
      {caUrl: `${liar.url}/#frag`},
      {caUrl: liar.url.replace('https://', 'https://user@')},
      {fingerprint: 'abc'},
      {fingerprint: `${t.init.rootFingerprint}00`},
      {fingerprint: t.init.rootFingerprint.replace(/^./, 'g')},
      {context: '../etc'},
      {context: '.hidden'},
    ]
    for (const o of bad)
      await rejectsCode(run(o), 'ERR_USAGE').catch((err: Error) => assert.fail(`${JSON.stringify(o)}: ${err.message}`))
    assert.deepEqual(liar.requests, [])
    assert.deepEqual(snapshot(home), {})
  })

  it('a CA URL with a path keeps it; an IPv6 CA needs no --context', async () => {
    liar.answer = () => ({status: 404, body: ''})
    await rejectsCode(run({caUrl: `${liar.url}/pki/sshca/`}), 'ERR_TRUST_FINGERPRINT_MISMATCH')
    assert.deepEqual(liar.requests, [`GET /pki/sshca/root/${t.init.rootFingerprint}`])
    // nothing listens there: the name "[::1]" gives is fine, so it is the network that fails
    await rejectsCode(run({caUrl: 'https://[::1]:1'}), 'ERR_CA_UNREACHABLE')
  })
})

describe('bootstrap: what a CA that proved its root sends, and what is already there', function () {
  this.timeout(60_000)
  /** A CA we script, with a root of its own that its TLS chains to: it passes both checks. */
  let ca: {root: IssuedCert; server: ScriptedServer; roots: unknown; krl: Answer}
  let t: TestCa
  let home: string
  const userKey = () => generatePrivateKey('ed25519').publicKey

  before(async () => {
    t = await startTestCa({})
    const root = await createRoot('Scripted')
    const intermediate = await createIntermediate('Scripted', root)
    const server = await startScripted(await createTlsCert(['127.0.0.1'], intermediate), [intermediate])
    ca = {root, server, roots: {}, krl: {status: 404, body: ''}}
    server.answer = (path) =>
      path === `/root/${certFingerprint(root.der)}`
        ? json({ca: root.pem})
        : path === '/ssh/roots'
          ? ca.roots === null
            ? json({status: 404, message: 'no keys found'}, 404)
            : json(ca.roots)
          : path === '/ssh/krl'
            ? ca.krl
            : {status: 404, body: ''}
  })
  after(async () => {
    await ca?.server.stop()
    await t?.stop()
  })
  beforeEach(() => {
    home = join(tempDir('sshca-home-'), 'sshca')
    ca.krl = {status: 404, body: ''}
  })

  const run = (o: Partial<BootstrapOptions> = {}) =>
    bootstrap(home, {caUrl: ca.server.url, fingerprint: certFingerprint(ca.root.der), context: 'scripted', ...o})

  it('no hostPattern names no hosts ("!*"); several keys are all kept, in order; none is refused', async () => {
    const [u1, u2, h1] = [userKey(), userKey(), userKey()]
    ca.roots = {userKey: [u1, u2].map((k) => k.blob.toString('base64')), hostKey: [h1.blob.toString('base64')]}
    const r = await run()
    assert.deepEqual(r.userCaKeys, [u1.toLine('scripted user CA'), u2.toLine('scripted user CA')])
    assert.deepEqual(r.hostCaKeys, [h1.toLine('scripted host CA')])
    assert.equal(JSON.parse(readFileSync(join(home, 'contexts', 'scripted', 'context.json'), 'utf8')).hostPattern, '!*')
    ca.roots = {userKey: [], hostKey: []}
    const other = join(tempDir('sshca-home-'), 'sshca')
    await rejectsCode(
      bootstrap(other, {caUrl: ca.server.url, fingerprint: certFingerprint(ca.root.der)}),
      'ERR_CA_UNSUPPORTED',
    )
    assert.deepEqual(snapshot(other), {})
  })

  it('leaves no connection open behind it', async () => {
    ca.roots = {userKey: [userKey().blob.toString('base64')], hostKey: []}
    await run()
    await waitFor(
      'bootstrap to close its connections to the CA',
      async () => (await ca.server.connections()) === 0,
      30_000,
    )
  })

  it('a host pattern that would be more than one known_hosts field names no hosts', async () => {
    for (const hostPattern of [
      '*.corp\n@cert-authority * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl',
      '*.corp *',
      '',
      '*.corp\t',
      'hösts',
    ]) {
      ca.roots = {userKey: [], hostKey: [userKey().blob.toString('base64')], hostPattern}
      const r = await run({force: true})
      assert.equal(r.hostPattern, '!*', JSON.stringify(hostPattern))
      assert.equal(
        JSON.parse(readFileSync(join(home, 'contexts', 'scripted', 'context.json'), 'utf8')).hostPattern,
        '!*',
      )
    }
    ca.roots = {userKey: [], hostKey: [userKey().blob.toString('base64')], hostPattern: '*.corp,!bastion.corp,10.0.?.*'}
    assert.equal((await run({force: true})).hostPattern, '*.corp,!bastion.corp,10.0.?.*')
  })

  it('a CA whose /ssh/roots answers 404 (step-ca without SSH) issues no SSH certificates: ERR_CA_UNSUPPORTED, nothing written', async () => {
    ca.roots = null
    await rejectsCode(run(), 'ERR_CA_UNSUPPORTED')
    assert.deepEqual(snapshot(home), {})
    assert.ok(ca.server.requests.includes('GET /ssh/roots'))
  })

  it('a home with a symbolic link in it is refused before the CA is asked anything', async () => {
    mkdirSync(home, {recursive: true, mode: 0o700})
    symlinkSync(tempDir('sshca-elsewhere-'), join(home, 'contexts'))
    const asked = ca.server.requests.length
    await rejectsCode(run(), 'ERR_UNSAFE_PATH')
    assert.equal(ca.server.requests.length, asked, 'no request before the home is known to be safe')
  })

  it('a fresh home says which layout it is in', async () => {
    ca.roots = {userKey: [userKey().blob.toString('base64')], hostKey: []}
    await run()
    assert.deepEqual(JSON.parse(readFileSync(join(home, LAYOUT_FILE), 'utf8')), {layout: HOME_LAYOUT})
  })

  it('the KRL: fetched into the context when the CA has one; a re-bootstrap whose fetch fails keeps the previous copy and its time', async () => {
    ca.roots = {userKey: [userKey().blob.toString('base64')], hostKey: [userKey().blob.toString('base64')]}
    // no KRL at the CA and none before: nothing for ssh to read, and the result says so
    const none = await run()
    assert.equal(none.krl.status, 'unavailable')
    assert.equal(none.krl.file, null)
    assert.ok(none.warnings.includes(none.krl.note!), 'the note is among the warnings')
    const file = join(home, 'contexts', 'scripted', 'revoked_host_keys.krl')
    const krl = buildKrl({version: 7n, generatedAt: 1_700_000_000n, comment: 'scripted', sections: []})
    ca.krl = {status: 200, body: krl}
    const fresh = await run()
    assert.equal(fresh.krl.status, 'refreshed')
    assert.equal(fresh.krl.file, file, 'the path where the context lives, not where it was staged')
    assert.deepEqual(readFileSync(file), krl)
    assert.deepEqual(fresh.warnings, [], 'a plain re-bootstrap warns of nothing (not of itself as a second context)')
    const then = new Date('2026-01-02T03:04:05Z')
    utimesSync(file, then, then)
    ca.krl = {status: 500, body: ''}
    const kept = await run()
    assert.equal(kept.krl.status, 'failed')
    assert.equal(kept.krl.file, file)
    assert.equal(kept.krl.fetchedAt, then.toISOString(), 'the copy keeps its time, so its age shows')
    assert.deepEqual(readFileSync(file), krl)
    assert.equal(statSync(file).mtime.toISOString(), then.toISOString())
  })

  it('warns of a second context for the same root, of a host pattern that names every host, and of overlapping patterns', async () => {
    // beside them: a context of another CA (another root, no pattern) and a damaged one, neither a "second context"
    await bootstrap(home, {caUrl: t.url, fingerprint: t.init.rootFingerprint, context: 'other-ca'})
    mkdirSync(join(home, 'contexts', 'broken'), {mode: 0o700})
    writeFileSync(join(home, 'contexts', 'broken', 'context.json'), '{', {mode: 0o600})
    ca.roots = {
      userKey: [userKey().blob.toString('base64')],
      hostKey: [userKey().blob.toString('base64')],
      hostPattern: '*.corp',
    }
    ca.krl = {status: 200, body: buildKrl({version: 1n, generatedAt: 1n, comment: '', sections: []})}
    assert.deepEqual((await run()).warnings, [])
    const second = await run({context: 'again'})
    const same = second.warnings.filter((w) => w.includes('"scripted"'))
    assert.equal(same.length, 2, `one for the same root, one for the same pattern: ${JSON.stringify(second.warnings)}`)
    assert.ok(same.some((w) => w.includes(ca.server.url)))
    assert.ok(same.some((w) => w.includes('*.corp')))
    // alone in a home: the one warning is the pattern's
    ca.roots = {userKey: [], hostKey: [userKey().blob.toString('base64')], hostPattern: '*'}
    const star = await bootstrap(join(tempDir('sshca-home-'), 'sshca'), {
      caUrl: ca.server.url,
      fingerprint: certFingerprint(ca.root.der),
      context: 'star',
    })
    assert.equal(star.warnings.length, 1, JSON.stringify(star.warnings))
    assert.ok(star.warnings[0]!.includes('"*"'))
    // the same, spelled otherwise: once, only "*" itself was warned about
    for (const hostPattern of ['?*', '**', '*,!x.invalid']) {
      ca.roots = {userKey: [], hostKey: [userKey().blob.toString('base64')], hostPattern}
      const other = await bootstrap(join(tempDir('sshca-home-'), 'sshca'), {
        caUrl: ca.server.url,
        fingerprint: certFingerprint(ca.root.der),
        context: 'star',
      })
      assert.equal(other.warnings.length, 1, `${hostPattern}: ${JSON.stringify(other.warnings)}`)
      assert.match(other.warnings[0]!, /matches hosts in any domain/)
    }
    // a pattern that names no hosts overlaps with nothing
    ca.roots = {userKey: [], hostKey: [userKey().blob.toString('base64')]}
    const quiet = await run({context: 'quiet'})
    assert.deepEqual(
      quiet.warnings.filter((w) => !w.includes('the same CA')),
      [],
      JSON.stringify(quiet.warnings),
    )
  })

  it('an SSH CA key that is not a key writes nothing', async () => {
    ca.roots = {userKey: [Buffer.from('not a key').toString('base64')], hostKey: []}
    await rejectsCode(run(), 'ERR_SSH_FORMAT')
    assert.deepEqual(snapshot(home), {})
    ca.roots = {userKey: 'not a list'}
    await rejectsCode(run(), 'ERR_CA_BAD_RESPONSE')
    assert.deepEqual(snapshot(home), {})
  })

  it('another root for an existing context needs force; the files stay as they were until then', async () => {
    ca.roots = {userKey: [userKey().blob.toString('base64')], hostKey: []}
    await bootstrap(home, {caUrl: t.url, fingerprint: t.init.rootFingerprint, context: 'scripted'})
    const before = snapshot(home)
    await rejectsCode(run(), 'ERR_TRUST_ROOT_CHANGED')
    assert.deepEqual(snapshot(home), before)
    const forced = await run({force: true})
    assert.equal(forced.replaced, true)
    assert.equal(readFileSync(join(home, 'contexts', 'scripted', 'root_ca.crt'), 'utf8'), ca.root.pem)
    assert.deepEqual(readdirSync(join(home, 'contexts')), ['scripted'])
    // the same root again needs no force, and replaces the settings with what the CA says now
    const h = userKey()
    ca.roots = {userKey: [], hostKey: [h.blob.toString('base64')], hostPattern: '*.corp'}
    const again = await run()
    assert.equal(again.replaced, true)
    const settings = JSON.parse(readFileSync(join(home, 'contexts', 'scripted', 'context.json'), 'utf8'))
    assert.deepEqual(
      [settings.userCaKeys, settings.hostCaKeys, settings.hostPattern],
      [[], [h.toLine('scripted host CA')], '*.corp'],
    )
  })

  it('a damaged context is not silently replaced, and no half-written copy is left behind', async () => {
    ca.roots = {userKey: [userKey().blob.toString('base64')], hostKey: []}
    const dir = join(home, 'contexts', 'scripted')
    mkdirSync(dir, {recursive: true})
    writeFileSync(join(dir, 'root_ca.crt'), 'mine')
    await assert.rejects(run({force: true}))
    assert.deepEqual(readdirSync(join(home, 'contexts')), ['scripted'])
    assert.deepEqual(readdirSync(dir), ['root_ca.crt'])
  })
})

describe('bootstrap during an X.509 root rotation (in process)', function () {
  this.timeout(120_000)
  let w: World
  let oldFp: string
  let newFp: string
  before(async () => {
    w = await startWorld({keysIntervalMs: 100})
    oldFp = w.t.init.rootFingerprint
    const r = await sshca(
      ['ca', 'rotate', 'prepare', '--kind', 'root', '--config', w.t.init.config, '--password-file', w.t.passwordFile],
      {},
    )
    assert.equal(r.code, 0, r.stderr)
    const roots = async () => ((await w.t.call('GET', '/roots')).json as {crts: string[]}).crts
    await waitFor('the CA to publish the next root', async () => (await roots()).length === 2, 30_000)
    newFp = (await roots()).map((p) => certFingerprint(new X509Certificate(p).raw)).find((f) => f !== oldFp)!
  })
  after(async () => w?.stop())

  const pinned = (home: string) =>
    [
      ...readFileSync(join(home, 'contexts', 'inproc', 'root_ca.crt'), 'utf8').matchAll(
        /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g,
      ),
    ].map((m) => certFingerprint(new X509Certificate(m[0]).raw))

  it('by the old fingerprint it writes only into its home, and takes that fingerprint again without --force', async () => {
    const home = join(tempDir('sshca-root-inproc-'), 'sshca')
    const cwd = tempDir('sshca-root-cwd-')
    const was = process.cwd()
    process.chdir(cwd)
    try {
      await bootstrap(home, {caUrl: w.t.url, fingerprint: oldFp, context: 'inproc'})
      assert.deepEqual(readdirSync(cwd), [], 'the roots it followed are written with the context, never beside it')
      assert.deepEqual(pinned(home), [oldFp, newFp])
      // the context now names the CA by its new root and still pins the old one: bootstrapping by the
      // old fingerprint again is no change of root, so it needs no --force
      const ctx = JSON.parse(readFileSync(join(home, 'contexts', 'inproc', 'context.json'), 'utf8'))
      assert.equal(ctx.rootFingerprint, newFp)
      const again = await bootstrap(home, {caUrl: w.t.url, fingerprint: oldFp, context: 'inproc'})
      assert.equal(again.replaced, true)
      assert.deepEqual(pinned(home), [oldFp, newFp])
    } finally {
      process.chdir(was)
    }
  })
})
