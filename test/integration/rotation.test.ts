/**
 * Phased rotation of the SSH user and host CA keys, end to end with real parts: the CA over HTTPS,
 * `sshca ca rotate` as an operator runs it, a real sshd whose TrustedUserCAKeys and host certificate
 * are kept by what its timers run (`sshca krl --user-ca-keys`, `sshca renew`), and a real ssh client
 * whose known_hosts is kept by `sshca config` and `sshca login`. Nothing is edited by hand: the test
 * checks that the host's and the client's files change only when those commands run.
 */
import assert from 'node:assert/strict'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {parseCertificateLine} from '../../src/ssh/cert.ts'
import {PublicKey} from '../../src/ssh/keys.ts'
import {AgentClient} from '../../src/ssh/agent.ts'
import {sshca} from '../helpers/cli.ts'
import {currentUser, ssh, startAgent, startSshd, type Agent, type Sshd} from '../helpers/openssh.ts'
import {runOk, waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {startWorld, type World} from '../helpers/world.ts'

describe('CA key rotation: prepare, activate, retire, with a real sshd and ssh', function () {
  this.timeout(240_000)
  let w: World
  let sshd: Sshd | undefined
  let newAgent: Agent
  const hostDir = tempDir('sshca-rot-host-')
  const hostKey = join(hostDir, 'ssh_host_ed25519_key')
  const hostCert = `${hostKey}-cert.pub`
  const userCaFile = join(hostDir, 'sshca_user_ca.pub')
  const krlFile = join(hostDir, 'sshca_revoked_keys.krl')
  let knownHosts: string
  const lines = (file: string) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
  const caKeysIn = (file: string) =>
    lines(file)
      .filter((l) => l.startsWith('@cert-authority'))
      .map((l) => PublicKey.parseLine(l.split(' ').slice(2).join(' ')).key.fingerprint())
  const ca = () => ['--config', w.t.init.config]

  async function roots(): Promise<{
    userKey: string[]
    hostKey: string[]
    keys: {user: {id: string; state: string}[]; host: {id: string; state: string}[]}
  }> {
    return (await w.t.call('GET', '/ssh/roots')).json as never
  }
  const fp = (b64: string) => PublicKey.fromBlob(Buffer.from(b64, 'base64')).fingerprint()
  const states = async (kind: 'user' | 'host') => (await roots()).keys[kind].map((k) => k.state).join(',')

  /** What the hourly unit runs on the host. */
  async function krlTimer(): Promise<void> {
    const r = await sshca(['krl', '--context', 'test', '--out', krlFile, '--user-ca-keys', userCaFile], {env: w.env})
    assert.equal(r.code, 0, r.stderr)
  }

  async function startHost(): Promise<Sshd> {
    await sshd?.stop()
    sshd = await startSshd({
      userCaKeys: [],
      userCaKeysFile: userCaFile,
      revokedKeysFile: krlFile,
      hostKey: {privateText: readFileSync(hostKey, 'utf8'), publicLine: readFileSync(`${hostKey}.pub`, 'utf8').trim()},
      hostCertificate: readFileSync(hostCert, 'utf8').trim(),
    })
    return sshd
  }

  async function login(agent: Agent): Promise<{signer: string}> {
    const token = join(hostDir, 'token')
    writeFileSync(token, await w.gh.mint(), {mode: 0o600})
    const r = await sshca(['login', '--identity-token-file', token, '--json'], {
      env: {...w.env, SSH_AUTH_SOCK: agent.socket},
    })
    assert.equal(r.code, 0, r.stderr)
    const certs = await AgentClient.with({socketPath: agent.socket}, (a) => a.list())
    const newest = certs.filter((c) => c.certificate).pop()!.certificate!
    return {signer: newest.signatureKey.fingerprint()}
  }

  /** ssh into the host with an agent's certificate, verifying the host's certificate against known_hosts. */
  async function sshWith(agent: Agent) {
    return ssh({
      port: sshd!.port,
      agentSocket: agent.socket,
      knownHostsFile: knownHosts,
      user: currentUser(),
      options: ['HostKeyAlgorithms=ssh-ed25519-cert-v01@openssh.com'],
    })
  }

  before(async () => {
    w = await startWorld({keysIntervalMs: 100})
    await w.bootstrap()
    newAgent = await startAgent()
    knownHosts = join(w.env.HOME!, '.ssh', 'known_hosts')
    const cfg = await sshca(['config', '--pattern', '127.0.0.1', '--no-ssh-config'], {env: w.env})
    assert.equal(cfg.code, 0, cfg.stderr)
    // the host: enrolled with a token, its user CA file and KRL from the timer's command, then sshd
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'host', '-f', hostKey])
    const t = await sshca(['ca', 'token', '--host', '127.0.0.1', ...ca(), '--password-file', w.t.passwordFile])
    assert.equal(t.code, 0, t.stderr)
    const enrol = await sshca(
      ['certificate', '--host', '--sign', '--token', t.stdout.trim().split('\n').pop()!, '127.0.0.1', `${hostKey}.pub`],
      {env: w.env},
    )
    assert.equal(enrol.code, 0, enrol.stderr)
    await krlTimer()
    await startHost()
  })
  after(async () => {
    await sshd?.stop()
    await newAgent?.stop()
    await w?.stop()
  })

  it('before: one user CA key, one host CA key, everywhere; a certificate logs in', async () => {
    assert.equal(lines(userCaFile).length, 1)
    assert.equal(caKeysIn(knownHosts).length, 1)
    await login(w.agent)
    const r = await sshWith(w.agent)
    assert.equal(r.code, 0, `${r.stderr}\n${sshd!.log().slice(-1500)}`)
    assert.equal(r.stdout.trim(), 'deployed-by-ci')
  })

  let oldUser: string
  let oldHost: string
  let newUser: string
  let newHost: string

  it('prepare: the next keys are published beside the active ones; hosts and clients pick them up by themselves', async () => {
    const before = await roots()
    ;[oldUser, oldHost] = [fp(before.userKey[0]!), fp(before.hostKey[0]!)]
    const userFileBefore = readFileSync(userCaFile, 'utf8')
    const knownBefore = readFileSync(knownHosts, 'utf8')
    const r = await sshca(['ca', 'rotate', 'prepare', ...ca(), '--password-file', w.t.passwordFile, '--json'])
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.deepEqual(
      doc.changed.map((c: {kind: string; state: string}) => [c.kind, c.state]),
      [
        ['user', 'next'],
        ['host', 'next'],
      ],
    )
    // the running CA follows the manifest on its own
    await waitFor(
      'the CA to publish the next keys',
      async () => (await states('user')) === 'active,next' && (await states('host')) === 'active,next',
      20_000,
    )
    const now = await roots()
    ;[newUser, newHost] = [fp(now.userKey[1]!), fp(now.hostKey[1]!)]
    assert.equal(fp(now.userKey[0]!), oldUser)
    // nothing on the host or the client changed by itself…
    assert.equal(readFileSync(userCaFile, 'utf8'), userFileBefore)
    assert.equal(readFileSync(knownHosts, 'utf8'), knownBefore)
    // …until the host's timer and the person's next login ran
    await krlTimer()
    assert.deepEqual(
      lines(userCaFile).map((l) => PublicKey.parseLine(l).key.fingerprint()),
      [oldUser, newUser],
    )
    const still = await login(w.agent)
    assert.equal(still.signer, oldUser, 'a prepared key does not sign')
    assert.deepEqual(caKeysIn(knownHosts), [oldHost, newHost])
    // the KRL carries a section for every published key
    const krl = await sshca(['krl', '--context', 'test', '--out', krlFile, '--json'], {env: w.env})
    assert.equal(krl.code, 0, krl.stderr)
  })

  it('activate: the new user key signs; during the overlap certificates of both keys log in', async () => {
    const r = await sshca(['ca', 'rotate', 'activate', ...ca(), '--json'])
    assert.equal(r.code, 0, r.stderr)
    await waitFor(
      'the CA to sign with the new keys',
      async () => (await states('user')) === 'active,previous' && fp((await roots()).userKey[0]!) === newUser,
      20_000,
    )
    const fresh = await login(newAgent)
    assert.equal(fresh.signer, newUser)
    // the old agent still holds the certificate signed by the old key
    const oldCerts = await AgentClient.with({socketPath: w.agent.socket}, (a) => a.list())
    assert.ok(oldCerts.some((c) => c.certificate?.signatureKey.fingerprint() === oldUser))
    for (const agent of [w.agent, newAgent]) {
      const s = await sshWith(agent)
      assert.equal(s.code, 0, `${s.stderr}\n${sshd!.log().slice(-1500)}`)
    }
    assert.match(
      sshd!.log(),
      new RegExp(`Accepted certificate ID .* signed by ED25519 CA ${oldUser.replace(/[+/]/g, '.')}`),
    )
    assert.match(
      sshd!.log(),
      new RegExp(`Accepted certificate ID .* signed by ED25519 CA ${newUser.replace(/[+/]/g, '.')}`),
    )
  })

  it("the host's daily renewal moves its certificate onto the new host key at once; ssh verifies it through known_hosts", async () => {
    const {cert: before} = parseCertificateLine(readFileSync(hostCert, 'utf8'))
    assert.equal(before.signatureKey.fingerprint(), oldHost)
    const r = await sshca(['renew', '--context', 'test', hostCert, hostKey, '--json'], {env: w.env})
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.equal(doc.renewed, true)
    assert.match(doc.reason, /rotating out/)
    const {cert: after} = parseCertificateLine(readFileSync(hostCert, 'utf8'))
    assert.equal(after.signatureKey.fingerprint(), newHost)
    await startHost() // the unit reloads sshd after a renewal
    const s = await sshWith(newAgent)
    assert.equal(s.code, 0, `${s.stderr}\n${sshd!.log().slice(-1500)}`)
  })

  it('retire is refused while a certificate of the old user key is valid, and names how many', async () => {
    const r = await sshca(['ca', 'rotate', 'retire', ...ca()])
    assert.equal(r.code, 3, r.stdout + r.stderr)
    assert.match(r.stderr, /ERR_ROTATION_STATE/)
    assert.match(r.stderr, /user certificate\(s\) signed by user-1 are still valid/)
    // the host certificate of the old key was superseded by its renewal: it does not hold retire up
    assert.doesNotMatch(r.stderr, /host certificate\(s\) signed by/)
    assert.equal(await states('user'), 'active,previous')
  })

  it('retire --force: afterwards only the new keys are trusted, on the host and on the client, after their refresh', async () => {
    const keyFiles = () =>
      JSON.parse(readFileSync(join(w.t.init.dir, 'ssh', 'keys.json'), 'utf8')) as Record<
        'user' | 'host',
        {id: string; state: string; ref: {path: string}}[]
      >
    const previous = (['user', 'host'] as const).map((kind) => keyFiles()[kind].find((e) => e.state === 'previous')!)
    for (const p of previous) assert.ok(existsSync(join(w.t.init.dir, p.ref.path)), p.ref.path)
    const r = await sshca(['ca', 'rotate', 'retire', '--force', ...ca(), '--json'])
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.equal(doc.stranded.find((s: {kind: string}) => s.kind === 'user').certificates >= 1, true)
    // the retired keys' private halves are destroyed: listed as retired, their sealed files gone
    assert.deepEqual(
      doc.destroyed,
      previous.map((p, i) => ({kind: i === 0 ? 'user' : 'host', key: p.id, store: 'file', destroyed: true})),
    )
    for (const p of previous) {
      assert.ok(!existsSync(join(w.t.init.dir, p.ref.path)), `${p.ref.path} is removed`)
      assert.equal(keyFiles()[p.id.startsWith('user') ? 'user' : 'host'].find((e) => e.id === p.id)!.state, 'retired')
    }
    await waitFor(
      'the CA to drop the old keys',
      async () => (await states('user')) === 'active' && (await states('host')) === 'active',
      20_000,
    )
    assert.equal(lines(userCaFile).length, 2, 'the host file changes only when its timer runs')
    await krlTimer()
    assert.deepEqual(
      lines(userCaFile).map((l) => PublicKey.parseLine(l).key.fingerprint()),
      [newUser],
    )
    await login(newAgent)
    assert.deepEqual(caKeysIn(knownHosts), [newHost])
    const old = await sshWith(w.agent)
    assert.notEqual(old.code, 0, 'a certificate of the retired key must no longer log in')
    const fresh = await sshWith(newAgent)
    assert.equal(fresh.code, 0, `${fresh.stderr}\n${sshd!.log().slice(-1500)}`)
    // every step is in the audit log
    await waitFor(
      'the rotation events in the audit log',
      () =>
        ['ca_key_prepared', 'ca_key_activated', 'ca_key_retired'].every((e) => w.t.audit().some((l) => l.event === e)),
      20_000,
    )
    const retired = w.t.audit().find((l) => l.event === 'ca_key_retired')!
    assert.equal(retired.forced, true)
  })

  it('config --host puts the user CA key refresh into the hourly unit', async function () {
    const r = await sshca(
      ['config', '--host', '--dry-run', '--sshd-dir', hostDir, '--systemd-dir', join(hostDir, 'units')],
      {env: w.env},
    )
    if (r.code !== 0 && /ERR_UNSAFE_PATH/.test(r.stderr)) this.skip()
    assert.equal(r.code, 0, r.stderr)
    assert.match(
      r.stdout,
      new RegExp(
        `ExecStart=.* krl --context test --out ${krlFile.replace(/[.]/g, '\\.')} --user-ca-keys ${userCaFile.replace(/[.]/g, '\\.')}`,
      ),
    )
  })
})
