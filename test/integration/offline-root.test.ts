/**
 * The offline root, as an operator runs it (the built CLI): `ca init --offline-root FILE` leaves no
 * root key in the CA directory, the CA serves without it, and `ca intermediate --root-key FILE`
 * issues a new intermediate under the same root that an existing client context keeps trusting
 * without bootstrapping again. A key that is not the root's is refused before anything is written.
 */
import assert from 'node:assert/strict'
import {existsSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {connect} from 'node:tls'
import {X509Certificate} from 'node:crypto'
import {startCa, type RunningCa} from '../../src/ca/server.ts'
import {readSealedKey} from '../../src/ca/keys/keystore.ts'
import {keyMatchesCert, parseCert} from '../../src/ca/keys/pki.ts'
import {sshca} from '../helpers/cli.ts'
import {waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'

const PASSWORD = 'the offline root test password'

/** The certificate the CA presents, as a TLS client sees it. */
function servedLeaf(port: number, rootPem: string): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const s = connect(
      {host: '127.0.0.1', port, ca: rootPem, servername: undefined, checkServerIdentity: () => undefined},
      () => {
        const c = s.getPeerX509Certificate()
        s.end()
        if (c) resolve(c)
        else reject(new Error('no peer certificate'))
      },
    )
    s.once('error', reject)
  })
}

