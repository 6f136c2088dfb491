/**
 * Agent hygiene and what an agent can hold, against the in-memory agent in each of the ways real
 * agents behave (OpenSSH's, gpg-agent's dropped certificates, refused and ignored lifetimes).
 */
import assert from 'node:assert/strict'
import {
  addAndVerify,
  expiredOf,
  probeLifetime,
  PROBE_WINDOW_MS,
  removeAll,
  signedByOneOf,
  supersededBy,
  userCaKeys,
} from '../../../src/client/local/agent-hygiene.ts'
import {signCertificate, type Certificate} from '../../../src/ssh/cert.ts'
import {generatePrivateKey, type PrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {MemoryAgent} from '../../helpers/memory-agent.ts'

const ca = generatePrivateKey('ed25519')
const otherCa = generatePrivateKey('ed25519')
const cas = new Set([ca.publicKey.blob.toString('base64')])
const NOW = 1_900_000_000n

async function cert(o: {
  by?: PrivateKey
  keyId?: string
  principals?: string[]
  from?: bigint
  until: bigint
  serial?: bigint
}): Promise<{key: PrivateKey; cert: Certificate}> {
  const key = generatePrivateKey('ed25519')
  return {
    key,
    cert: await signCertificate(
      {
        type: 'user',
        publicKey: key.publicKey,
        serial: o.serial ?? 1n,
        keyId: o.keyId ?? 'alice',
        principals: o.principals ?? ['alice'],
        validAfter: o.from ?? NOW - 3600n,
        validBefore: o.until,
      },
      keySigner((o.by ?? ca).keyObject),
    ),
  }
}

describe('agent hygiene', () => {
  it("userCaKeys: the CA keys of every context given, compared whole; a certificate of another CA is no context's", async () => {
    const third = generatePrivateKey('ecdsa')
    const set = userCaKeys(
      {userCaKeys: [ca.publicKey.toLine('prod user CA')]},
      {userCaKeys: [third.publicKey.toLine(), ca.publicKey.toLine('the same key, another comment')]},
    )
    assert.equal(set.size, 2)
    const mine = await cert({until: NOW + 600n})
    const theirs = await cert({by: otherCa, until: NOW + 600n})
    assert.equal(signedByOneOf(mine.cert, set), true)
    assert.equal(signedByOneOf(theirs.cert, set), false)
    assert.equal(signedByOneOf(mine.cert, userCaKeys({userCaKeys: []})), false)
  })

  it("finds this context's expired certificates, never another CA's or plain keys", async () => {
    const client = new MemoryAgent().client()
    const expired = await cert({until: NOW - 1n, serial: 1n})
    const current = await cert({until: NOW + 600n, serial: 2n})
    const foreignExpired = await cert({by: otherCa, until: NOW - 100n, serial: 3n})
    for (const c of [expired, current, foreignExpired]) await client.addCertificate(c.key, c.cert)
    await client.addKey(generatePrivateKey('ed25519'))
    const found = expiredOf(await client.list(), cas, NOW)
    assert.deepEqual(
      found.map((i) => i.certificate.serial),
      [1n],
    )
    const removed = await removeAll(client, found, 'expired')
    assert.deepEqual(removed, [{keyId: 'alice', serial: '1', principals: ['alice'], why: 'expired'}])
    assert.deepEqual(
      (await client.list()).map((i) => i.certificate?.serial ?? 'key'),
      [2n, 3n, 'key'],
    )
    client.close()
  })

  it('superseded: same CA, key ID and principals, not ending later; a different identity or a longer one stays', async () => {
    const fresh = await cert({until: NOW + 3600n, serial: 10n})
    const older = await cert({until: NOW + 600n, serial: 11n})
    const otherId = await cert({keyId: 'gha:acme/app', principals: ['deploy'], until: NOW + 600n, serial: 12n})
    const longer = await cert({until: NOW + 7200n, serial: 13n})
    const foreign = await cert({by: otherCa, until: NOW + 600n, serial: 14n})
    const client = new MemoryAgent().client()
    for (const c of [fresh, older, otherId, longer, foreign]) await client.addCertificate(c.key, c.cert)
    assert.deepEqual(
      supersededBy(fresh.cert, await client.list(), cas).map((i) => i.certificate.serial),
      [11n],
    )
    client.close()
  })

  it('a removal the agent refuses (already gone) is not an error', async () => {
    const client = new MemoryAgent().client()
    const c = await cert({until: NOW - 1n})
    await client.addCertificate(c.key, c.cert)
    const ids = expiredOf(await client.list(), cas, NOW)
    await client.removeAll()
    assert.deepEqual(await removeAll(client, ids, 'expired'), [])
    client.close()
  })
})

describe('what the agent can hold', () => {
  const fresh = (): Promise<{key: PrivateKey; cert: Certificate}> => cert({until: NOW + 600n})

  it('OpenSSH-like: added, read back as a certificate', async () => {
    const client = new MemoryAgent().client()
    const c = await fresh()
    const r = await addAndVerify(client, c.key, c.cert, {lifetimeSeconds: 600, comment: 'sshca:t:x'})
    assert.equal(r.ok, true)
    // what it read back: the certificate with its comment, the agent's only identity
    assert.deepEqual(r.ok && r.held.map((id) => [id.blob.equals(c.cert.blob), id.comment]), [[true, 'sshca:t:x']])
    client.close()
  })

  it('gpg-agent-like (keeps the key, drops the certificate): no-certificates, and the orphan key is removed', async () => {
    const agent = new MemoryAgent({certificates: 'drop'})
    const client = agent.client()
    const c = await fresh()
    const r = await addAndVerify(client, c.key, c.cert, {lifetimeSeconds: 600, comment: 'sshca:t:x'})
    assert.equal(r.ok, false)
    assert.equal(!r.ok && r.problem, 'no-certificates')
    assert.deepEqual(await client.list(), [])
    client.close()
  })

  it('refuses certificates outright: no-certificates (plain keys with a lifetime are accepted), and nothing is left behind', async () => {
    const client = new MemoryAgent({certificates: 'refuse'}).client()
    const c = await fresh()
    const r = await addAndVerify(client, c.key, c.cert, {lifetimeSeconds: 600, comment: 'x'})
    assert.equal(!r.ok && r.problem, 'no-certificates')
    assert.deepEqual(await client.list(), [])
    client.close()
  })

  it('refuses lifetimes (some Windows agents): refused-lifetime; the key is never added without one', async () => {
    const agent = new MemoryAgent({lifetimes: 'refuse'})
    const client = agent.client()
    const c = await fresh()
    const r = await addAndVerify(client, c.key, c.cert, {lifetimeSeconds: 600, comment: 'x'})
    assert.equal(!r.ok && r.problem, 'refused-lifetime')
    assert.deepEqual(await client.list(), [])
    client.close()
  })

  it('the lifetime probe: honored, ignored, or unknown when too little time passed; the probe key never stays', async () => {
    for (const [lifetimes, after, want] of [
      ['honor', PROBE_WINDOW_MS, 'honored'],
      ['ignore', PROBE_WINDOW_MS, 'ignored'],
      ['ignore', 500, 'unknown'],
      ['refuse', PROBE_WINDOW_MS, 'unknown'],
    ] as const) {
      let t = 5_000_000
      const client = new MemoryAgent({lifetimes, clock: () => t}).client()
      const probe = await probeLifetime(client, () => t)
      t += after
      assert.equal(await probe.finish(), want, `${lifetimes} after ${after} ms`)
      assert.deepEqual(await client.list(), [], `${lifetimes}: nothing left behind`)
      client.close()
    }
  })
})
