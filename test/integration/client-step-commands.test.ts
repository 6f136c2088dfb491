/**
 * Issue 12, item 5: the rest of `step ssh` through the CLI against a real CA, ssh-agent and
 * ssh-keygen (the oracle): fingerprint, needs-renewal, check-host, hosts, rekey, revoke. Every
 * proof-of-possession route is also attacked: a proof signed by a key other than the certified
 * one, a proof for another purpose, a revocation of someone else's certificate.
 */
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {existsSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {mintSshpopToken, mintSshpopTokenWith, SSHPOP_PROVISIONER, type SshpopAction} from '../../src/protocol/tokens.ts'
import type {Certificate} from '../../src/ssh/cert.ts'
import {driveDevSignIn} from '../../src/demo/idp-driver.ts'
import {AgentClient} from '../../src/ssh/agent.ts'
import {parseCertificateLine} from '../../src/ssh/cert.ts'
import {parseKrl} from '../../src/ssh/krl.ts'
import {generatePrivateKey, parsePrivateKeyFile} from '../../src/ssh/private-key.ts'
import {signData} from '../../src/ssh/signature.ts'
import {sshca} from '../helpers/cli.ts'
import {idToken} from '../helpers/idp-token.ts'
import {keygenShow} from '../helpers/openssh.ts'
import {runOk} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {spawnSshca, startWorld, type World} from '../helpers/world.ts'

describe('the rest of step ssh (issue 12)', function () {
  this.timeout(180_000)
  let w: World
  let dir: string
  let hostKey: string
  const now = (): number => Math.floor(Date.now() / 1000)
  const cert = (file: string) => parseCertificateLine(readFileSync(file, 'utf8')).cert
  /** An SSHPOP token for this CA, signed by `signer` (the certified key, or an attacker's). */
  const pop = (signer: ReturnType<typeof generatePrivateKey>, c: Certificate, action: SshpopAction) =>
    mintSshpopTokenWith(async (d) => signData(signer.keyObject, signer.publicKey, d), c, {
      caUrl: w.t.url,
      action,
      provisioner: SSHPOP_PROVISIONER,
      rootFingerprint: w.t.init.rootFingerprint,
      now: now(),
    })
  const aliceToken = async (): Promise<string> =>
    (await idToken(w.idp.issuer, {clientId: 'sshca-cli', login: 'alice@example.com'})).idToken
  /** What the CA answered since `mark`: `ca token`'s events reach the audit log later (the CA copies them from the store), so they are left out. */
  const served = (mark: number) => w.t.since(mark).filter((e) => e.event !== 'enrollment_token_issued')
  /** check-host as a signed-in person asks it (the CA answers an identity its policy accepts). */
  const checkHost = async (...args: string[]) =>
    sshca(['check-host', '--identity-token-file', '-', ...args], {env: w.env, input: await aliceToken()})

  /** A host key enrolled with the CA for `names` (the real ca token → certificate --host --sign). */
  async function enrolled(name: string, ...names: string[]): Promise<string> {
    const key = join(dir, name)
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', key])
    const tok = await sshca([
      'ca',
      'token',
      '--host',
      names[0]!,
      ...names.slice(1).flatMap((n) => ['--principal', n]),
      '--config',
      w.t.init.config,
      '--password-file',
      w.t.passwordFile,
    ])
    assert.equal(tok.code, 0, tok.stderr)
    writeFileSync(join(dir, `${name}.token`), tok.stdout.trim().split('\n').pop()!, {mode: 0o600})
    const r = await sshca(
      [
        'certificate',
        '--host',
        '--sign',
        '--token-file',
        join(dir, `${name}.token`),
        names[0]!,
        `${key}.pub`,
        ...names.slice(1).flatMap((n) => ['--principal', n]),
      ],
      {env: w.env},
    )
    assert.equal(r.code, 0, r.stderr)
    return key
  }

  before(async () => {
    w = await startWorld()
    await w.bootstrap()
    dir = tempDir('sshca-step-')
    hostKey = await enrolled('ssh_host_ed25519_key', 'web1.example.com', '10.0.0.7')
  })
  after(async () => w?.stop())

  describe('fingerprint', () => {
    it('prints what ssh-keygen -l prints, for a public key and a certificate', async () => {
      for (const file of [`${hostKey}.pub`, `${hostKey}-cert.pub`]) {
        const ours = await sshca(['fingerprint', file])
        assert.equal(ours.code, 0, ours.stderr)
        const theirs = await runOk('ssh-keygen', ['-l', '-f', file])
        assert.equal(ours.stdout, theirs.stdout, file)
      }
    })

    it('--certificate hashes the whole certificate; --format hex; several lines from standard input; --json', async () => {
      const line = readFileSync(`${hostKey}-cert.pub`, 'utf8')
      const whole = createHash('sha256')
        .update(Buffer.from(line.split(' ')[1]!, 'base64'))
        .digest()
      const r = await sshca(['fingerprint', `${hostKey}-cert.pub`, '--certificate', '--format', 'hex'])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout.split(' ')[1], `SHA256:${whole.toString('hex')}`)
      const many = await sshca(['fingerprint', '-', '--json'], {
        input: `${readFileSync(`${hostKey}.pub`, 'utf8')}${line}`,
      })
      assert.equal(many.code, 0, many.stderr)
      const doc = JSON.parse(many.stdout)
      assert.deepEqual(
        doc.keys.map((k: {certificate: boolean}) => k.certificate),
        [false, true],
      )
      assert.equal(doc.keys[0].fingerprint, doc.keys[1].fingerprint, "a certificate's fingerprint is its key's")
      const refused = await sshca(['fingerprint', `${hostKey}.pub`, '--certificate', '--json'])
      assert.equal(refused.code, 2)
      assert.equal(JSON.parse(refused.stdout).error.code, 'ERR_INPUT')
    })
  })

  describe('needs-renewal', () => {
    it('exit 1 for a fresh certificate, 0 within --expires-in, 2 for a missing file; --json keeps the exit code', async () => {
      const file = `${hostKey}-cert.pub`
      assert.equal((await sshca(['needs-renewal', file])).code, 1)
      assert.equal((await sshca(['needs-renewal', file, '--expires-in', '400d'])).code, 0)
      assert.equal((await sshca(['needs-renewal', file, '--expires-in', '0%'])).code, 0)
      assert.equal((await sshca(['needs-renewal', file, '--expires-in', '1h'])).code, 1)
      const json = await sshca(['needs-renewal', file, '--json'])
      assert.equal(json.code, 1)
      const doc = JSON.parse(json.stdout)
      assert.equal(doc.needsRenewal, false)
      assert.ok(Math.abs(doc.threshold.percentUsed - 66.67) < 0.01)
      assert.equal((await sshca(['needs-renewal', join(dir, 'nope-cert.pub')])).code, 2)
      assert.equal((await sshca(['needs-renewal', file, '--expires-in', 'soon'])).code, 2)
      const verbose = await sshca(['needs-renewal', file, '--expires-in', '400d', '-v'])
      assert.match(verbose.stdout, /^certificate needs renewal \(\d+d/)
    })
  })

  describe('check-host and hosts', () => {
    it('check-host: true and exit 0 for an enrolled name, false and exit 1 otherwise; --quiet prints nothing; not for a stranger', async () => {
      const yes = await checkHost('10.0.0.7')
      assert.deepEqual([yes.code, yes.stdout], [0, 'true\n'])
      const no = await checkHost('db9.example.com')
      assert.deepEqual([no.code, no.stdout], [1, 'false\n'])
      const quiet = await checkHost('--quiet', 'WEB1.example.com')
      assert.deepEqual([quiet.code, quiet.stdout], [0, ''])
      const json = JSON.parse((await checkHost('web1.example.com', '--json')).stdout)
      assert.deepEqual(json, {context: 'test', host: 'web1.example.com', exists: true})
      const stranger = await sshca(['check-host', 'web1.example.com', '--identity-token-file', '-'], {
        env: w.env,
        input: (await idToken(w.idp.issuer, {clientId: 'sshca-cli', login: 'mallory@evil.io'})).idToken,
      })
      assert.deepEqual([stranger.code, stranger.stdout], [7, ''])
    })

    it('check-host without a token file: asked without credentials first (as step-ca answers), the 401 makes it sign in (browser), then asked again', async () => {
      const mark = w.t.mark()
      const p = spawnSshca(['check-host', 'web1.example.com', '--provisioner', 'sso'], w.env)
      const [url] = await p.waitFor(/^http:\/\/127\.0\.0\.1:\d+\/auth\?\S+$/m)
      await driveDevSignIn(url, {login: 'alice@example.com'})
      const done = await p.exit()
      assert.deepEqual([done.code, done.stdout], [0, 'true\n'], done.stderr)
      // one refusal of the anonymous request, audited as such, then the answered one; no certificate was issued for it
      assert.deepEqual(
        served(mark).map((e) => [e.event, e.reason ?? e.subject]),
        [
          ['access_denied', 'token_invalid'],
          ['access_granted', 'alice@example.com'],
        ],
      )
    })

    it('hosts: the inventory for an identity the policy accepts (and none without one)', async () => {
      const r = await sshca(['hosts', '--identity-token-file', '-', '--json'], {env: w.env, input: await aliceToken()})
      assert.equal(r.code, 0, r.stderr)
      const doc = JSON.parse(r.stdout)
      const web = doc.hosts.find((h: {hostname: string}) => h.hostname === 'web1.example.com')
      assert.deepEqual(web.principals, ['web1.example.com', '10.0.0.7'])
      assert.equal(web.keyFingerprint, cert(`${hostKey}-cert.pub`).publicKey.fingerprint())
      const stranger = await sshca(['hosts', '--identity-token-file', '-', '--json'], {
        env: w.env,
        input: (await idToken(w.idp.issuer, {clientId: 'sshca-cli', login: 'mallory@evil.io'})).idToken,
      })
      assert.equal(stranger.code, 7)
    })
  })

  describe('rekey', () => {
    it('a new key and a certificate with the same names, proven by the old key; the files replaced (0600 key)', async () => {
      const key = await enrolled('rekey_host_key', 'db1.example.com')
      const before = cert(`${key}-cert.pub`)
      const r = await sshca(['rekey', `${key}-cert.pub`, key, '--json'], {env: w.env})
      assert.equal(r.code, 0, r.stderr)
      const doc = JSON.parse(r.stdout)
      const after = await keygenShow(`${key}-cert.pub`)
      assert.deepEqual(after.principals, ['db1.example.com'])
      assert.equal(after.keyId, before.keyId)
      assert.notEqual(doc.serial, before.serial.toString())
      const fresh = parsePrivateKeyFile(readFileSync(key, 'utf8')).key
      assert.equal(fresh.publicKey.fingerprint(), doc.keyFingerprint)
      assert.notEqual(fresh.publicKey.fingerprint(), before.publicKey.fingerprint())
      assert.equal(after.publicKey.split(' ')[1], doc.keyFingerprint)
      assert.equal(statSync(key).mode & 0o777, 0o600)
      assert.equal((await runOk('ssh-keygen', ['-l', '-f', `${key}.pub`])).stdout.split(' ')[1], doc.keyFingerprint)
    })

    it('refused: a proof signed by another key (the certificate alone is public), and a proof made for another purpose', async () => {
      const key = await enrolled('victim_host_key', 'app1.example.com')
      const victim = cert(`${key}-cert.pub`)
      const attacker = generatePrivateKey('ed25519')
      const mark = w.t.mark()
      const forged = await pop(attacker, victim, 'rekey')
      const r1 = await w.t.call('POST', '/ssh/rekey', {
        ott: forged,
        publicKey: attacker.publicKey.blob.toString('base64'),
      })
      assert.equal(r1.status, 401, r1.text)
      // a real proof by the real key, but for renewal: it cannot rekey
      const real = parsePrivateKeyFile(readFileSync(key, 'utf8')).key
      const renewal = await mintSshpopToken(real.keyObject, victim, {
        caUrl: w.t.url,
        action: 'renew',
        provisioner: SSHPOP_PROVISIONER,
        rootFingerprint: w.t.init.rootFingerprint,
        now: now(),
      })
      const r2 = await w.t.call('POST', '/ssh/rekey', {
        ott: renewal,
        publicKey: attacker.publicKey.blob.toString('base64'),
      })
      assert.equal(r2.status, 401, r2.text)
      assert.equal(w.t.since(mark).filter((e) => e.event === 'certificate_issued').length, 0)
      assert.deepEqual(
        served(mark).map((e) => e.reason),
        ['proof_invalid', 'proof_invalid'],
      )
    })
  })

  describe('revoke', () => {
    it("one's own certificate, proven through the agent: into the KRL and out of the agent", async () => {
      const login = await sshca(['login', '--identity-token-file', '-', '--json'], {
        env: w.env,
        input: await aliceToken(),
      })
      assert.equal(login.code, 0, login.stderr)
      const serial = JSON.parse(login.stdout).certificate.serial
      const r = await sshca(['revoke', '--reason', 'laptop left unlocked', '--reasonCode', 'KeyCompromise', '--json'], {
        env: w.env,
      })
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(JSON.parse(r.stdout), {
        context: 'test',
        serial,
        keyId: 'alice@example.com',
        certType: 'user',
        proof: 'agent',
        removedFromAgent: true,
      })
      const krlFile = join(dir, 'now.krl')
      assert.equal((await sshca(['krl', '--out', krlFile], {env: w.env})).code, 0)
      const krl = parseKrl(readFileSync(krlFile))
      assert.ok(krl.sections.some((s) => s.serials.map(String).includes(serial)))
      const left = await AgentClient.with({socketPath: w.agent.socket}, (a) => a.list())
      assert.ok(!left.some((i) => i.certificate?.serial.toString() === serial))
      const audit = w.t
        .audit()
        .filter((e) => e.event === 'certificate_revoked' && (e.certificates as string[] | undefined)?.includes(serial))
      assert.equal(audit.length, 1)
      assert.deepEqual([audit[0]!.by, audit[0]!.reason, audit[0]!.reason_code], ['sshpop', 'laptop left unlocked', 1])
    })

    it('a host certificate, proven by its key file (--sshpop-cert/--sshpop-key)', async () => {
      const key = await enrolled('retired_host_key', 'old1.example.com')
      const serial = cert(`${key}-cert.pub`).serial.toString()
      const r = await sshca(['revoke', '--sshpop-cert', `${key}-cert.pub`, '--sshpop-key', key, '--json'], {env: w.env})
      assert.equal(r.code, 0, r.stderr)
      assert.equal(JSON.parse(r.stdout).proof, 'file')
      assert.equal((await checkHost('old1.example.com')).code, 1, 'a revoked host is no longer listed')
      assert.ok(existsSync(`${key}-cert.pub`))
      // a revoked certificate proves nothing any more, not even for its own revocation (main's CA: 403, audited)
      const mark = w.t.mark()
      const again = await sshca(['revoke', serial, '--sshpop-cert', `${key}-cert.pub`, '--sshpop-key', key], {
        env: w.env,
      })
      assert.equal(again.code, 7, again.stderr)
      assert.deepEqual(
        served(mark).map((e) => [e.event, e.reason]),
        [['revocation_denied', 'certificate_revoked']],
      )
    })

    it("refused: someone else's serial with one's own proof, and someone else's certificate with a forged proof", async () => {
      const victimKey = await enrolled('victim2_host_key', 'pay1.example.com')
      const victim = cert(`${victimKey}-cert.pub`)
      const mineKey = await enrolled('attacker_host_key', 'evil1.example.com')
      const mine = cert(`${mineKey}-cert.pub`)
      const myKey = parsePrivateKeyFile(readFileSync(mineKey, 'utf8')).key
      const mark = w.t.mark()
      const proofForMine = await pop(myKey, mine, 'revoke')
      const r1 = await w.t.call('POST', '/ssh/revoke', {
        serial: victim.serial.toString(),
        ott: proofForMine,
        passive: true,
      })
      assert.equal(r1.status, 403, r1.text)
      const forged = await pop(myKey, victim, 'revoke')
      const r2 = await w.t.call('POST', '/ssh/revoke', {serial: victim.serial.toString(), ott: forged, passive: true})
      assert.equal(r2.status, 401, r2.text)
      assert.equal(w.t.since(mark).filter((e) => e.event === 'certificate_revoked').length, 0)
      assert.equal((await checkHost('pay1.example.com')).code, 0, 'the victim is untouched')
    })
  })
})
