/**
 * Host certificates, renewal and revocation, with real parts: the CLI as processes, the CA over
 * HTTPS, ssh-keygen -L / -Q as oracles, and a real sshd that presents a host certificate and
 * enforces RevokedKeys.
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync} from 'node:crypto'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {mintEnrollmentToken} from '../../src/ca/provisioner/enrollment.ts'
import {mintSshpopToken, SSHPOP_PROVISIONER} from '../../src/protocol/tokens.ts'
import {certificateLine, parseCertificate, parseCertificateLine, signCertificate} from '../../src/ssh/cert.ts'
import {PublicKey} from '../../src/ssh/keys.ts'
import {formatOpenSshPrivateKey, generatePrivateKey, parsePrivateKeyFile} from '../../src/ssh/private-key.ts'
import {loadMaterial} from '../../src/ca/keys/material.ts'
import {PASSWORD} from '../helpers/ca.ts'
import {sshca} from '../helpers/cli.ts'
import {currentUser, keygenShow, ssh, startSshd} from '../helpers/openssh.ts'
import {run, runOk, waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {startWorld, type World} from '../helpers/world.ts'

describe('host certificates, renewal and revocation', function () {
  this.timeout(120_000)
  let w: World
  let hostDir: string
  let hostKey: string
  const ca = () => ['--config', w.t.init.config]
  let enrolled = {serial: '', principals: [] as string[]}

  before(async () => {
    hostDir = tempDir('sshca-host-')
    hostKey = join(hostDir, 'ssh_host_ed25519_key')
    w = await startWorld()
    await w.bootstrap()
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'host', '-f', hostKey])
  })
  after(async () => w?.stop())

  async function token(host: string, extra: string[] = []): Promise<string> {
    const r = await sshca(['ca', 'token', '--host', host, ...extra, ...ca(), '--password-file', w.t.passwordFile])
    assert.equal(r.code, 0, r.stderr)
    return r.stdout.trim().split('\n').pop()!
  }

  const post = (path: string, body: unknown) => w.t.call('POST', path, body)
  const lastDenial = () =>
    w.t
      .audit()
      .filter((l) => l.event === 'certificate_denied')
      .pop()!

  describe('enrollment', () => {
    it('ca token + certificate --host --sign: ssh-keygen -L shows a host certificate with the bound principals', async () => {
      const t = await token('web1', ['--principal', 'web1.example.com'])
      const r = await sshca(
        [
          'certificate',
          '--host',
          '--sign',
          '--token',
          t,
          'web1',
          `${hostKey}.pub`,
          '--principal',
          'web1.example.com',
          '--json',
        ],
        {env: w.env},
      )
      assert.equal(r.code, 0, r.stderr)
      const doc = JSON.parse(r.stdout)
      assert.equal(doc.certificate, `${hostKey}-cert.pub`)
      const shown = await keygenShow(`${hostKey}-cert.pub`)
      assert.equal(shown.certType, 'host')
      assert.deepEqual(shown.principals, ['web1', 'web1.example.com'])
      assert.equal(shown.keyId, 'host:web1')
      assert.match(shown.valid, /^from .* to /)
      const {cert} = parseCertificateLine(readFileSync(`${hostKey}-cert.pub`, 'utf8'))
      const days = Number(cert.validBefore - cert.validAfter) / 86400
      assert.ok(days > 29.9 && days < 30.1, `host validity ${days} days, expected 30`)
      enrolled = {serial: doc.serial, principals: doc.principals}
    })

    it('refuses a token used twice, expired, signed by another key, or naming another host', async () => {
      // another host's key: enrolling web1's key under a second name would supersede web1's certificate
      const otherKey = join(hostDir, 'ssh_host_other_key')
      await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', otherKey])
      const pub = readFileSync(`${otherKey}.pub`, 'utf8').split(' ')[1]!
      const t = await token('web2')
      assert.equal((await post('/ssh/sign', {publicKey: pub, ott: t, certType: 'host'})).status, 201)
      const twice = await post('/ssh/sign', {publicKey: pub, ott: t, certType: 'host'})
      assert.equal(twice.status, 401)
      assert.equal(lastDenial().reason, 'token_replayed')

      const m = await loadMaterial(w.t.init.dir, PASSWORD, ['127.0.0.1'])
      const past = Math.floor(Date.now() / 1000) - 3600
      const expired = await mintEnrollmentToken(m.enrollmentKey, {
        rootFingerprint: m.rootFingerprint,
        hostname: 'web3',
        ttlSeconds: 600,
        now: past,
      })
      assert.equal((await post('/ssh/sign', {publicKey: pub, ott: expired.token, certType: 'host'})).status, 401)
      assert.equal(lastDenial().reason, 'token_expired')

      const rogue = generateKeyPairSync('ed25519').privateKey
      const forged = await mintEnrollmentToken(rogue, {
        rootFingerprint: m.rootFingerprint,
        hostname: 'web3',
        ttlSeconds: 600,
        now: Math.floor(Date.now() / 1000),
      })
      assert.equal((await post('/ssh/sign', {publicKey: pub, ott: forged.token, certType: 'host'})).status, 401)
      assert.equal(lastDenial().reason, 'token_invalid')

      const other = await token('web4')
      const r = await sshca(['certificate', '--host', '--sign', '--token', other, 'web5', `${hostKey}.pub`], {
        env: w.env,
      })
      assert.equal(r.code, 7)
      assert.match(
        r.stderr,
        /ERR_CA_DENIED\]: the CA refused the enrollment: the token was issued for web4, not for web5/,
      )
      assert.equal(lastDenial().reason, 'host_not_bound')
      // an enrollment token is no user token, and a user token enrolls no host
      assert.equal((await post('/ssh/sign', {publicKey: pub, ott: await token('web6')})).status, 401)
      assert.equal((await post('/ssh/sign', {publicKey: pub, ott: await w.gh.mint(), certType: 'host'})).status, 401)
    })
  })

  describe('renewal', () => {
    it('renews only below a third of the validity unless --force; then a new serial and validity', async () => {
      const cert = `${hostKey}-cert.pub`
      const before = parseCertificateLine(readFileSync(cert, 'utf8')).cert
      const skip = await sshca(['renew', cert, hostKey], {env: w.env})
      assert.equal(skip.code, 0, skip.stderr)
      assert.match(skip.stdout, /^Not renewed: 100% of its validity is left/)
      assert.equal(readFileSync(cert, 'utf8').trim(), certificateLine(before))
      // a later validity needs a later clock: the CA's is moved on instead of waiting for the real one
      w.skewCaClock(5_000)
      let r: Awaited<ReturnType<typeof sshca>>
      try {
        r = await sshca(['renew', cert, hostKey, '--force', '--json'], {env: w.env})
      } finally {
        w.skewCaClock(0)
      }
      assert.equal(r.code, 0, r.stderr)
      const after = parseCertificateLine(readFileSync(cert, 'utf8')).cert
      assert.equal(JSON.parse(r.stdout).renewed, true)
      assert.notEqual(after.serial, before.serial)
      assert.ok(after.validBefore > before.validBefore)
      assert.deepEqual(after.principals, before.principals)
      assert.equal(after.type, 'host')
      enrolled.serial = after.serial.toString()
    })

    it('refuses a user certificate, a proof signed by another key, an expired and a revoked certificate', async () => {
      // a user certificate (from sshca login) cannot be renewed
      const out = join(tempDir(), 'user_key')
      assert.equal(
        (
          await sshca(['login', '--identity-token-file', '-', '--no-agent', '--out', out], {
            env: w.env,
            input: await w.gh.mint(),
          })
        ).code,
        0,
      )
      const user = await sshca(['renew', `${out}-cert.pub`, out, '--force'], {env: w.env})
      assert.equal(user.code, 7)
      assert.equal(lastDenial().reason, 'cert_type_not_allowed')

      // a proof signed by a key other than the certified one
      const {cert} = parseCertificateLine(readFileSync(`${hostKey}-cert.pub`, 'utf8'))
      const wrong = await mintSshpopToken(generatePrivateKey('ed25519').keyObject, cert, {
        caUrl: w.t.url,
        action: 'renew',
        provisioner: SSHPOP_PROVISIONER,
        rootFingerprint: w.t.init.rootFingerprint,
        now: Math.floor(Date.now() / 1000),
      })
      assert.equal((await post('/ssh/renew', {ott: wrong})).status, 401)
      assert.equal(lastDenial().reason, 'proof_invalid')

      // an expired host certificate: a CA with 2-second host certificates, its clock 30 s behind, so
      // the certificate has expired by the real clock when it arrives (within the tokens' 60 s leeway).
      // sshca refuses to install it (a CA with a wrong clock must not replace a valid certificate), so
      // the test asks the API for it and writes it where sshd would read it
      const original = readFileSync(w.t.init.config, 'utf8')
      const k2 = join(tempDir(), 'ssh_host_ecdsa_key')
      await runOk('ssh-keygen', ['-q', '-t', 'ecdsa', '-N', '', '-f', k2])
      try {
        writeFileSync(w.t.init.config, original.replace('hostTtl: 30d', 'hostTtl: 2s'))
        assert.equal(await w.t.ca.reload(), true)
        w.skewCaClock(-30_000)
        const refused = await sshca(
          ['certificate', '--host', '--sign', '--token', await token('short'), 'short', `${k2}.pub`],
          {env: w.env},
        )
        assert.notEqual(refused.code, 0)
        assert.match(refused.stderr, /ERR_CA_BAD_RESPONSE.*already expired/)
        assert.equal(existsSync(`${k2}-cert.pub`), false)
        const {key} = PublicKey.parseLine(readFileSync(`${k2}.pub`, 'utf8'))
        const r = await post('/ssh/sign', {
          publicKey: key.blob.toString('base64'),
          ott: await token('short'),
          certType: 'host',
          principals: ['short'],
        })
        assert.equal(r.status, 201)
        writeFileSync(
          `${k2}-cert.pub`,
          `${certificateLine(parseCertificate(Buffer.from((r.json as {crt: string}).crt, 'base64')))}\n`,
        )
      } finally {
        w.skewCaClock(0)
        writeFileSync(w.t.init.config, original)
        assert.equal(await w.t.ca.reload(), true)
      }
      const shortLived = parseCertificateLine(readFileSync(`${k2}-cert.pub`, 'utf8')).cert
      assert.ok(
        shortLived.validBefore < BigInt(Math.floor(Date.now() / 1000)),
        'the short certificate should have expired already',
      )
      const expired = await sshca(['renew', `${k2}-cert.pub`, k2], {env: w.env})
      assert.equal(expired.code, 7, expired.stderr)
      assert.equal(lastDenial().reason, 'certificate_expired')

      // a revoked one
      const k3 = join(tempDir(), 'ssh_host_ed25519_key')
      await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', k3])
      const r3 = await sshca(
        ['certificate', '--host', '--sign', '--token', await token('doomed'), 'doomed', `${k3}.pub`, '--json'],
        {env: w.env},
      )
      const serial = JSON.parse(r3.stdout).serial
      const rev = await sshca(['ca', 'revoke', '--serial', serial, '--reason', 'decommissioned', ...ca()])
      assert.equal(rev.code, 0, rev.stderr)
      assert.match(rev.stdout, /host certificate "host:doomed"/)
      const revoked = await sshca(['renew', `${k3}-cert.pub`, k3, '--force'], {env: w.env})
      assert.equal(revoked.code, 7)
      assert.equal(lastDenial().reason, 'certificate_revoked')
      // the admin command records the event in the store; the running CA writes it to its audit log
      await waitFor('the revocation in the audit log', () =>
        w.t
          .audit()
          .some(
            (l) =>
              l.event === 'certificate_revoked' &&
              (l.certificates as string[]).includes(serial) &&
              l.reason === 'decommissioned',
          ),
      )
    })
  })

  describe('revocation list', () => {
    it('ssh-keygen -Q says REVOKED for revoked serials and key IDs, ok for others; a real sshd enforces it', async () => {
      const dir = tempDir()
      const login = async (name: string) => {
        const out = join(dir, name)
        const r = await sshca(['login', '--identity-token-file', '-', '--no-agent', '--out', out, '--json'], {
          env: w.env,
          input: await w.gh.mint(),
        })
        assert.equal(r.code, 0, r.stderr)
        return {key: out, cert: `${out}-cert.pub`, doc: JSON.parse(r.stdout)}
      }
      const bySerial = await login('a')
      const byKeyId = await login('b')
      const fresh = await login('c')
      assert.equal((await sshca(['ca', 'revoke', '--serial', bySerial.doc.certificate.serial, ...ca()])).code, 0)
      assert.equal((await sshca(['ca', 'revoke', '--key-id', byKeyId.doc.certificate.keyId, ...ca()])).code, 0)
      const krl = join(dir, 'revoked.krl')
      const k = await sshca(['krl', '--out', krl, '--json'], {env: w.env})
      assert.equal(k.code, 0, k.stderr)
      assert.ok(JSON.parse(k.stdout).revokedSerials >= 1)
      assert.ok(JSON.parse(k.stdout).revokedKeyIds >= 1)
      const q = async (cert: string) => (await run('ssh-keygen', ['-Q', '-f', krl, cert])).stdout.trim()
      assert.match(await q(bySerial.cert), /REVOKED/)
      assert.match(await q(byKeyId.cert), /REVOKED/)
      assert.match(await q(fresh.cert), /: ok$/)

      // sshd with RevokedKeys: the revoked user certificate is refused, a fresh one accepted
      const sshd = await startSshd({
        userCaKeys: readFileSync(join(w.t.init.dir, 'ssh', 'ssh_user_ca.pub'), 'utf8')
          .trim()
          .split('\n'),
        revokedKeysFile: krl,
      })
      try {
        const {AgentClient} = await import('../../src/ssh/agent.ts')
        const loadOnly = async (f: {key: string; cert: string}) => {
          await AgentClient.with({socketPath: w.agent.socket}, async (a) => {
            await a.removeAll()
            await a.addCertificate(
              parsePrivateKeyFile(readFileSync(f.key, 'utf8')).key,
              parseCertificateLine(readFileSync(f.cert, 'utf8')).cert,
            )
          })
        }
        await loadOnly(bySerial)
        const refused = await ssh({port: sshd.port, agentSocket: w.agent.socket})
        assert.notEqual(refused.code, 0)
        assert.match(sshd.log(), /revoked|REVOKED/i)
        await loadOnly(fresh)
        const ok = await ssh({port: sshd.port, agentSocket: w.agent.socket})
        assert.equal(ok.code, 0, `${ok.stderr}\n${sshd.log().slice(-800)}`)
        assert.equal(ok.stdout.trim(), 'deployed-by-ci')
      } finally {
        await sshd.stop()
      }
    })

    it('ca hosts and GET /ssh/hosts list current, unrevoked host certificates; the API wants a token', async () => {
      const list = await sshca(['ca', 'hosts', ...ca(), '--json'])
      const hosts = JSON.parse(list.stdout).hosts as {principals: string[]; serial: string}[]
      assert.ok(hosts.some((h) => h.serial === enrolled.serial && h.principals.join() === 'web1,web1.example.com'))
      // renewed with --force above: one row for the host, its newest certificate (issue 17 item 9)
      assert.deepEqual(
        hosts.filter((h) => h.principals.join() === 'web1,web1.example.com').map((h) => h.serial),
        [enrolled.serial],
      )
      assert.ok(!hosts.some((h) => h.principals.includes('doomed')))
      assert.equal((await w.t.call('GET', '/ssh/hosts')).status, 401)
      const api = await w.t.call('GET', '/ssh/hosts', undefined, {authorization: `Bearer ${await w.gh.mint()}`})
      assert.equal(api.status, 200)
      assert.deepEqual(
        (api.json as {hosts: {serial: string}[]}).hosts.map((h) => h.serial).sort(),
        hosts.map((h) => h.serial).sort(),
      )
    })
  })

  describe('end to end', () => {
    it("ssh verifies the host certificate via the known_hosts block, with no prompt; a rogue CA's host certificate fails", async () => {
      const userCas = readFileSync(join(w.t.init.dir, 'ssh', 'ssh_user_ca.pub'), 'utf8')
        .trim()
        .split('\n')
      const keyText = readFileSync(hostKey, 'utf8')
      const hostPub = readFileSync(`${hostKey}.pub`, 'utf8').trim()
      assert.equal((await sshca(['config', '--pattern', '127.0.0.1'], {env: w.env})).code, 0)
      const knownHosts = join(w.env.HOME!, '.ssh', 'known_hosts')
      // the host certificate names web1, not 127.0.0.1: re-enroll this key for the address ssh dials
      // (another name for a key that heads web1's lineage: the admin binds the token to the key)
      const t = await token('127.0.0.1', ['--principal', 'web1', '--key', `${hostKey}.pub`])
      assert.equal(
        (
          await sshca(
            ['certificate', '--host', '--sign', '--token', t, '127.0.0.1', `${hostKey}.pub`, '--principal', 'web1'],
            {env: w.env},
          )
        ).code,
        0,
      )
      const sshd = await startSshd({
        userCaKeys: userCas,
        hostKey: {privateText: keyText, publicLine: hostPub},
        hostCertificate: readFileSync(`${hostKey}-cert.pub`, 'utf8').trim(),
      })
      const opts = ['HostKeyAlgorithms=ssh-ed25519-cert-v01@openssh.com']
      try {
        assert.equal(
          (await sshca(['login', '--identity-token-file', '-', '--force'], {env: w.env, input: await w.gh.mint()}))
            .code,
          0,
        )
        const ok = await ssh({
          port: sshd.port,
          agentSocket: w.agent.socket,
          knownHostsFile: knownHosts,
          options: opts,
          user: currentUser(),
        })
        assert.equal(ok.code, 0, `${ok.stderr}\n${sshd.log().slice(-800)}`)
        assert.equal(ok.stdout.trim(), 'deployed-by-ci')
      } finally {
        await sshd.stop()
      }
      // the same host, presenting a certificate from a rogue CA
      const rogue = generatePrivateKey('ed25519')
      const {keySigner} = await import('../../src/ssh/signature.ts')
      const now = BigInt(Math.floor(Date.now() / 1000))
      const {key} = parsePrivateKeyFile(keyText)
      const rogueCert = await signCertificate(
        {
          type: 'host',
          publicKey: key.publicKey,
          serial: 1n,
          keyId: 'rogue',
          principals: ['127.0.0.1'],
          validAfter: now - 60n,
          validBefore: now + 600n,
        },
        keySigner(rogue.keyObject),
      )
      const evil = await startSshd({
        userCaKeys: userCas,
        hostKey: {privateText: formatOpenSshPrivateKey(key), publicLine: hostPub},
        hostCertificate: certificateLine(rogueCert),
      })
      try {
        const bad = await ssh({port: evil.port, agentSocket: w.agent.socket, knownHostsFile: knownHosts, options: opts})
        assert.notEqual(bad.code, 0)
        assert.match(bad.stderr, /Host key verification failed|No ED25519-CERT host key is known|certificate/i)
      } finally {
        await evil.stop()
      }
    })
  })
})
