/**
 * SSH CA keys in a PKCS#11 token: Debian's SoftHSM 2 (a real PKCS#11 module) through pkcs11js.
 * `ca init --kms pkcs11:…` makes the user and host CA keys in the token (no key file on disk),
 * `ca serve` signs with them (ssh-keygen -L and a real sshd accept the certificates), `ca rotate`
 * makes the next key in the token too, and the private bytes cannot be read out of it.
 */
import assert from 'node:assert/strict'
import {existsSync, readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import {join} from 'node:path'
import {DatabaseSync} from 'node:sqlite'
import type * as Pkcs11Js from 'pkcs11js'
import {parseKms} from '../../src/ca/config/kms.ts'
import {writePolicy} from '../../src/demo/policy-file.ts'
import {certificateLine, parseCertificate, verifyCertificate} from '../../src/ssh/cert.ts'
import {AgentClient} from '../../src/ssh/agent.ts'
import {PublicKey} from '../../src/ssh/keys.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {sshca} from '../helpers/cli.ts'
import {deployProvisioner, startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {currentUser, keygenShow, ssh, startAgent, startSshd} from '../helpers/openssh.ts'
import {run, waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {
  initSoftHsmToken,
  rotateUserKey,
  serveCa,
  SOFTHSM_MODULE,
  softHsmPresent,
  TOKEN_PIN,
  type ServedCa,
} from '../helpers/softhsm.ts'
import type {Running} from '../helpers/world.ts'

const MODULE = SOFTHSM_MODULE

describe('CA keys in a PKCS#11 token (SoftHSM 2)', function () {
  this.timeout(180_000)
  const base = tempDir('sshca-hsm-')
  const dir = join(base, 'ca')
  const pinFile = join(base, 'hsm-pin')
  const passwordFile = join(base, 'password')
  const env: NodeJS.ProcessEnv = {SOFTHSM2_CONF: join(base, 'softhsm2.conf')}
  const kms = `pkcs11:token=sshca-test?module-path=${MODULE}&pin-source=file:${pinFile}`
  let gh: GithubIssuer
  let ca: ServedCa | undefined
  let serve: Running | undefined

  const call = (method: 'GET' | 'POST', path: string, body?: unknown) => ca!.call(method, path, body)
  const sign = async (key = generatePrivateKey('ed25519')) => {
    const r = await call('POST', '/ssh/sign', {
      publicKey: key.publicKey.blob.toString('base64'),
      ott: await gh.mint(),
      certType: 'user',
    })
    assert.equal(r.status, 201, JSON.stringify(r.json))
    return {key, cert: parseCertificate(Buffer.from(r.json.crt as string, 'base64'))}
  }
  const auditLines = () =>
    readFileSync(join(dir, 'audit.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
  const keyring = () =>
    JSON.parse(readFileSync(join(dir, 'ssh', 'keys.json'), 'utf8')) as {
      user: {id: string; state: string; publicKey: string; ref: {type: string; id: string}}[]
    }

  /** `fn` with a logged-in read-write session on the test token, through pkcs11js in this process. */
  function inToken<T>(fn: (p11: Pkcs11Js.PKCS11, lib: typeof Pkcs11Js, s: Buffer) => T): T {
    process.env.SOFTHSM2_CONF = env.SOFTHSM2_CONF
    const lib = createRequire(import.meta.url)('pkcs11js') as typeof Pkcs11Js
    const p11 = new lib.PKCS11()
    p11.load(MODULE)
    p11.C_Initialize()
    try {
      const slot = p11.C_GetSlotList(true).find((x) => p11.C_GetTokenInfo(x).label.trim() === 'sshca-test')!
      const s = p11.C_OpenSession(slot, lib.CKF_SERIAL_SESSION | lib.CKF_RW_SESSION)
      p11.C_Login(s, lib.CKU_USER, TOKEN_PIN)
      try {
        return fn(p11, lib, s)
      } finally {
        p11.C_CloseSession(s)
      }
    } finally {
      p11.C_Finalize()
      p11.close()
    }
  }
  /** The token's objects of `cls` under CKA_ID `id`. */
  const objects = (p11: Pkcs11Js.PKCS11, lib: typeof Pkcs11Js, s: Buffer, cls: number, id: Buffer) => {
    p11.C_FindObjectsInit(s, [
      {type: lib.CKA_CLASS, value: cls},
      {type: lib.CKA_ID, value: id},
    ])
    try {
      return p11.C_FindObjects(s, 10)
    } finally {
      p11.C_FindObjectsFinal(s)
    }
  }

  /** `ca serve` on two worker threads (the default on this 2-core box, named so it holds on any), or as `workers` says. */
  /** OIDs of the curves, as CKA_EC_PARAMS. */
  const P256 = Buffer.from('06082a8648ce3d030107', 'hex')
  const P224 = Buffer.from('06052b81040021', 'hex')
  /**
   * The fault: the private key under the active user key's CKA_ID becomes another one, on `curve` (the
   * token's objects changed under the CA, as a faulty or tampered token would).
   */
  const replaceActivePrivateKey = (curve: Buffer): void => {
    const id = Buffer.from(keyring().user.find((k) => k.state === 'active')!.ref.id, 'hex')
    inToken((p11, lib, s) => {
      const other = p11.C_GenerateKeyPair(
        s,
        {mechanism: lib.CKM_EC_KEY_PAIR_GEN},
        [
          {type: lib.CKA_TOKEN, value: false},
          {type: lib.CKA_EC_PARAMS, value: curve},
        ],
        [
          {type: lib.CKA_TOKEN, value: true},
          {type: lib.CKA_PRIVATE, value: true},
          {type: lib.CKA_SENSITIVE, value: true},
          {type: lib.CKA_SIGN, value: true},
          {type: lib.CKA_ID, value: Buffer.from('mixed-up')},
        ],
      )
      p11.C_DestroyObject(s, objects(p11, lib, s, lib.CKO_PRIVATE_KEY, id)[0]!)
      p11.C_SetAttributeValue(s, other.privateKey, [{type: lib.CKA_ID, value: id}])
    })
  }

  async function startServe(workers = 2): Promise<void> {
    ca = await serveCa(dir, passwordFile, env, ['--workers', String(workers)])
    serve = ca.serve
    await serve.waitFor(new RegExp(`"workers": ${workers}\\b`), 10_000)
  }

  before(async function () {
    if (!softHsmPresent()) this.skip()
    const made = await initSoftHsmToken(base, 'sshca-test')
    assert.deepEqual(
      [made.env.SOFTHSM2_CONF, made.pinFile, made.passwordFile],
      [env.SOFTHSM2_CONF, pinFile, passwordFile],
    )
    gh = await startGithubIssuer()
  })
  after(async () => {
    await ca?.stop()
    await gh?.stop()
  })

  it('ca init --kms makes the SSH CA keys in the token: no key file on disk, references only', async () => {
    const r = await sshca(
      ['ca', 'init', '--dir', dir, '--dns', '127.0.0.1', '--kms', kms, '--password-file', passwordFile, '--json'],
      {env},
    )
    assert.equal(r.code, 0, r.stderr)
    assert.equal(JSON.parse(r.stdout).kms, kms)
    const secrets = readdirSync(join(dir, 'secrets'))
    assert.ok(!secrets.some((f) => f.startsWith('ssh_')), `no SSH CA key file may exist: ${secrets.join(', ')}`)
    assert.ok(!existsSync(join(dir, 'secrets', 'ssh_user_ca.key')))
    const k = keyring()
    assert.equal(k.user[0]!.ref.type, 'pkcs11')
    assert.equal(PublicKey.parseLine(k.user[0]!.publicKey).key.type, 'ecdsa-sha2-nistp256')
    assert.match(readFileSync(join(dir, 'ca.yaml'), 'utf8'), /kms: "pkcs11:token=sshca-test/)
    // a PIN in the URI is refused (it would sit in ca.yaml and on the command line)
    const bad = await sshca(
      [
        'ca',
        'init',
        '--dir',
        join(base, 'other'),
        '--kms',
        `pkcs11:token=sshca-test?module-path=${MODULE}&pin-value=12345678`,
        '--password-file',
        passwordFile,
      ],
      {env},
    )
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /pin-value/)
  })

  it('the private key cannot be read out of the token (CKA_SENSITIVE, not CKA_EXTRACTABLE)', async () => {
    inToken((p11, lib, s) => {
      const [priv] = objects(p11, lib, s, lib.CKO_PRIVATE_KEY, Buffer.from(keyring().user[0]!.ref.id, 'hex'))
      assert.ok(priv, 'the user CA private key is in the token')
      const [sensitive, extractable] = p11.C_GetAttributeValue(s, priv, [
        {type: lib.CKA_SENSITIVE},
        {type: lib.CKA_EXTRACTABLE},
      ])
      assert.equal((sensitive!.value as Buffer)[0], 1)
      assert.equal((extractable!.value as Buffer)[0], 0)
      // the attack: ask for the private scalar
      assert.throws(() => p11.C_GetAttributeValue(s, priv, [{type: lib.CKA_VALUE}]), /CKR_ATTRIBUTE_SENSITIVE/)
    })
  })

  it("ca serve signs with the token: ssh-keygen -L shows the token's key, and a real sshd accepts the certificate", async () => {
    await writePolicy(join(dir, 'ca.yaml'), {
      audit: {file: join(dir, 'audit.log')},
      provisioners: [deployProvisioner(gh.issuer, [currentUser()])],
    })
    await startServe()
    const tokenKey = PublicKey.parseLine(keyring().user[0]!.publicKey).key
    const {key, cert} = await sign()
    assert.ok(cert.signatureKey.equals(tokenKey))
    const file = join(base, 'user-cert.pub')
    writeFileSync(file, `${certificateLine(cert)}\n`)
    const shown = await keygenShow(file)
    assert.equal(shown.signingCa, `ECDSA ${tokenKey.fingerprint()}`)
    assert.equal(shown.signingAlgorithm, 'ecdsa-sha2-nistp256')
    assert.deepEqual(shown.principals, [currentUser()])

    const sshd = await startSshd({
      userCaKeys: readFileSync(join(dir, 'ssh', 'ssh_user_ca.pub'), 'utf8')
        .trim()
        .split('\n'),
    })
    const agent = await startAgent()
    try {
      await AgentClient.with({socketPath: agent.socket}, (a) => a.addCertificate(key, cert, {lifetimeSeconds: 600}))
      const r = await ssh({port: sshd.port, agentSocket: agent.socket, command: 'echo in-by-hsm'})
      assert.equal(r.code, 0, `${r.stderr}\n${sshd.log().slice(-1500)}`)
      assert.equal(r.stdout.trim(), 'in-by-hsm')
      assert.match(sshd.log(), /Accepted certificate ID "gha:\d+" .* signed by ECDSA CA/)
    } finally {
      await agent.stop()
      await sshd.stop()
    }
  })

  it('many signatures at once through the one token session all verify', async () => {
    const certs = await Promise.all(Array.from({length: 20}, () => sign()))
    for (const {cert} of certs) assert.equal(verifyCertificate(cert).valid, true)
  })

  it("the token's own process (pkcs11-token) killed, as a module that crashes ends it: the CA starts another for the next signature", async () => {
    const tokenProcess = async () =>
      (await run('pgrep', ['-P', String(serve!.child.pid), '-f', 'pkcs11-token'])).stdout.trim()
    const first = await tokenProcess()
    assert.match(first, /^\d+$/, 'the CA calls the module in one child process')
    process.kill(Number(first), 'SIGKILL')
    await waitFor('the token process to end', async () => (await tokenProcess()) === '', 10_000)
    assert.equal((await sign()).cert.type, 'user')
    const second = await tokenProcess()
    assert.match(second, /^\d+$/)
    assert.notEqual(second, first)
  })

  it('ca rotate prepare/activate makes the next key in the token, and the CA signs with it', async () => {
    await rotateUserKey(dir, 'prepare', env, passwordFile)
    const next = keyring().user.find((k) => k.state === 'next')!
    assert.equal(next.ref.type, 'pkcs11')
    assert.ok(!readdirSync(join(dir, 'secrets')).some((f) => f.startsWith('ssh_')))
    const a = await sshca(['ca', 'rotate', 'activate', '--kind', 'user', '--config', join(dir, 'ca.yaml'), '--json'], {
      env,
    })
    assert.equal(a.code, 0, a.stderr)
    serve!.child.kill('SIGHUP')
    const nextKey = PublicKey.parseLine(next.publicKey).key
    await waitFor(
      'the CA to sign with the new token key',
      async () => (await sign()).cert.signatureKey.equals(nextKey),
      30_000,
    )
    const roots = await call('GET', '/ssh/roots')
    assert.deepEqual(
      (roots.json.keys as {user: {state: string}[]}).user.map((k) => k.state),
      ['active', 'previous'],
    )
  })

  it("ca rotate retire destroys the retired key's objects in the token; the CA goes on signing with the active one", async () => {
    const previous = keyring().user.find((k) => k.state === 'previous')!
    const id = Buffer.from(previous.ref.id, 'hex')
    const count = () =>
      inToken((p11, lib, s) =>
        [lib.CKO_PRIVATE_KEY, lib.CKO_PUBLIC_KEY].map((cls) => objects(p11, lib, s, cls, id).length),
      )
    assert.deepEqual(count(), [1, 1])
    const r = await sshca(
      ['ca', 'rotate', 'retire', '--kind', 'user', '--force', '--config', join(dir, 'ca.yaml'), '--json'],
      {env},
    )
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(JSON.parse(r.stdout).destroyed, [
      {kind: 'user', key: previous.id, store: 'pkcs11', destroyed: true},
    ])
    assert.deepEqual(count(), [0, 0])
    assert.equal(keyring().user.find((k) => k.id === previous.id)!.state, 'retired')
    serve!.child.kill('SIGHUP')
    const active = PublicKey.parseLine(keyring().user.find((k) => k.state === 'active')!.publicKey).key
    await waitFor(
      'the CA to publish the active key alone',
      async () => ((await call('GET', '/ssh/roots')).json.keys as {user: unknown[]}).user.length === 1,
      30_000,
    )
    assert.ok((await sign()).cert.signatureKey.equals(active))
  })

  it('destroys only a pair sshca made: a CKA_ID it did not make, or an object under another label, is refused and kept', async () => {
    process.env.SOFTHSM2_CONF = env.SOFTHSM2_CONF
    const {pkcs11Backend} = await import('../../src/ca/keys/pkcs11.ts')
    const backend = await pkcs11Backend(parseKms(kms) as Extract<ReturnType<typeof parseKms>, {type: 'pkcs11'}>)
    const active = keyring().user.find((k) => k.state === 'active')!
    const ref = active.ref as {type: 'pkcs11'; label: string; id: string}
    const id = Buffer.from(ref.id, 'hex')
    try {
      for (const bad of ['', '01', 'zz'.repeat(16)])
        await assert.rejects(backend.destroy({type: 'pkcs11', label: ref.label, id: bad}), {code: 'ERR_KEY_STORE'})
      // the active key's CKA_ID under another label (a manifest edited by hand): kept
      await assert.rejects(backend.destroy({type: 'pkcs11', label: 'another key', id: ref.id}), {
        code: 'ERR_KEY_STORE',
        message: /is not labelled "another key"/,
      })
    } finally {
      await backend.close()
    }
    assert.deepEqual(
      inToken((p11, lib, s) =>
        [lib.CKO_PRIVATE_KEY, lib.CKO_PUBLIC_KEY].map((c) => objects(p11, lib, s, c, id).length),
      ),
      [1, 1],
    )
    assert.equal((await sign()).cert.type, 'user')
  })

  it('every worker thread signs through the one token process, and --workers 0 signs on the main thread', async () => {
    // the CA serving since the tests above: two worker threads, neither of which can hold the token's
    // keys; the main thread asks its token process for their signatures
    const tokenProcesses = async () =>
      (await run('pgrep', ['-P', String(serve!.child.pid), '-f', 'pkcs11-token'])).stdout.trim().split('\n')
    const issued = () => auditLines().filter((l) => l.event === 'certificate_issued')
    const before = issued().length
    const certs = await Promise.all(Array.from({length: 16}, () => sign()))
    const tokenKey = PublicKey.parseLine(keyring().user.find((k) => k.state === 'active')!.publicKey).key
    for (const {cert} of certs) {
      assert.ok(cert.signatureKey.equals(tokenKey))
      assert.equal(verifyCertificate(cert).valid, true)
    }
    const lines = issued().slice(before)
    assert.equal(lines.length, 16)
    assert.ok(
      lines.every((l) => l.worker === 1 || l.worker === 2),
      `issued on the worker threads: ${JSON.stringify(lines.map((l) => l.worker))}`,
    )
    assert.equal((await tokenProcesses()).length, 1, "one token process, the main thread's")

    await ca!.stop()
    await startServe(0)
    const {cert} = await sign()
    assert.equal(verifyCertificate(cert).valid, true)
    assert.equal(issued().at(-1)!.worker, undefined, 'issued on the main thread')
    await ca!.stop()
    await startServe()
  })

  it('a signature the published key does not verify never leaves the CA: a token whose key pair was mixed up', async () => {
    // the CA serving since the tests above signs with the token's active user key
    await sign()
    const audit = auditLines
    const issuedBefore = audit().filter((l) => l.event === 'certificate_issued').length
    const spent = () => {
      const db = new DatabaseSync(join(dir, 'db', 'sshca.sqlite'), {readOnly: true})
      try {
        return (db.prepare('SELECT count(*) AS n FROM used_tokens').get() as {n: number}).n
      } finally {
        db.close()
      }
    }
    const spentBefore = spent()
    // the fault: the private key under the active key's CKA_ID is now another one (the token's objects
    // changed under the CA, as a faulty or tampered token would): its signatures verify with no key
    // the CA publishes, and a client's sshd trusts
    replaceActivePrivateKey(P256)
    const r = await call('POST', '/ssh/sign', {
      publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'),
      ott: await gh.mint(),
      certType: 'user',
    })
    assert.equal(r.status, 503, JSON.stringify(r.json))
    assert.equal(r.json.crt, undefined)
    assert.equal(audit().filter((l) => l.event === 'certificate_issued').length, issuedBefore)
    assert.equal(spent(), spentBefore, 'the token is not spent')
    assert.match(JSON.stringify(audit().at(-1)), /does not verify/)
  })

  it("a signature of another size than the published key's (a P-224 key under its CKA_ID) is the token's fault: 503, not the client's 400", async () => {
    replaceActivePrivateKey(P224)
    const issued = () => auditLines().filter((l) => l.event === 'certificate_issued').length
    const before = issued()
    const r = await call('POST', '/ssh/sign', {
      publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'),
      ott: await gh.mint(),
      certType: 'user',
    })
    assert.equal(r.status, 503, JSON.stringify(r.json))
    assert.equal(issued(), before)
    const line = JSON.stringify(auditLines().at(-1))
    assert.match(line, /"status":503/)
    assert.match(line, /returned a signature for \\"[^\\]+\\" that is not one/)
  })

  it('a wrong PIN stops the CA at start with ERR_KEY_STORE, naming the token', async () => {
    const wrongPin = join(base, 'wrong-pin')
    writeFileSync(wrongPin, '00000000\n', {mode: 0o600})
    const yaml = readFileSync(join(dir, 'ca.yaml'), 'utf8').replace(pinFile, wrongPin)
    writeFileSync(join(base, 'wrong.yaml'), yaml)
    const copy = join(base, 'ca', 'wrong.yaml')
    writeFileSync(copy, yaml)
    const r = await sshca(
      ['ca', 'serve', '--config', copy, '--password-file', passwordFile, '--address', '127.0.0.1:0'],
      {env, timeoutMs: 60_000},
    )
    assert.equal(r.code, 9, r.stderr)
    assert.match(r.stderr, /ERR_KEY_STORE.*sshca-test/)
  })
})
