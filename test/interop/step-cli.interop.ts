/**
 * The real step CLI (0.15.16) against sshca's CA: every `step ssh` subcommand, and the `step ca`
 * commands around them. Each `it` backs a row of README's "works with smallstep" table (the row's
 * name is in the title).
 */
import assert from 'node:assert/strict'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {parseCertificateLine} from '../../src/ssh/cert.ts'
import {generatePrivateKey, formatOpenSshPrivateKey} from '../../src/ssh/private-key.ts'
import {sshca} from '../helpers/cli.ts'
import {currentUser, keygenShow, sshAdd} from '../helpers/openssh.ts'
import {tempDir} from '../helpers/tmp.ts'
import {
  ourPolicy,
  requireStepBinaries,
  startOurCa,
  startTlsIdp,
  stepUser,
  type OurCa,
  type StepUser,
  type TlsIdp,
} from './harness.ts'

describe('step CLI → sshca CA', function () {
  this.timeout(180_000)
  let tls: TlsIdp
  let ca: OurCa
  let u: StepUser
  const user = currentUser()
  const hostDir = tempDir('sshca-interop-host-')
  const hostKey = join(hostDir, 'ssh_host_ed25519_key')

  /** An enrollment token minted by the CA operator (sshca ca token --host). */
  const hostToken = async (name: string): Promise<string> => {
    const r = await sshca([
      'ca',
      'token',
      '--host',
      name,
      '--key',
      `${hostKey}.pub`,
      '--config',
      ca.config,
      '--password-file',
      ca.passwordFile,
      '--json',
    ])
    assert.equal(r.code, 0, `sshca ca token: ${r.stdout}\n${r.stderr}`)
    return (JSON.parse(r.stdout) as {token: string}).token
  }
  const certOf = (file: string) => parseCertificateLine(readFileSync(file, 'utf8')).cert

  before(async () => {
    requireStepBinaries()
    tls = await startTlsIdp()
    ca = await startOurCa(ourPolicy(tls.issuer, user), {NODE_EXTRA_CA_CERTS: tls.caFile})
    u = await stepUser(tls.caFile)
    const key = generatePrivateKey('ed25519')
    writeFileSync(hostKey, formatOpenSshPrivateKey(key, 'host'), {mode: 0o600})
    writeFileSync(`${hostKey}.pub`, `${key.publicKey.toLine('host')}\n`)
  })

  it('step ca bootstrap: trusts the root by fingerprint', async () => {
    const r = await u.step(['ca', 'bootstrap', '--ca-url', ca.url, '--fingerprint', ca.rootFingerprint])
    assert.equal(r.code, 0, r.stderr)
    assert.ok(existsSync(join(u.steppath, 'certs', 'root_ca.crt')))
  })

  it('step ca health, step ca provisioner list: the OIDC and SSHPOP provisioners', async () => {
    const h = await u.step(['ca', 'health'])
    assert.equal(h.code, 0, h.stderr)
    assert.match(h.stdout, /ok/)
    const p = await u.step(['ca', 'provisioner', 'list'])
    assert.equal(p.code, 0, p.stderr)
    const list = JSON.parse(p.stdout) as {type: string; name: string}[]
    assert.deepEqual(
      list.map((x) => [x.type, x.name]),
      [
        ['OIDC', 'sso'],
        ['SSHPOP', 'sshpop'],
      ],
    )
  })

  it('step ssh login: browser sign-in, certificate in the agent, principals from the policy', async () => {
    const r = await u.step(['ssh', 'login', 'alice@example.com', '--provisioner', 'sso'])
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    const listed = await sshAdd(u.agent, ['-L'])
    const line = listed.stdout.split('\n').find((l) => l.includes('-cert-v01@openssh.com'))
    assert.ok(line, listed.stdout)
    const {cert} = parseCertificateLine(line)
    assert.equal(cert.type, 'user')
    assert.deepEqual(cert.principals, ['alice', user])
    assert.equal(cert.keyId, 'alice@example.com')
    // requireClientAuthentication: step asked for, and wrote, its X.509 identity
    assert.ok(existsSync(join(u.steppath, 'identity', 'identity.crt')))
  })

  it('step ssh list, step ssh fingerprint, step ssh inspect: read the agent and the files (local)', async () => {
    const l = await u.step(['ssh', 'list'])
    assert.equal(l.code, 0, l.stderr)
    assert.match(l.stdout, /alice@example\.com/)
    const l2 = await u.step(['ssh', 'list', '--raw'])
    const certLine = l2.stdout.split('\n').find((x) => x.includes('-cert-v01@openssh.com'))!
    const file = join(hostDir, 'alice-cert.pub')
    writeFileSync(file, `${certLine}\n`)
    const f = await u.step(['ssh', 'fingerprint', file])
    assert.equal(f.code, 0, f.stderr)
    assert.match(f.stdout, /SHA256:/)
    const i = await u.step(['ssh', 'inspect', file])
    assert.equal(i.code, 0, i.stderr)
    assert.match(i.stdout, /Key ID: "alice@example\.com"/)
    assert.match(i.stdout, new RegExp(`Principals:\\s+alice\\s+${user}`))
  })

  it('step ssh certificate --host --sign --token: a host certificate with an enrollment token from sshca ca token', async () => {
    const r = await u.step([
      'ssh',
      'certificate',
      '--host',
      '--sign',
      '--token',
      await hostToken('web1.example.test'),
      'web1.example.test',
      `${hostKey}.pub`,
    ])
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    const cert = certOf(`${hostKey}-cert.pub`)
    assert.equal(cert.type, 'host')
    assert.deepEqual(cert.principals, ['web1.example.test'])
  })

  it('step ssh certificate (user, browser sign-in): key and certificate files, principals from the policy', async () => {
    const out = join(tempDir('sshca-interop-id-'), 'id_ecdsa')
    const r = await u.step([
      'ssh',
      'certificate',
      'alice@example.com',
      out,
      '--provisioner',
      'sso',
      '--no-password',
      '--insecure',
    ])
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    const cert = certOf(`${out}-cert.pub`)
    assert.deepEqual(cert.principals, ['alice', user])
    assert.ok(existsSync(out))
  })

  it("step ssh hosts: the inventory, authenticated by step's X.509 identity (mTLS)", async () => {
    const r = await u.step(['ssh', 'hosts'])
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    assert.match(r.stdout, /^HOSTNAME\s+ID\s+TAGS/m)
    assert.match(r.stdout, /^web1\.example\.test\s+SHA256:/m)
  })

  it('step ssh hosts without an identity: the CA answers 401, step signs in (identityCSR) and asks again', async () => {
    const fresh = await stepUser(tls.caFile, 'bob')
    assert.equal(
      (await fresh.step(['ca', 'bootstrap', '--ca-url', ca.url, '--fingerprint', ca.rootFingerprint])).code,
      0,
    )
    const r = await fresh.step(['ssh', 'hosts'])
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    assert.match(r.stdout, /^web1\.example\.test\s/m)
    assert.ok(existsSync(join(fresh.steppath, 'identity', 'identity.crt')))
  })

  it('step ssh check-host: exit 0 for a host with a current certificate, 1 for another; refused without an identity', async () => {
    const yes = await u.step(['ssh', 'check-host', 'web1.example.test', '--verbose'])
    assert.equal(yes.code, 0, yes.stderr)
    assert.match(yes.stdout, /true/)
    const no = await u.step(['ssh', 'check-host', 'nope.example.test', '--verbose'])
    assert.equal(no.code, 1, no.stderr)
    assert.match(no.stdout, /false/)
    // the inventory is not public: without an identity (or a Bearer token) the CA says 401
    const stranger = await stepUser(tls.caFile, 'carol')
    assert.equal(
      (await stranger.step(['ca', 'bootstrap', '--ca-url', ca.url, '--fingerprint', ca.rootFingerprint])).code,
      0,
    )
    const anon = await stranger.step(['ssh', 'check-host', 'web1.example.test', '--verbose'])
    assert.notEqual(anon.code, 0)
    assert.doesNotMatch(anon.stdout, /true/)
    // step itself wants its identity first (the CA requires client authentication for this)
    assert.match(anon.stderr, /step ssh config|identity/)
  })

  it("step ssh config: ssh_config and known_hosts (the CA's host pattern), --roots, --host --roots, --host templates", async () => {
    const r = await u.step(['ssh', 'config'])
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    const kh = readFileSync(join(u.steppath, 'ssh', 'known_hosts'), 'utf8')
    assert.match(kh, /^@cert-authority \*\.example\.test ssh-ed25519 AAAA\S+$/m)
    assert.match(
      readFileSync(join(u.steppath, 'ssh', 'config'), 'utf8'),
      /^Match exec "step ssh check-host %h"\n\tUser alice\n\tUserKnownHostsFile "[^"]+\/ssh\/known_hosts"\n\tProxyCommand step ssh proxycommand %r %h %p$/m,
    )
    assert.match(readFileSync(join(u.home, '.ssh', 'config'), 'utf8'), /Include "[^"]+\/ssh\/includes"/)
    const roots = await u.step(['ssh', 'config', '--roots'])
    const hostRoots = await u.step(['ssh', 'config', '--host', '--roots'])
    assert.equal(roots.code, 0, roots.stderr)
    const ours = (kind: 'user' | 'host') =>
      readFileSync(join(ca.dir, 'ssh', `ssh_${kind}_ca.pub`), 'utf8')
        .trim()
        .split(' ')
        .slice(0, 2)
        .join(' ')
    assert.match(roots.stdout, new RegExp(ours('user').replace(/[+/]/g, '\\$&')))
    assert.match(hostRoots.stdout, new RegExp(ours('host').replace(/[+/]/g, '\\$&')))
    const host = await u.step([
      'ssh',
      'config',
      '--host',
      '--set',
      'Certificate=ssh_host_ed25519_key-cert.pub',
      '--set',
      'Key=ssh_host_ed25519_key',
      '--dry-run',
    ])
    assert.equal(host.code, 0, `${host.stdout}\n${host.stderr}`)
    assert.match(
      host.stdout,
      /TrustedUserCAKeys \/etc\/ssh\/ca\.pub\n\tHostCertificate \/etc\/ssh\/ssh_host_ed25519_key-cert\.pub\n\tHostKey \/etc\/ssh\/ssh_host_ed25519_key/,
    )
    // step-ca's message when the required data is missing
    const missing = await u.step(['ssh', 'config', '--host', '--dry-run'])
    assert.notEqual(missing.code, 0)
    assert.match(missing.stderr, /requires Certificate, Key/)
  })

  it('step ssh renew: SSHPOP proof with the host key, a new serial for the same names', async () => {
    const before = certOf(`${hostKey}-cert.pub`)
    const r = await u.step(['ssh', 'renew', `${hostKey}-cert.pub`, hostKey, '--force'])
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    const after = certOf(`${hostKey}-cert.pub`)
    assert.notEqual(after.serial, before.serial)
    assert.deepEqual(after.principals, before.principals)
    assert.ok(after.publicKey.equals(before.publicKey))
    // the CA's lineage: the certificate renewed once cannot be renewed again
    writeFileSync(join(hostDir, 'old-cert.pub'), `${readFileSync(`${hostKey}-cert.pub`, 'utf8')}`)
  })

  it('step ssh rekey: the host certificate for a new key; the old key can no longer renew', async () => {
    const old = join(hostDir, 'before-rekey-cert.pub')
    writeFileSync(old, readFileSync(`${hostKey}-cert.pub`))
    const out = join(hostDir, 'ssh_host_new_key')
    const r = await u.step([
      'ssh',
      'rekey',
      '--out',
      out,
      '--no-password',
      '--insecure',
      '--force',
      `${hostKey}-cert.pub`,
      hostKey,
    ])
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    const fresh = certOf(`${out}-cert.pub`)
    const pub = readFileSync(`${out}.pub`, 'utf8').split(' ')[1]
    assert.equal(fresh.publicKey.blob.toString('base64'), pub)
    assert.deepEqual(fresh.principals, ['web1.example.test'])
    // the old key's lineage ended with the rekey
    const again = await u.step(['ssh', 'renew', '--force', '--out', join(hostDir, 'x-cert.pub'), old, hostKey])
    assert.notEqual(again.code, 0)
    assert.match(again.stderr, /newer certificate|forbidden|denied|does not allow/i)
  })

  it('step ssh revoke (SSHPOP): the certificate revokes itself; recorded, audited and in the KRL', async () => {
    const out = join(hostDir, 'ssh_host_new_key')
    const cert = certOf(`${out}-cert.pub`)
    const r = await u.step([
      'ssh',
      'revoke',
      '--sshpop-cert',
      `${out}-cert.pub`,
      '--sshpop-key',
      out,
      '--reason',
      'host retired',
    ])
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    assert.match(r.stdout + r.stderr, new RegExp(`Serial Number ${cert.serial} has been revoked`))
    const list = await sshca(['ca', 'revocations', '--config', ca.config, '--json'])
    const revs = (JSON.parse(list.stdout) as {revocations: {serial: string | null; reason: string}[]}).revocations
    assert.ok(
      revs.some((x) => x.serial === cert.serial.toString() && x.reason === 'host retired'),
      list.stdout,
    )
    const audited = ca.auditLines().filter((l) => l.event === 'certificate_revoked' && l.by === 'sshpop')
    assert.deepEqual(audited.at(-1)!.certificates as string[], [cert.serial.toString()])
    // a revoked host is no longer in the inventory
    const check = await u.step(['ssh', 'check-host', 'web1.example.test', '--verbose'])
    assert.equal(check.code, 1, check.stderr)
  })

  it('step ssh proxycommand: signs in if needed, asks /ssh/bastion (none), connects straight to the host', async () => {
    const srv = createServer((s) => s.end('SSH-2.0-interop-banner\r\n'))
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
    try {
      const port = (srv.address() as {port: number}).port
      const r = await u.step(['ssh', 'proxycommand', 'alice', '127.0.0.1', String(port)], {input: ''})
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
      assert.match(r.stdout, /SSH-2\.0-interop-banner/)
    } finally {
      srv.close()
    }
  })

  it('step ssh logout: removes the certificates of that identity from the agent', async () => {
    const r = await u.step(['ssh', 'logout', 'alice@example.com'])
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    const listed = await sshAdd(u.agent, ['-L'])
    assert.doesNotMatch(listed.stdout, /-cert-v01@openssh\.com/)
  })

  it('step ca certificate (X.509): a clear 501, this CA issues SSH certificates only', async () => {
    const dir = tempDir('sshca-interop-x509-')
    const r = await u.step([
      'ca',
      'certificate',
      'alice@example.com',
      join(dir, 'a.crt'),
      join(dir, 'a.key'),
      '--provisioner',
      'sso',
    ])
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /SSH certificates only/)
    assert.ok(!existsSync(join(dir, 'a.crt')))
  })
})

export {keygenShow}
