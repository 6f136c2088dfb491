/**
 * The agent client against a scripted agent on a Unix socket (regressions from test/fuzz/agent.test.ts):
 * a message the client did not ask for must not be taken as the answer to its next request.
 */
import assert from 'node:assert/strict'
import {createServer, type Server, type Socket} from 'node:net'
import {join} from 'node:path'
import {AgentClient} from '../../../src/ssh/agent.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {SshWriter} from '../../../src/ssh/wire.ts'
import {rejectsCode} from '../../helpers/assert.ts'
import {tempDir} from '../../helpers/tmp.ts'

const frame = (payload: Buffer): Buffer => Buffer.concat([new SshWriter().u32(payload.length).toBuffer(), payload])
const identities = (...blobs: Buffer[]): Buffer => {
  const w = new SshWriter().u8(12).u32(blobs.length)
  for (const b of blobs) w.string(b).string('c')
  return frame(w.toBuffer())
}

const sockets: Socket[] = []

/** An agent that answers the k-th request with replies[k] (bytes as given, maybe more than one message). */
async function scriptedAgent(replies: Buffer[]): Promise<{path: string; server: Server; connection: Promise<Socket>}> {
  const path = join(tempDir('sshca-agent-test-'), 'agent.sock')
  let connected: (s: Socket) => void = () => undefined
  const connection = new Promise<Socket>((resolve) => (connected = resolve))
  const server = createServer((sock: Socket) => {
    sockets.push(sock)
    connected(sock)
    let k = 0
    sock.on('error', () => undefined)
    sock.on('data', () => {
      const r = replies[k++]
      if (r) sock.write(r)
    })
  })
  await new Promise<void>((resolve) => server.listen(path, resolve))
  return {path, server, connection}
}

describe('agent client: one request, one reply', () => {
  // made in before(): a describe body that throws (a mutant in the key code) is a crash to Stryker
  let key: ReturnType<typeof generatePrivateKey>
  before(() => {
    key = generatePrivateKey('ed25519')
  })
  const servers: Server[] = []
  after(() => {
    for (const s of sockets) s.destroy()
    for (const s of servers) s.close()
  })

  it('an unsolicited message behind a reply is not the answer to the next request', async () => {
    // reply to request 1: an empty list, then a second list nobody asked for
    const a = await scriptedAgent([Buffer.concat([identities(), identities(key.publicKey.blob)]), identities()])
    servers.push(a.server)
    await AgentClient.with({socketPath: a.path, timeoutMs: 2000}, async (agent) => {
      assert.deepEqual(await agent.list(), [])
      // before the fix this returned the stale, unsolicited list holding the key
      await rejectsCode(agent.list(), 'ERR_AGENT_PROTOCOL', {}, /nobody asked for/)
    })
  })

  it('bytes arriving between requests end the connection instead of answering the next one', async () => {
    const a = await scriptedAgent([identities(), identities(key.publicKey.blob)])
    servers.push(a.server)
    const agent = await AgentClient.connect({socketPath: a.path, timeoutMs: 2000})
    try {
      assert.deepEqual(await agent.list(), [])
      // the agent speaks up on its own; the client hangs up on it
      const sock = await a.connection
      const closed = new Promise((resolve) => sock.once('close', resolve))
      sock.write(identities(key.publicKey.blob))
      const noticed = new Promise((_, reject) =>
        setTimeout(
          () => reject(new Error('the client kept talking to an agent that sent unsolicited bytes')),
          5000,
        ).unref(),
      )
      await Promise.race([closed, noticed])
      await rejectsCode(agent.list(), 'ERR_AGENT_PROTOCOL', {}, /nobody asked for/)
    } finally {
      agent.close()
    }
  })
})
