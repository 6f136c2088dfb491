/** src/ssh/agent.ts against a real OpenSSH ssh-agent, checked with ssh-add as the oracle. */
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {AgentClient} from '../../src/ssh/agent.ts'
import {certificateLine, signCertificate, type Certificate} from '../../src/ssh/cert.ts'
import {generatePrivateKey, type KeyKind, type PrivateKey} from '../../src/ssh/private-key.ts'
import {keySigner, verifySignature} from '../../src/ssh/signature.ts'
import {sshAdd, startAgent, type Agent} from '../helpers/openssh.ts'
import {tempDir} from '../helpers/tmp.ts'

// made in before(), not at import: Stryker loads this file once and re-runs its tests per mutant
let ca: PrivateKey

async function issue(key: PrivateKey, keyId: string, seconds = 3600): Promise<Certificate> {
  const now = BigInt(Math.floor(Date.now() / 1000))
  return signCertificate(
    {
      type: 'user',
      publicKey: key.publicKey,
      serial: 1n,
      keyId,
      principals: ['alice'],
      validAfter: now - 60n,
      validBefore: now + BigInt(seconds),
      extensions: {'permit-pty': true},
    },
    keySigner(ca.keyObject),
  )
}

describe('ssh-agent client against OpenSSH ssh-agent', function () {
  this.timeout(60_000)
  let agent: Agent
  let dir: string
  before(() => {
    ca = generatePrivateKey('ed25519')
    dir = tempDir()
  })

  beforeEach(async () => {
    agent = await startAgent()
  })
  afterEach(async () => {
    await agent.stop()
  })

  for (const kind of ['ed25519', 'ecdsa', 'ecdsa-p384', 'ecdsa-p521', 'rsa'] as KeyKind[]) {
    it(`${kind}: adds key + certificate; ssh-add -L shows it and ssh-add -T proves the agent signs with it`, async () => {
      const key = generatePrivateKey(kind, 2048)
      const cert = await issue(key, `kid-${kind}`)
      await AgentClient.with({socketPath: agent.socket}, (a) =>
        a.addCertificate(key, cert, {lifetimeSeconds: 600, comment: 'sshca:test'}),
      )
      const listed = await sshAdd(agent, ['-L'])
      assert.equal(listed.code, 0, listed.stderr)
      assert.equal(listed.stdout.trim(), certificateLine(cert, 'sshca:test'))
      const certFile = join(dir, `${kind}-cert.pub`)
      writeFileSync(certFile, certificateLine(cert) + '\n')
      const t = await sshAdd(agent, ['-T', certFile])
      assert.equal(t.code, 0, `ssh-add -T failed: ${t.stderr}`)
      // and our own sign request produces a signature the certified key verifies
      const data = Buffer.from('challenge')
      const sig = await AgentClient.with({socketPath: agent.socket}, (a) => a.sign(cert.blob, data, 4))
      assert.equal(verifySignature(key.publicKey, data, sig).valid, true)
    })
  }

  it('lists certificates with their parsed fields, and plain keys apart', async () => {
    const key = generatePrivateKey('ed25519')
    const plain = generatePrivateKey('ecdsa')
    const cert = await issue(key, 'listed')
    await AgentClient.with({socketPath: agent.socket}, async (a) => {
      await a.addCertificate(key, cert)
      await a.addKey(plain, {comment: 'plain key'})
      const ids = await a.list()
      assert.equal(ids.length, 2)
      const c = ids.find((i) => i.certificate)!
      assert.equal(c.certificate!.keyId, 'listed')
      assert.deepEqual(c.certificate!.principals, ['alice'])
      const p = ids.find((i) => i.publicKey)!
      assert.ok(p.publicKey!.equals(plain.publicKey))
      assert.equal(p.comment, 'plain key')
    })
    const l = await sshAdd(agent, ['-l'])
    assert.match(l.stdout, /ED25519-CERT/)
    assert.match(l.stdout, /plain key \(ECDSA\)/)
  })

  it('the agent forgets the certificate when its lifetime ends', async () => {
    const key = generatePrivateKey('ed25519')
    // seen on the same connection right after adding it (a process spawned later could arrive after
    // the lifetime on a loaded machine); then wait for the agent to drop it
    await AgentClient.with({socketPath: agent.socket}, async (a) => {
      await a.addCertificate(key, await issue(key, 'short'), {lifetimeSeconds: 3})
      assert.deepEqual(
        (await a.list()).map((i) => i.certificate?.keyId),
        ['short'],
      )
    })
    const {waitFor} = await import('../helpers/proc.ts')
    await waitFor('the agent to forget the certificate', async () => (await sshAdd(agent, ['-L'])).code === 1, 30_000)
    const after = await sshAdd(agent, ['-L'])
    assert.match(after.stdout + after.stderr, /no identities/)
  })

  it('removes one identity, then all', async () => {
    const k1 = generatePrivateKey('ed25519')
    const k2 = generatePrivateKey('ed25519')
    const c1 = await issue(k1, 'one')
    await AgentClient.with({socketPath: agent.socket}, async (a) => {
      await a.addCertificate(k1, c1)
      await a.addCertificate(k2, await issue(k2, 'two'))
      await a.remove(c1.blob)
      assert.deepEqual(
        (await a.list()).map((i) => i.certificate?.keyId),
        ['two'],
      )
      await assert.rejects(a.remove(c1.blob), {code: 'ERR_AGENT_FAILURE'})
      await a.removeAll()
      assert.deepEqual(await a.list(), [])
    })
  })

  it('applies the confirm constraint: a sign needing confirmation is refused when nobody can confirm', async () => {
    // the test agent runs with SSH_ASKPASS=/bin/false, so every confirmation is declined
    const key = generatePrivateKey('ed25519')
    const cert = await issue(key, 'confirm')
    await AgentClient.with({socketPath: agent.socket}, async (a) => {
      await a.addCertificate(key, cert, {confirm: true, lifetimeSeconds: 60})
      await assert.rejects(a.sign(cert.blob, Buffer.from('x')), {code: 'ERR_AGENT_FAILURE', message: /refused to sign/})
    })
    const k2 = generatePrivateKey('ed25519')
    const c2 = await issue(k2, 'no-confirm')
    await AgentClient.with({socketPath: agent.socket}, async (a) => {
      await a.addCertificate(k2, c2)
      assert.ok((await a.sign(c2.blob, Buffer.from('x'))).length > 0)
    })
  })

  it('refuses to pair a certificate with a key it does not certify', async () => {
    const key = generatePrivateKey('ed25519')
    const other = generatePrivateKey('ed25519')
    await AgentClient.with({socketPath: agent.socket}, async (a) => {
      await assert.rejects(a.addCertificate(other, await issue(key, 'x')), TypeError)
    })
  })

  it('ERR_AGENT_UNAVAILABLE when SSH_AUTH_SOCK is unset or the socket is dead, saying how to start one', async () => {
    const saved = process.env.SSH_AUTH_SOCK
    delete process.env.SSH_AUTH_SOCK
    try {
      await assert.rejects(AgentClient.connect(), {
        code: 'ERR_AGENT_UNAVAILABLE',
        message: /SSH_AUTH_SOCK is not set/,
        hint: /ssh-agent -s/,
      })
    } finally {
      if (saved !== undefined) process.env.SSH_AUTH_SOCK = saved
    }
    await assert.rejects(AgentClient.connect({socketPath: join(dir, 'missing.sock')}), {
      code: 'ERR_AGENT_UNAVAILABLE',
      message: /does not exist/,
    })
    const stopped = await startAgent()
    await stopped.stop()
    await assert.rejects(AgentClient.connect({socketPath: stopped.socket}), {code: 'ERR_AGENT_UNAVAILABLE'})
  })

  it('ERR_AGENT_TIMEOUT when something on the socket never answers, ERR_AGENT_PROTOCOL on garbage', async () => {
    const silent = join(dir, 'silent.sock')
    const server = createServer((s) => {
      s.on('data', () => {
        if (silentMode === 'garbage') s.write(Buffer.from('ffffffff00', 'hex'))
      })
    })
    let silentMode: 'silent' | 'garbage' = 'silent'
    await new Promise<void>((r) => server.listen(silent, r))
    try {
      await assert.rejects(
        AgentClient.with({socketPath: silent, timeoutMs: 200}, (a) => a.list()),
        {code: 'ERR_AGENT_TIMEOUT'},
      )
      silentMode = 'garbage'
      await assert.rejects(
        AgentClient.with({socketPath: silent, timeoutMs: 30_000}, (a) => a.list()),
        {code: 'ERR_AGENT_PROTOCOL'},
      )
    } finally {
      server.close()
    }
  })
})
