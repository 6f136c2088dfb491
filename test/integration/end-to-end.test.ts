/**
 * The whole path a new engineer takes, with real parts only: bootstrap → config (known_hosts) →
 * login (browser flow over loopback) → ssh into a loopback sshd that trusts the user CA and presents
 * a host certificate, with StrictHostKeyChecking=yes and no other known_hosts entry.
 */
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {loadMaterial} from '../../src/ca/keys/material.ts'
import {driveDevSignIn} from '../../src/demo/idp-driver.ts'
import {certificateLine, signCertificate} from '../../src/ssh/cert.ts'
import {formatOpenSshPrivateKey, generatePrivateKey} from '../../src/ssh/private-key.ts'
import {PASSWORD} from '../helpers/ca.ts'
import {sshca} from '../helpers/cli.ts'
import {currentUser, ssh, startSshd, type Sshd} from '../helpers/openssh.ts'
import {spawnSshca, startWorld, type World} from '../helpers/world.ts'

describe('end to end: bootstrap → config → login → ssh', function () {
  this.timeout(120_000)
  let w: World
  let sshd: Sshd
  before(async () => {
    w = await startWorld()
    // a host certificate for the test sshd, signed by the CA's host key
    const m = await loadMaterial(w.t.init.dir, PASSWORD, ['127.0.0.1'])
    const hostKey = generatePrivateKey('ed25519')
    const now = BigInt(Math.floor(Date.now() / 1000))
    const hostCert = await signCertificate(
      {
        type: 'host',
        publicKey: hostKey.publicKey,
        serial: 1n,
        keyId: 'e2e-host',
        principals: ['127.0.0.1'],
        validAfter: now - 60n,
        validBefore: now + 3600n,
      },
      m.hostCa.active,
    )
    sshd = await startSshd({
      userCaKeys: readFileSync(join(w.t.init.dir, 'ssh', 'ssh_user_ca.pub'), 'utf8')
        .trim()
        .split('\n'),
      hostKey: {privateText: formatOpenSshPrivateKey(hostKey), publicLine: hostKey.publicKey.toLine()},
      hostCertificate: certificateLine(hostCert),
    })
  })
  after(async () => {
    await sshd?.stop()
    await w?.stop()
  })

  it('an engineer gets in with nothing but the CA URL, its fingerprint and an SSO sign-in', async () => {
    const env = w.env
    const boot = await sshca(
      ['bootstrap', '--ca-url', w.t.url, '--fingerprint', w.t.init.rootFingerprint, '--context', 'acme'],
      {env},
    )
    assert.equal(boot.code, 0, boot.stderr)
    const cfg = await sshca(['config', '--pattern', '127.0.0.1'], {env})
    assert.equal(cfg.code, 0, cfg.stderr)
    const knownHosts = join(env.HOME!, '.ssh', 'known_hosts')
    assert.match(readFileSync(knownHosts, 'utf8'), /^# >>> sshca acme[\s\S]*@cert-authority 127\.0\.0\.1 ssh-ed25519 /)

    const login = spawnSshca(['login'], env)
    const [url] = await login.waitFor(/^http:\/\/127\.0\.0\.1:\d+\/auth\?\S+$/m)
    await driveDevSignIn(url, {login: 'grace@example.com'})
    const done = await login.exit()
    assert.equal(done.code, 0, done.stderr)

    const r = await ssh({
      port: sshd.port,
      agentSocket: w.agent.socket,
      knownHostsFile: knownHosts,
      user: currentUser(),
      options: ['HostKeyAlgorithms=ssh-ed25519-cert-v01@openssh.com'],
      command: 'echo hello from $(id -un)',
    })
    assert.equal(r.code, 0, `${r.stderr}\n${sshd.log().slice(-1500)}`)
    assert.equal(r.stdout.trim(), `hello from ${currentUser()}`)
    assert.match(sshd.log(), /Accepted certificate ID "grace@example\.com"/)
  })
})
