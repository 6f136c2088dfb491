/**
 * sshca's client against the real step-ca (0.19.0): every client command. Each `it` backs a row of
 * README's "works with smallstep" table. step-ca pages /provisioners by 20: the OIDC provisioner
 * sshca signs in with and step's SSHPOP provisioner sit on the second page.
 */
import assert from 'node:assert/strict'
import {once} from 'node:events'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {createServer, type AddressInfo} from 'node:net'
import {join} from 'node:path'
import {Agent, request} from 'undici'
import {parseCertificateLine} from '../../src/ssh/cert.ts'
import {formatOpenSshPrivateKey, generatePrivateKey} from '../../src/ssh/private-key.ts'
import {sshAdd} from '../helpers/openssh.ts'
import {run, waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {spawnSshca} from '../helpers/world.ts'
import {
  CLIENT_ID,
  mintIdToken,
  requireStepBinaries,
  sshcaUser,
  startStepCa,
  startTlsIdp,
  STEP,
  type SshcaUser,
  type StepCa,
  type TlsIdp,
} from './harness.ts'

describe('sshca client → step-ca', function () {
  this.timeout(180_000)
  let tls: TlsIdp
  let stepCa: StepCa
  let u: SshcaUser
  const hostDir = tempDir('sshca-interop-stephost-')
  const hostKey = join(hostDir, 'ssh_host_ed25519_key')
  const agentCerts = async (who: SshcaUser) =>
    (await sshAdd(who.agent, ['-L'])).stdout.split('\n').filter((l) => l.includes('-cert-v01@openssh.com'))
  const out = (r: {code: number | null; stdout: string; stderr: string}) => `exit ${r.code}\n${r.stdout}\n${r.stderr}`

  before(async () => {
    requireStepBinaries()
    tls = await startTlsIdp()
    const configurationEndpoint = `${tls.issuer}/.well-known/openid-configuration`
    // 24 provisioners before the one people sign in with: step-ca's first page (20) does not hold it
    const fillers = Array.from({length: 24}, (_, i) => ({
      type: 'OIDC',
      name: `filler-${i}`,
      clientID: `filler-${i}`,
      clientSecret: '',
      configurationEndpoint,
    }))
    stepCa = await startStepCa({
      ssh: true,
      idpCaFile: tls.caFile,
      provisioners: [
        ...fillers,
        {
          type: 'OIDC',
          name: 'sso',
          clientID: CLIENT_ID,
          clientSecret: '',
          configurationEndpoint,
          claims: {enableSSHCA: true},
        },
      ],
    })
    u = await sshcaUser(tls.caFile)
    const key = generatePrivateKey('ed25519')
    writeFileSync(hostKey, formatOpenSshPrivateKey(key, 'host'), {mode: 0o600})
    writeFileSync(`${hostKey}.pub`, `${key.publicKey.toLine('host')}\n`)
  })

  it('(the setup) step-ca pages /provisioners: sso and sshpop are not on the first page', async () => {
    const dispatcher = new Agent({connect: {ca: readFileSync(stepCa.rootFile, 'utf8')}})
    const res = await request(`${stepCa.url}/provisioners`, {dispatcher})
    const first = (await res.body.json()) as {provisioners: {name: string}[]; nextCursor: string}
    await dispatcher.close()
    assert.equal(first.provisioners.length, 20)
    assert.ok(first.nextCursor)
    assert.ok(!first.provisioners.some((p) => p.name === 'sso' || p.name === 'sshpop'))
  })

  it("sshca bootstrap: trusts step-ca's root by fingerprint; says it publishes no KRL", async () => {
    const r = await u.sshca([
      'bootstrap',
      '--ca-url',
      stepCa.url,
      '--fingerprint',
      stepCa.rootFingerprint,
      '--context',
      'step',
      '--json',
    ])
    assert.equal(r.code, 0, out(r))
    const j = JSON.parse(r.stdout) as {userCaKeys: string[]; hostCaKeys: string[]; krl: {status: string}}
    assert.equal(j.userCaKeys.length, 1)
    assert.equal(j.hostCaKeys.length, 1)
    assert.equal(j.krl.status, 'unavailable')
  })

  it('sshca bootstrap against a step-ca without SSH: says so, writes nothing', async () => {
    const plain = await startStepCa({ssh: false, idpCaFile: tls.caFile, provisioners: []})
    try {
      const r = await u.sshca([
        'bootstrap',
        '--ca-url',
        plain.url,
        '--fingerprint',
        plain.rootFingerprint,
        '--context',
        'nossh',
      ])
      assert.equal(r.code, 6, out(r))
      assert.match(r.stderr, /ERR_CA_UNSUPPORTED.*does not issue SSH certificates: SSH is not enabled on it/)
      assert.match(r.stderr, /step ca init --ssh/)
      assert.ok(!existsSync(join(u.sshcaHome, 'contexts', 'nossh')))
    } finally {
      await plain.stop()
    }
  })

  it('sshca login (browser): finds the provisioner on page 2, certificate in the agent', async () => {
    const r = await u.sshca(['login', '--provisioner', 'sso', '--json'])
    assert.equal(r.code, 0, out(r))
    const j = JSON.parse(r.stdout) as {method: string}
    assert.equal(j.method, 'browser')
    const certs = await agentCerts(u)
    assert.equal(certs.length, 1)
    const {cert} = parseCertificateLine(certs[0]!)
    // step-ca's OIDC provisioner: the email's local part and the email
    assert.deepEqual(cert.principals, ['alice', 'alice@example.com'])
  })

  it('sshca login again: step-ca refuses the refreshed ID token (its nonce is "already used"), so sshca signs in with the browser', async () => {
    const r = await u.sshca(['login', '--provisioner', 'sso', '--force', '--json'])
    assert.equal(r.code, 0, out(r))
    assert.match(r.stderr, /Renewing your sign-in[\s\S]*The CA does not accept a renewed sign-in/)
    const j = JSON.parse(r.stdout) as {method: string; agent: {removed: {why: string}[]}}
    assert.equal(j.method, 'browser')
    // agent hygiene: the new certificate supersedes the first one (same CA, key ID, principals), which login removed
    assert.deepEqual(
      j.agent.removed.map((x) => x.why),
      ['superseded'],
    )
    assert.equal((await agentCerts(u)).length, 1)
  })

  it('sshca login --console: the device flow (between sshca and the IdP), then step-ca signs', async () => {
    const other = await sshcaUser(tls.caFile, 'dave')
    assert.equal(
      (
        await other.sshca([
          'bootstrap',
          '--ca-url',
          stepCa.url,
          '--fingerprint',
          stepCa.rootFingerprint,
          '--context',
          'step',
        ])
      ).code,
      0,
    )
    const p = spawnSshca(['login', '--provisioner', 'sso', '--console', '--json'], other.env)
    const m = await p.waitFor(/open (https:\/\/127\.0\.0\.1:\d+\/\S+) and enter the code:\s+(\S+)/, 60_000)
    const b = await run(process.execPath, [join(import.meta.dirname, 'fake-browser.ts'), m[1]!], {
      env: {...other.env, FAKE_BROWSER_USER_CODE: m[2]!},
    })
    assert.equal(b.code, 0, b.stderr)
    const r = await p.exit()
    assert.equal(r.code, 0, out(r))
    assert.equal((JSON.parse(r.stdout) as {method: string}).method, 'device')
    assert.equal((await agentCerts(other)).length, 1)
  })

  it("sshca login --identity-token-file; a replayed token shows step-ca's own message (no request id)", async () => {
    const tokenFile = join(tempDir('sshca-interop-tok-'), 'id.jwt')
    // step-ca refuses tokens issued before it started: it has been up a while by now
    writeFileSync(tokenFile, `${await mintIdToken(tls, 'alice')}\n`, {mode: 0o600})
    const r = await u.sshca(['login', '--identity-token-file', tokenFile, '--force'])
    assert.equal(r.code, 0, out(r))
    const again = await u.sshca(['login', '--identity-token-file', tokenFile, '--force'])
    assert.equal(again.code, 7, out(again))
    // step-ca's own words (it keeps the reason, "token already used", for its log)
    assert.match(again.stderr, /the CA said: The request lacked necessary authorization to be completed/)
    assert.doesNotMatch(again.stderr, /request id/)
  })

  it('sshca list, sshca inspect: certificates from step-ca', async () => {
    const l = await u.sshca(['list', '--json'])
    assert.equal(l.code, 0, out(l))
    const certs = (
      JSON.parse(l.stdout) as {certificates: {keyId: string; fromBootstrappedCa?: boolean; trusted?: boolean}[]}
    ).certificates
    assert.ok(certs.length >= 1)
    assert.match(JSON.stringify(certs[0]), /alice@example\.com/)
    const f = join(hostDir, 'alice-cert.pub')
    writeFileSync(f, `${(await agentCerts(u))[0]}\n`)
    const i = await u.sshca(['inspect', f])
    assert.equal(i.code, 0, out(i))
    assert.match(i.stdout, /alice@example\.com/)
  })

  it('sshca status: the step-ca context answers, its certificate is in the agent, no revocation list yet', async () => {
    const r = await u.sshca(['status', '--json'])
    assert.equal(r.code, 0, out(r))
    const st = JSON.parse(r.stdout) as {checks: Record<string, {state: string; detail: string}>}
    assert.equal(st.checks.ca!.state, 'ok', out(r))
    assert.equal(st.checks.certificate!.state, 'ok', out(r))
    assert.equal(st.checks.krl!.state, 'warn', out(r))
    // before sshca config learns that step-ca publishes none, status says none was fetched
    assert.match(st.checks.krl!.detail, /no revocation list/)
  })

  it('sshca proxycommand: with a current step-ca certificate it signs in to nothing and carries the bytes to HOST:PORT', async () => {
    // a stand-in for sshd: it speaks first, as an SSH server does
    const server = createServer((socket) => socket.end('SSH-2.0-interop-stand-in\r\n'))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    try {
      const port = (server.address() as AddressInfo).port
      const r = await u.sshca(['proxycommand', 'alice', '127.0.0.1', String(port)], {input: ''})
      assert.equal(r.code, 0, out(r))
      assert.equal(r.stdout, 'SSH-2.0-interop-stand-in\r\n')
    } finally {
      server.close()
    }
  })

  it('sshca config (needs --pattern: step-ca names no hosts), config --roots, config --host --roots', async () => {
    const none = await u.sshca(['config', '--dry-run'])
    assert.notEqual(none.code, 0)
    assert.match(none.stderr, /--pattern/)
    const r = await u.sshca(['config', '--pattern', '*.example.test', '--json'])
    assert.equal(r.code, 0, out(r))
    const kh = readFileSync(join(u.home, '.ssh', 'known_hosts'), 'utf8')
    assert.match(kh, /^@cert-authority \*\.example\.test ecdsa-sha2-nistp256 /m)
    assert.equal((JSON.parse(r.stdout) as {krl: {status: string}}).krl.status, 'unavailable')
    const roots = await u.sshca(['config', '--roots'])
    assert.equal(
      roots.stdout.trim(),
      readFileSync(join(stepCa.steppath, 'certs', 'ssh_user_ca_key.pub'), 'utf8')
        .trim()
        .split(' ')
        .slice(0, 2)
        .join(' ') +
        roots.stdout
          .trim()
          .split(' ')
          .slice(2)
          .map((x) => ` ${x}`)
          .join(''),
    )
    const hostRoots = await u.sshca(['config', '--host', '--roots'])
    assert.ok(
      hostRoots.stdout.startsWith(
        readFileSync(join(stepCa.steppath, 'certs', 'ssh_host_ca_key.pub'), 'utf8')
          .trim()
          .split(' ')
          .slice(0, 2)
          .join(' '),
      ),
    )
  })

  it('sshca certificate --host --sign with a step-made token (step ca token --ssh --host)', async () => {
    const t = await run(
      STEP,
      [
        'ca',
        'token',
        'web1.example.test',
        '--ssh',
        '--host',
        '--provisioner',
        'admin',
        '--password-file',
        stepCa.passwordFile,
        '--ca-url',
        stepCa.url,
        '--root',
        stepCa.rootFile,
      ],
      {env: {...process.env, STEPPATH: stepCa.steppath}},
    )
    assert.equal(t.code, 0, out(t))
    const tokenFile = join(hostDir, 'token')
    writeFileSync(tokenFile, t.stdout.trim(), {mode: 0o600})
    const r = await u.sshca([
      'certificate',
      '--host',
      '--sign',
      '--token-file',
      tokenFile,
      'web1.example.test',
      `${hostKey}.pub`,
    ])
    assert.equal(r.code, 0, out(r))
    const {cert} = parseCertificateLine(readFileSync(`${hostKey}-cert.pub`, 'utf8'))
    assert.equal(cert.type, 'host')
    assert.deepEqual(cert.principals, ['web1.example.test'])
  })

  it("sshca renew: step's SSHPOP shape (its provisioner found on page 2); step-ca renews", async () => {
    const before = parseCertificateLine(readFileSync(`${hostKey}-cert.pub`, 'utf8')).cert
    const r = await u.sshca(['renew', '--force', '--json', `${hostKey}-cert.pub`, hostKey])
    assert.equal(r.code, 0, out(r))
    const after = parseCertificateLine(readFileSync(`${hostKey}-cert.pub`, 'utf8')).cert
    assert.notEqual(after.serial, before.serial)
    assert.deepEqual(after.principals, before.principals)
  })

  it("sshca rekey: a new host key, proven by the old one with step's SSHPOP token; step-ca certifies it", async () => {
    const before = parseCertificateLine(readFileSync(`${hostKey}-cert.pub`, 'utf8')).cert
    const r = await u.sshca(['rekey', '--json', `${hostKey}-cert.pub`, hostKey])
    assert.equal(r.code, 0, out(r))
    const after = parseCertificateLine(readFileSync(`${hostKey}-cert.pub`, 'utf8')).cert
    assert.notEqual(after.publicKey.fingerprint(), before.publicKey.fingerprint())
    assert.equal(after.publicKey.fingerprint(), (JSON.parse(r.stdout) as {keyFingerprint: string}).keyFingerprint)
    assert.deepEqual(after.principals, before.principals)
    assert.equal(after.type, 'host')
  })

  it('sshca fingerprint and needs-renewal on a step-ca certificate: what ssh-keygen -l says; not due yet', async () => {
    const ours = await u.sshca(['fingerprint', `${hostKey}-cert.pub`])
    assert.equal(ours.code, 0, out(ours))
    assert.equal(ours.stdout, (await run('ssh-keygen', ['-l', '-f', `${hostKey}-cert.pub`])).stdout)
    assert.equal((await u.sshca(['needs-renewal', `${hostKey}-cert.pub`])).code, 1)
  })

  it('sshca check-host and sshca hosts: step-ca answers them without a sign-in (it asks for none)', async () => {
    const yes = await u.sshca(['check-host', 'web1.example.test'])
    const no = await u.sshca(['check-host', 'db9.example.test'])
    assert.deepEqual([yes.code, yes.stdout, no.code, no.stdout], [0, 'true\n', 1, 'false\n'], `${out(yes)}\n${out(no)}`)
    const hosts = await u.sshca(['hosts', '--json'])
    assert.equal(hosts.code, 0, out(hosts))
    assert.deepEqual(
      (JSON.parse(hosts.stdout) as {hosts: {hostname: string}[]}).hosts.map((h) => h.hostname),
      ['web1.example.test'],
    )
  })

  it('sshca revoke --sshpop-cert/--sshpop-key: step-ca revokes the host certificate (and will not twice)', async () => {
    const r = await u.sshca([
      'revoke',
      '--json',
      '--sshpop-cert',
      `${hostKey}-cert.pub`,
      '--sshpop-key',
      hostKey,
      '--reason',
      'retired',
    ])
    assert.equal(r.code, 0, out(r))
    assert.equal((JSON.parse(r.stdout) as {proof: string}).proof, 'file')
    // recorded: step-ca refuses to revoke it again. (step-ca 0.19 keeps SSH revocations in its X.509
    // table — authority/tls.go revokeSSH calls db.Revoke — so its own SSHPOP renewal, which asks
    // IsSSHRevoked, still renews the certificate: step-ca's bug, not something a client can fix.)
    const again = await u.sshca(['revoke', '--sshpop-cert', `${hostKey}-cert.pub`, '--sshpop-key', hostKey])
    assert.equal(again.code, 7, out(again))
    assert.match(again.stderr, /already revoked/)
  })

  it('sshca revoke through the agent: a user certificate from step-ca revokes itself and leaves the agent', async () => {
    const login = await u.sshca(['login', '--provisioner', 'sso', '--force', '--json'], {timeoutMs: 120_000})
    assert.equal(login.code, 0, out(login))
    const serial = (JSON.parse(login.stdout) as {certificate: {serial: string}}).certificate.serial
    const r = await u.sshca(['revoke', serial, '--json'])
    assert.equal(r.code, 0, out(r))
    const doc = JSON.parse(r.stdout) as {proof: string; removedFromAgent: boolean; certType: string}
    assert.deepEqual([doc.proof, doc.removedFromAgent, doc.certType], ['agent', true, 'user'])
    assert.ok(!(await agentCerts(u)).some((l) => parseCertificateLine(l).cert.serial.toString() === serial))
  })

  it('sshca config --host: no RevokedKeys and no KRL unit, and says why', async function () {
    // the units run this checkout as root: only a root-owned one may (see client-security.test.ts)
    if (process.getuid?.() !== 0) this.skip()
    const r = await u.sshca(['config', '--host', '--dry-run', '--sshd-dir', hostDir, '--json'])
    assert.equal(r.code, 0, out(r))
    const j = JSON.parse(r.stdout) as {
      krl: string
      warnings: string[]
      certified: string[]
      files: {path: string; content: string}[]
    }
    assert.equal(j.krl, 'none')
    assert.deepEqual(j.certified, ['ssh_host_ed25519_key'])
    assert.match(j.warnings.join('\n'), /publishes no revocation list/)
    const snippet = j.files.find((f) => f.path.endsWith('50-sshca.conf'))!.content
    assert.doesNotMatch(snippet, /^RevokedKeys/m)
    assert.ok(!j.files.some((f) => f.path.includes('sshca-krl')))
  })

  it('sshca krl: step-ca publishes none: said, nothing written (an existing KRL file is an error)', async () => {
    const file = join(hostDir, 'revoked.krl')
    const r = await u.sshca(['krl', '--out', file])
    assert.equal(r.code, 0, out(r))
    assert.match(r.stderr, /publishes no revocation list/)
    assert.ok(!existsSync(file))
    writeFileSync(file, '')
    const stale = await u.sshca(['krl', '--out', file])
    assert.equal(stale.code, 6, out(stale))
    assert.match(stale.stderr, /ERR_CA_UNSUPPORTED/)
  })

  it("sshca logout: removes step-ca's certificates from the agent", async () => {
    const r = await u.sshca(['logout', '--all'])
    assert.equal(r.code, 0, out(r))
    await waitFor('the agent to forget', async () => (await agentCerts(u)).length === 0, 5000)
  })
})
