/**
 * Certificates from src/ssh, loaded through our agent client, against a real OpenSSH sshd on
 * 127.0.0.1: logins, force-command, source-address, and host certificates via @cert-authority.
 */
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {AgentClient} from '../../src/ssh/agent.ts'
import {certificateLine, signCertificate, type CertOptions} from '../../src/ssh/cert.ts'
import {formatOpenSshPrivateKey, generatePrivateKey, type PrivateKey} from '../../src/ssh/private-key.ts'
import {keySigner} from '../../src/ssh/signature.ts'
import {currentUser, ssh, startAgent, startSshd, type Agent, type Sshd} from '../helpers/openssh.ts'
import {tempDir} from '../helpers/tmp.ts'

// made in before(), not at import: Stryker loads this file once and re-runs its tests per mutant
let userCa: PrivateKey
let hostCa: PrivateKey
const user = currentUser()
const now = (): bigint => BigInt(Math.floor(Date.now() / 1000))

async function loadUserCert(agent: Agent, principals: string[], critical: CertOptions = {}): Promise<void> {
  const key = generatePrivateKey('ed25519')
  const cert = await signCertificate(
    {
      type: 'user',
      publicKey: key.publicKey,
      serial: 7n,
      keyId: 'test',
      principals,
      validAfter: now() - 60n,
      validBefore: now() + 600n,
      criticalOptions: critical,
      extensions: {'permit-pty': true},
    },
    keySigner(userCa.keyObject),
  )
  await AgentClient.with({socketPath: agent.socket}, async (a) => {
    await a.removeAll()
    await a.addCertificate(key, cert, {lifetimeSeconds: 600})
  })
}

describe('certificates against a real sshd', function () {
  this.timeout(60_000)
  let sshd: Sshd
  let agent: Agent
  let dir: string
  let hostKey: PrivateKey

  before(async () => {
    userCa = generatePrivateKey('ed25519')
    hostCa = generatePrivateKey('ecdsa')
    dir = tempDir()
    hostKey = generatePrivateKey('ed25519')
    const hostCert = await signCertificate(
      {
        type: 'host',
        publicKey: hostKey.publicKey,
        serial: 99n,
        keyId: 'test-host',
        principals: ['127.0.0.1', 'test-host'],
        validAfter: now() - 60n,
        validBefore: now() + 3600n,
      },
      keySigner(hostCa.keyObject),
    )
    sshd = await startSshd({
      userCaKeys: [userCa.publicKey.toLine('user-ca')],
      hostKey: {privateText: formatOpenSshPrivateKey(hostKey), publicLine: hostKey.publicKey.toLine()},
      hostCertificate: certificateLine(hostCert),
    })
    agent = await startAgent()
  })
  after(async () => {
    await agent?.stop()
    await sshd?.stop()
  })

  it('accepts a login with a user certificate whose principal is the login name', async () => {
    await loadUserCert(agent, [user])
    const r = await ssh({port: sshd.port, agentSocket: agent.socket, command: 'echo logged-in-as-$(id -un)'})
    assert.equal(r.code, 0, r.stderr + sshd.log().slice(-2000))
    assert.equal(r.stdout.trim(), `logged-in-as-${user}`)
  })

  it('refuses a certificate for another principal', async () => {
    await loadUserCert(agent, ['someone-else'])
    const r = await ssh({port: sshd.port, agentSocket: agent.socket})
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /Permission denied/)
  })

  it('runs only the force-command, whatever the client asks for', async () => {
    await loadUserCert(agent, [user], {'force-command': 'echo forced-command-ran'})
    const r = await ssh({port: sshd.port, agentSocket: agent.socket, command: 'echo client-command-ran'})
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), 'forced-command-ran')
  })

  it('refuses a certificate whose source-address does not include the client', async () => {
    await loadUserCert(agent, [user], {'source-address': '10.0.0.0/8'})
    const r = await ssh({port: sshd.port, agentSocket: agent.socket})
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /Permission denied/)
    assert.match(sshd.log(), /not from a permitted source address \(127\.0\.0\.1\)/)
    await loadUserCert(agent, [user], {'source-address': '127.0.0.1/32,10.0.0.0/8'})
    const ok = await ssh({port: sshd.port, agentSocket: agent.socket})
    assert.equal(ok.code, 0, ok.stderr)
  })

  it('verifies the host certificate through an @cert-authority known_hosts line with StrictHostKeyChecking=yes', async () => {
    await loadUserCert(agent, [user])
    const known = join(dir, 'known_hosts')
    writeFileSync(known, `@cert-authority 127.0.0.1,test-host ${hostCa.publicKey.toLine()}\n`)
    const r = await ssh({
      port: sshd.port,
      agentSocket: agent.socket,
      knownHostsFile: known,
      options: ['HostKeyAlgorithms=ssh-ed25519-cert-v01@openssh.com'],
      command: 'echo host-verified',
    })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), 'host-verified')

    // the same host, but known_hosts trusts another CA: strict checking refuses to connect
    const rogue = generatePrivateKey('ed25519')
    writeFileSync(known, `@cert-authority 127.0.0.1 ${rogue.publicKey.toLine()}\n`)
    const refused = await ssh({
      port: sshd.port,
      agentSocket: agent.socket,
      knownHostsFile: known,
      options: ['HostKeyAlgorithms=ssh-ed25519-cert-v01@openssh.com'],
      command: 'echo should-not-run',
    })
    assert.notEqual(refused.code, 0)
    assert.doesNotMatch(refused.stdout, /should-not-run/)
    assert.match(refused.stderr, /Host key verification failed|No ED25519-CERT host key is known/)
  })
})
