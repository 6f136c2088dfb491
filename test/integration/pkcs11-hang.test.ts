/**
 * A PKCS#11 token that stops answering: p11-kit's server in front of SoftHSM 2, the CA reaching it
 * through p11-kit's client module (a network HSM's shape: the module talks to a daemon over a
 * socket), and the daemon stopped with SIGSTOP mid-service. The module's calls never return then.
 * They used to run on the CA's event loop, which froze: no TLS handshake, no /health, no answer to
 * the request, until kill -9. Now each operation has keys.timeout: the signing request fails (503
 * ERR_KEY_STORE, nothing issued, its token not spent), the CA goes on answering everything else, and
 * signs again once the token answers.
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {writePolicy} from '../../src/demo/policy-file.ts'
import {parseCertificate} from '../../src/ssh/cert.ts'
import {PublicKey} from '../../src/ssh/keys.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {sshca} from '../helpers/cli.ts'
import {deployProvisioner, startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {onCleanup, runOk, waitFor} from '../helpers/proc.ts'
import {
  initSoftHsmToken,
  rotateUserKey,
  serveCa,
  SOFTHSM_MODULE,
  softHsmPresent,
  type ServedCa,
} from '../helpers/softhsm.ts'
import {tempDir} from '../helpers/tmp.ts'

const CLIENT = '/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so'

describe('a PKCS#11 token that stops answering (p11-kit server in front of SoftHSM, SIGSTOP)', function () {
  this.timeout(120_000)
  const base = tempDir('sshca-hsm-hang-')
  const dir = join(base, 'ca')
  const socket = join(base, 'p11-kit.sock')
  let gh: GithubIssuer
  let ca: ServedCa | undefined
  let server: ReturnType<typeof spawn> | undefined
  let served: (workers: number) => Promise<ServedCa>
  let env: NodeJS.ProcessEnv
  let passwordFile: string

  const sign = async (ott?: string) =>
    ca!.call('POST', '/ssh/sign', {
      publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'),
      ott: ott ?? (await gh.mint()),
      certType: 'user',
    })
  /** SIGSTOP or SIGCONT to p11-kit's server and the p11-kit-remote it runs for each connection. */
  const signal = async (sig: 'STOP' | 'CONT') => {
    process.kill(server!.pid!, `SIG${sig}`)
    await runOk('sh', ['-c', `pkill -${sig} -P ${server!.pid} || true`])
  }
  const audit = () =>
    readFileSync(join(dir, 'audit.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)

  before(async function () {
    if (!softHsmPresent() || !existsSync(CLIENT)) this.skip()
    const made = await initSoftHsmToken(base, 'sshca-hang', {
      P11_KIT_SERVER_ADDRESS: `unix:path=${socket}`,
    })
    env = made.env
    passwordFile = made.passwordFile
    const pinFile = made.pinFile
    const srv = spawn(
      'p11-kit',
      ['server', '-f', '-n', socket, '--provider', SOFTHSM_MODULE, 'pkcs11:token=sshca-hang'],
      {env: {...process.env, ...env}, stdio: 'ignore'},
    )
    server = srv
    onCleanup(async () => {
      // a stopped process takes no SIGTERM: resumed first
      srv.kill('SIGCONT')
      srv.kill('SIGTERM')
    })
    await waitFor('p11-kit server to listen', () => existsSync(socket), 10_000)
    gh = await startGithubIssuer()
    const kms = `pkcs11:token=sshca-hang?module-path=${CLIENT}&pin-source=file:${pinFile}`
    const init = await sshca(
      ['ca', 'init', '--dir', dir, '--dns', '127.0.0.1', '--kms', kms, '--password-file', passwordFile, '--json'],
      {env},
    )
    assert.equal(init.code, 0, init.stderr)
    await writePolicy(join(dir, 'ca.yaml'), {
      audit: {file: join(dir, 'audit.log')},
      keys: {kms, timeout: '2s'},
      provisioners: [deployProvisioner(gh.issuer, ['deploy'])],
    })
    served = (workers) => serveCa(dir, passwordFile, env, ['--workers', String(workers)])
  })
  after(async () => {
    if (server) await signal('CONT').catch(() => undefined)
    await ca?.stop()
    await gh?.stop()
  })

  // on the main thread (the token process is its own), and on worker threads, whose signatures the main thread asks it for
  for (const workers of [0, 2])
    it(`--workers ${workers}: a signature the token never answers fails after keys.timeout (503, nothing issued, the token unspent) while the CA answers the rest; it signs again once the token is back`, async () => {
      ca = await served(workers)
      const mark = audit().length
      assert.equal((await sign()).status, 201, 'the CA signs through p11-kit before the token stops')
      await signal('STOP')
      const ott = await gh.mint()
      // one signature reaches the token, two wait behind it: all three fail at its deadline, not one after another
      const pending = Promise.all([sign(ott), sign(), sign()])
      // the CA is not frozen: a TLS handshake and an answer while the signature waits on the token
      await new Promise((r) => setTimeout(r, 300))
      const health = await ca!.call('GET', '/health')
      assert.equal(health.status, 200)
      assert.ok(health.ms < 1500, `/health answered in ${health.ms.toFixed(0)} ms while the token hung`)
      for (const r of await pending) {
        assert.equal(r.status, 503, JSON.stringify(r.json))
        assert.match(JSON.stringify(r.json), /ERR_KEY_STORE|cannot sign/)
        assert.ok(r.ms < 5_000, `the request ended in ${r.ms.toFixed(0)} ms, keys.timeout is 2 s`)
      }
      assert.ok(
        audit()
          .slice(mark)
          .some((l) => l.event === 'certificate_denied' && /did not answer within 2s/.test(JSON.stringify(l))),
        'the audit line says the token did not answer',
      )
      // still stopped: the next request opens a new session, which hangs as well, and fails the same way
      const again = await sign()
      assert.equal(again.status, 503, JSON.stringify(again.json))
      assert.ok(again.ms < 5_000, `the second request ended in ${again.ms.toFixed(0)} ms`)

      await signal('CONT')
      // the token answers again: the CA signs, and the refused request's token was never spent
      let back = {status: 0} as Awaited<ReturnType<typeof sign>>
      await waitFor('the CA to sign again', async () => (back = await sign(ott)).status === 201, 30_000)
      assert.equal(back.status, 201, JSON.stringify(back.json))
      assert.equal(
        audit()
          .slice(mark)
          .filter((l) => l.event === 'certificate_issued').length,
        2,
      )
      await ca.stop()
      ca = undefined
    })

  it('a rotation step the CA reads while the token does not answer is taken up once it answers again, not left behind until a restart', async () => {
    ca = await served(2)
    const mark = audit().length
    assert.equal((await sign()).status, 201)
    const rotate = (step: 'prepare' | 'activate') => rotateUserKey(dir, step, env, passwordFile)
    await rotate('prepare')
    const keyring = () =>
      JSON.parse(readFileSync(join(dir, 'ssh', 'keys.json'), 'utf8')) as {
        user: {id: string; state: string; publicKey: string}[]
      }
    const next = keyring().user.find((k) => k.state === 'next')!
    // the token stops as the operator activates the prepared key (activate writes the manifest alone)
    await signal('STOP')
    await rotate('activate')
    ca.serve.child.kill('SIGHUP')
    await waitFor(
      'the CA to fail opening the new key',
      () =>
        audit()
          .slice(mark)
          .some((l) => l.event === 'ca_keys_reload_failed'),
      20_000,
    )
    await signal('CONT')
    // the token answers again: the CA signs with the key the manifest made active, within a few looks
    const nextKey = PublicKey.parseLine(next.publicKey).key
    let signedBy = ''
    await waitFor(
      'the CA to sign with the activated key',
      async () => {
        const r = await sign()
        if (r.status !== 201) return false
        const cert = parseCertificate(Buffer.from(r.json.crt as string, 'base64'))
        signedBy = cert.signatureKey.fingerprint()
        return cert.signatureKey.equals(nextKey)
      },
      20_000,
    ).catch(() => {
      throw new Error(
        `the CA still signs with ${signedBy}, not the active key ${next.id} (${nextKey.fingerprint()}) of the manifest`,
      )
    })
    assert.ok(
      audit()
        .slice(mark)
        .some((l) => l.event === 'ca_keys_loaded'),
    )
    await ca.stop()
    ca = undefined
  })
})