describe('ca init --offline-root / ca intermediate', function () {
  this.timeout(180_000)
  const base = tempDir('sshca-offline-')
  const pw = join(base, 'pw')
  const dir = join(base, 'ca')
  const rootKeyFile = join(base, 'removable', 'root_ca.key')
  const home = join(base, 'client-home')
  const env = {SSHCA_HOME: home, HOME: join(base, 'home')}

  before(() => {
    writeFileSync(pw, `${PASSWORD}\n`, {mode: 0o600})
  })

  it('refuses a root key file inside the CA directory, or over an existing file', async () => {
    const inside = await sshca([
      'ca',
      'init',
      '--dir',
      join(base, 'x'),
      '--dns',
      '127.0.0.1',
      '--offline-root',
      join(base, 'x', 'root.key'),
      '--password-file',
      pw,
    ])
    assert.notEqual(inside.code, 0)
    assert.match(inside.stderr, /inside the CA directory/)
    assert.equal(existsSync(join(base, 'x')), false)
    const taken = join(base, 'taken.key')
    writeFileSync(taken, 'something precious\n')
    const over = await sshca([
      'ca',
      'init',
      '--dir',
      join(base, 'y'),
      '--dns',
      '127.0.0.1',
      '--offline-root',
      taken,
      '--password-file',
      pw,
    ])
    assert.notEqual(over.code, 0)
    assert.match(over.stderr, /ERR_FILE_EXISTS/)
    assert.equal(readFileSync(taken, 'utf8'), 'something precious\n')
    assert.equal(existsSync(join(base, 'y')), false)
  })

  it('serves without the root key; a new intermediate from the offline key keeps an existing client context working', async () => {
    const init = await sshca([
      'ca',
      'init',
      '--dir',
      dir,
      '--dns',
      '127.0.0.1',
      '--name',
      'Offline',
      '--offline-root',
      rootKeyFile,
      '--password-file',
      pw,
    ])
    assert.equal(init.code, 0, init.stderr)
    assert.match(init.stdout, /Root key +OFFLINE: /)
    assert.match(init.stdout, /Move that file\s+off this box/)
    assert.equal(statSync(rootKeyFile).mode & 0o777, 0o600)
    const rootPem = readFileSync(join(dir, 'certs', 'root_ca.crt'), 'utf8')
    const root = parseCert(rootPem)
    assert.ok(keyMatchesCert(await readSealedKey(rootKeyFile, PASSWORD), root), 'the offline file holds the root key')
    // no file in the CA directory holds it
    assert.equal(existsSync(join(dir, 'secrets', 'root_ca.key')), false)
    for (const f of readdirSync(join(dir, 'secrets'))) {
      assert.equal(
        keyMatchesCert(await readSealedKey(join(dir, 'secrets', f), PASSWORD), root),
        false,
        `secrets/${f} is the root key`,
      )
    }
    const fingerprint = new X509Certificate(rootPem).fingerprint256.replace(/:/g, '').toLowerCase()

    let ca: RunningCa = await startCa({
      configPath: join(dir, 'ca.yaml'),
      password: PASSWORD,
      address: '127.0.0.1:0',
      auditFile: join(base, 'audit.log'),
    })
    const port = ca.port
    try {
      const status = JSON.parse((await sshca(['ca', 'status', '--config', join(dir, 'ca.yaml'), '--json'])).stdout) as {
        ca: {rootKeyOnline: boolean; intermediateNotAfter: string}
      }
      assert.equal(status.ca.rootKeyOnline, false)
      const boot = await sshca(['bootstrap', '--ca-url', ca.url, '--fingerprint', fingerprint], {env})
      assert.equal(boot.code, 0, boot.stderr)
      assert.equal((await sshca(['krl', '--out', join(base, 'krl1')], {env})).code, 0)
    } finally {
      await ca.close()
    }

    const oldIntermediate = readFileSync(join(dir, 'certs', 'intermediate_ca.crt'), 'utf8')
    const tlsBefore = readFileSync(join(dir, 'certs', 'tls.crt'), 'utf8')
    // without the root key, or with a key that is not the root's: refused, nothing written
    const missing = await sshca(['ca', 'intermediate', '--config', join(dir, 'ca.yaml'), '--password-file', pw])
    assert.notEqual(missing.code, 0)
    assert.match(missing.stderr, /root key is offline.*--root-key/)
    const wrong = await sshca([
      'ca',
      'intermediate',
      '--config',
      join(dir, 'ca.yaml'),
      '--root-key',
      join(dir, 'secrets', 'intermediate_ca.key'),
      '--password-file',
      pw,
    ])
    assert.notEqual(wrong.code, 0)
    assert.match(wrong.stderr, /is not the key of this CA's root/)
    assert.equal(readFileSync(join(dir, 'certs', 'intermediate_ca.crt'), 'utf8'), oldIntermediate)
    assert.equal(readFileSync(join(dir, 'certs', 'tls.crt'), 'utf8'), tlsBefore)

    const issued = await sshca([
      'ca',
      'intermediate',
      '--config',
      join(dir, 'ca.yaml'),
      '--root-key',
      rootKeyFile,
      '--password-file',
      pw,
      '--json',
    ])
    assert.equal(issued.code, 0, issued.stderr)
    const r = JSON.parse(issued.stdout) as {
      rootFingerprint: string
      rootKey: string
      previous: {fingerprint: string}
      intermediate: {fingerprint: string}
    }
    assert.equal(r.rootFingerprint, fingerprint)
    assert.equal(r.rootKey, 'offline')
    assert.notEqual(r.intermediate.fingerprint, r.previous.fingerprint)
    const newIntermediate = new X509Certificate(readFileSync(join(dir, 'certs', 'intermediate_ca.crt'), 'utf8'))
    assert.ok(
      newIntermediate.checkIssued(new X509Certificate(rootPem)) &&
        newIntermediate.verify(new X509Certificate(rootPem).publicKey),
      'signed by the root',
    )
    assert.equal(
      existsSync(join(dir, 'secrets', 'root_ca.key')),
      false,
      'the root key did not land in the CA directory',
    )
    assert.deepEqual(
      readdirSync(join(dir, 'secrets')).filter((n) => n.startsWith('.')),
      [],
      'no staged file left',
    )

    // the CA restarted on the same address serves a chain through the new intermediate …
    ca = await startCa({
      configPath: join(dir, 'ca.yaml'),
      password: PASSWORD,
      address: `127.0.0.1:${port}`,
      auditFile: join(base, 'audit.log'),
    })
    try {
      const leaf = await servedLeaf(port, rootPem)
      assert.ok(
        leaf.checkIssued(newIntermediate) && leaf.verify(newIntermediate.publicKey),
        'the TLS certificate comes from the new intermediate',
      )
      // … and the client context made before it keeps working, without bootstrapping again
      const krl = await sshca(['krl', '--out', join(base, 'krl2')], {env})
      assert.equal(krl.code, 0, krl.stderr)
      assert.ok(existsSync(join(base, 'krl2')))
    } finally {
      await ca.close()
    }
    const audit = readFileSync(join(base, 'audit.log'), 'utf8')
    assert.match(audit, /"intermediate_issued"/)
  })
  it('a root rotation keeps an offline root offline: old key from --root-key, the new one to --next-root-key; no intermediate mid-rotation', async () => {
    // runs after the test above: the CA in `dir` has its root key only in rootKeyFile
    const config = join(dir, 'ca.yaml')
    const rotate = (...args: string[]) =>
      sshca(['ca', 'rotate', ...args, '--kind', 'root', '--config', config, '--password-file', pw])
    const nextKeyFile = join(base, 'removable', 'root_ca.2.key')
    const prepared = () => existsSync(join(dir, 'certs', 'root_ca.next.crt'))

    const noKey = await rotate('prepare')
    assert.equal(noKey.code, 2, noKey.stderr)
    assert.match(noKey.stderr, /root key is offline.*--root-key/)
    const noNext = await rotate('prepare', '--root-key', rootKeyFile)
    assert.equal(noNext.code, 2, noNext.stderr)
    assert.match(noNext.stderr, /must be too: give --next-root-key/)
    const inside = await rotate(
      'prepare',
      '--root-key',
      rootKeyFile,
      '--next-root-key',
      join(dir, 'secrets', 'root2.key'),
    )
    assert.match(inside.stderr, /inside the CA directory/)
    const wrong = await rotate(
      'prepare',
      '--root-key',
      join(dir, 'secrets', 'intermediate_ca.key'),
      '--next-root-key',
      nextKeyFile,
    )
    assert.match(wrong.stderr, /is not the key of this CA's root/)
    const sshKeys = await sshca([
      'ca',
      'rotate',
      'prepare',
      '--kind',
      'user',
      '--root-key',
      rootKeyFile,
      '--config',
      config,
      '--password-file',
      pw,
    ])
    assert.match(sshKeys.stderr, /ERR_USAGE.*for --kind root/)
    assert.equal(prepared(), false, 'a refused prepare prepared nothing')
    assert.equal(existsSync(nextKeyFile), false)

    const ok = await rotate('prepare', '--root-key', rootKeyFile, '--next-root-key', nextKeyFile)
    assert.equal(ok.code, 0, ok.stderr)
    assert.ok(prepared())
    assert.equal(statSync(nextKeyFile).mode & 0o777, 0o600)
    const nextRoot = parseCert(readFileSync(join(dir, 'certs', 'root_ca.next.crt'), 'utf8'))
    assert.ok(
      keyMatchesCert(await readSealedKey(nextKeyFile, PASSWORD), nextRoot),
      'the offline file holds the new root key',
    )
    assert.deepEqual(
      readdirSync(join(dir, 'secrets')).filter((f) => f.startsWith('root')),
      [],
      'no root key in the CA directory',
    )

    // a new intermediate now would drop the overlap's cross-certificates from the TLS chain
    const mid = await sshca([
      'ca',
      'intermediate',
      '--config',
      config,
      '--root-key',
      rootKeyFile,
      '--password-file',
      pw,
    ])
    assert.notEqual(mid.code, 0)
    assert.match(mid.stderr, /ERR_ROTATION_STATE[\s\S]*root rotation is in progress/)

    const activated = await rotate('activate')
    assert.equal(activated.code, 0, activated.stderr)
    assert.equal(await rotate('retire').then((r) => r.code), 0)
    assert.ok(
      Buffer.from(parseCert(readFileSync(join(dir, 'certs', 'root_ca.crt'), 'utf8')).rawData).equals(
        Buffer.from(nextRoot.rawData),
      ),
      'the new root is the active one',
    )
    assert.deepEqual(
      readdirSync(join(dir, 'secrets')).filter((f) => f.startsWith('root')),
      [],
      'still no root key in the CA directory',
    )
    // the rotation done, the new offline root issues the next intermediate; the old key no longer does
    assert.match(
      (await sshca(['ca', 'intermediate', '--config', config, '--root-key', rootKeyFile, '--password-file', pw]))
        .stderr,
      /is not the key of this CA's root/,
    )
    // … and a running CA serves the new chain without a restart (it follows the certificate files)
    const activeRootPem = readFileSync(join(dir, 'certs', 'root_ca.crt'), 'utf8')
    const running = await startCa({
      configPath: config,
      password: PASSWORD,
      address: '127.0.0.1:0',
      auditFile: join(base, 'audit.log'),
      keysIntervalMs: 200,
    })
    try {
      const issued = await sshca([
        'ca',
        'intermediate',
        '--config',
        config,
        '--root-key',
        nextKeyFile,
        '--password-file',
        pw,
      ])
      assert.equal(issued.code, 0, issued.stderr)
      const fresh = new X509Certificate(readFileSync(join(dir, 'certs', 'intermediate_ca.crt'), 'utf8'))
      await waitFor(
        'the running CA to serve a TLS certificate from the new intermediate',
        async () => {
          const leaf = await servedLeaf(running.port, activeRootPem)
          return leaf.checkIssued(fresh) && leaf.verify(fresh.publicKey)
        },
        20_000,
      )
    } finally {
      await running.close()
    }
  })
})
