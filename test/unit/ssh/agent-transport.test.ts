/**
 * The agent client's transport: any duplex stream (an in-memory agent here), and where it looks for
 * the agent on each platform (SSH_AUTH_SOCK, Windows' named pipe, macOS's launchd socket) decided by
 * parameters, so every platform's path runs on this one.
 */
import assert from 'node:assert/strict'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {AgentClient, resolveAgentSocket, WINDOWS_AGENT_PIPE} from '../../../src/ssh/agent.ts'
import {signCertificate} from '../../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner, verifySignature} from '../../../src/ssh/signature.ts'
import {rejectsCode} from '../../helpers/assert.ts'
import {MemoryAgent} from '../../helpers/memory-agent.ts'
import {tempDir} from '../../helpers/tmp.ts'

describe('ssh-agent transport', () => {
  describe('resolveAgentSocket', () => {
    it('SSH_AUTH_SOCK first, on every platform', () => {
      for (const platform of ['linux', 'darwin', 'win32'] as const) {
        assert.deepEqual(
          resolveAgentSocket({env: {SSH_AUTH_SOCK: '/tmp/a.sock'}, platform, launchdSocket: () => '/nope'}),
          {path: '/tmp/a.sock', source: 'SSH_AUTH_SOCK'},
        )
      }
    })

    it("Windows without SSH_AUTH_SOCK: the OpenSSH agent's named pipe", () => {
      assert.deepEqual(resolveAgentSocket({env: {}, platform: 'win32'}), {
        path: '\\\\.\\pipe\\openssh-ssh-agent',
        source: 'windows-pipe',
      })
      assert.equal(WINDOWS_AGENT_PIPE, String.raw`\\.\pipe\openssh-ssh-agent`)
    })

    it("macOS without SSH_AUTH_SOCK: launchd's socket for the session, or none", () => {
      const sock = '/private/tmp/com.apple.launchd.AbC123/Listeners'
      assert.deepEqual(resolveAgentSocket({env: {}, platform: 'darwin', launchdSocket: () => sock}), {
        path: sock,
        source: 'launchd',
      })
      assert.equal(resolveAgentSocket({env: {}, platform: 'darwin', launchdSocket: () => undefined}), undefined)
    })

    it('elsewhere without SSH_AUTH_SOCK: none, and connect says how to start one', async () => {
      assert.equal(resolveAgentSocket({env: {SSH_AUTH_SOCK: ''}, platform: 'linux'}), undefined)
      await rejectsCode(
        AgentClient.connect({locate: {env: {}, platform: 'linux'}}),
        'ERR_AGENT_UNAVAILABLE',
        {},
        /SSH_AUTH_SOCK is not set/,
      )
    })

    it('connect() follows the resolved path (a launchd socket here) to a listening agent', async () => {
      const agent = new MemoryAgent()
      const path = join(tempDir('sshca-launchd-'), 'Listeners')
      const server = createServer((s) => agent.serve(s))
      await new Promise<void>((r) => server.listen(path, r))
      try {
        const key = generatePrivateKey('ed25519')
        await AgentClient.with({locate: {env: {}, platform: 'darwin', launchdSocket: () => path}}, async (a) => {
          assert.equal(a.socketPath, path)
          await a.addKey(key, {comment: 'via launchd'})
          assert.deepEqual(
            (await a.list()).map((i) => i.comment),
            ['via launchd'],
          )
        })
      } finally {
        server.close()
      }
    })

    it('the named pipe that is not there: ERR_AGENT_UNAVAILABLE with the Windows hint', async () => {
      await rejectsCode(
        AgentClient.connect({locate: {env: {}, platform: 'win32'}, timeoutMs: 2000}),
        'ERR_AGENT_UNAVAILABLE',
        {},
        /openssh-ssh-agent/,
      )
    })
  })

  describe('the protocol over an in-memory stream', () => {
    // made in before(): a describe body that throws (a mutant in the key code) is a crash to Stryker
    let ca: ReturnType<typeof generatePrivateKey>
    before(() => {
      ca = generatePrivateKey('ed25519')
    })
    const now = BigInt(Math.floor(Date.now() / 1000))

    it('adds a certificate with a lifetime, lists it as a certificate, signs with it, removes it', async () => {
      let t = 1_000_000
      const agent = new MemoryAgent({clock: () => t})
      const client = agent.client()
      const key = generatePrivateKey('ed25519')
      const cert = await signCertificate(
        {
          type: 'user',
          publicKey: key.publicKey,
          serial: 1n,
          keyId: 'k',
          principals: ['p'],
          validAfter: now - 10n,
          validBefore: now + 60n,
        },
        keySigner(ca.keyObject),
      )
      await client.addCertificate(key, cert, {lifetimeSeconds: 60, comment: 'c'})
      const [id] = await client.list()
      assert.ok(id?.certificate)
      assert.equal(id.certificate.serial, 1n)
      const sig = await client.sign(id.blob, Buffer.from('data'))
      assert.equal(verifySignature(key.publicKey, Buffer.from('data'), sig).valid, true)
      t += 61_000
      assert.deepEqual(await client.list(), [], 'the lifetime ended')
      await client.addKey(key)
      await client.remove(key.publicKey.blob)
      assert.deepEqual(await client.list(), [])
      client.close()
    })

    it('an agent that drops certificates (gpg-agent) lists the plain key', async () => {
      const agent = new MemoryAgent({certificates: 'drop'})
      const client = agent.client()
      const key = generatePrivateKey('ed25519')
      const cert = await signCertificate(
        {
          type: 'user',
          publicKey: key.publicKey,
          serial: 2n,
          keyId: 'k',
          principals: ['p'],
          validAfter: now - 10n,
          validBefore: now + 60n,
        },
        keySigner(ca.keyObject),
      )
      await client.addCertificate(key, cert, {lifetimeSeconds: 60})
      const [id] = await client.list()
      assert.equal(id?.certificate, undefined)
      assert.ok(id?.publicKey?.equals(key.publicKey))
      client.close()
    })

    it('an agent that refuses constraints answers FAILURE (ERR_AGENT_FAILURE)', async () => {
      const client = new MemoryAgent({lifetimes: 'refuse'}).client()
      await rejectsCode(client.addKey(generatePrivateKey('ed25519'), {lifetimeSeconds: 5}), 'ERR_AGENT_FAILURE')
      await client.addKey(generatePrivateKey('ed25519'))
      assert.equal((await client.list()).length, 1)
      client.close()
    })
  })
})
