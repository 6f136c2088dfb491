/**
 * A worker thread's signature by a key that cannot reach it (a PKCS#11 token's): the main thread signs
 * with the key the worker names, the one its certificate carries, when that key was active here and is
 * still published, and with no other (src/ca/workers.ts, WorkerSigning).
 */
import assert from 'node:assert/strict'
import {SshcaError} from '../../../src/errors.ts'
import type {CaKeySet, CaMaterial} from '../../../src/ca/keys/material.ts'
import {WorkerSigning} from '../../../src/ca/workers.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner, verifySignature, type Signer} from '../../../src/ssh/signature.ts'
import {testMaterial} from '../../helpers/material.ts'

/** A signer over an in-memory key that counts its signatures and, like a token's, has no keyObject. */
function tokenLike(): Signer & {signed: number} {
  const inner = keySigner(generatePrivateKey('ed25519').keyObject)
  const s = {
    publicKey: inner.publicKey,
    signed: 0,
    async sign(data: Buffer) {
      s.signed++
      return inner.sign(data)
    },
  }
  return s
}

/** A set whose active key is `active` (id `activeId`), publishing `others` beside it (next, previous). */
function keySet(activeId: string, active: Signer, others: Record<string, Signer> = {}): CaKeySet {
  const at = new Date(0).toISOString()
  return {
    active,
    activeId,
    published: [
      {id: activeId, publicKey: active.publicKey, state: 'active', createdAt: at},
      ...Object.entries(others).map(([id, s]) => ({
        id,
        publicKey: s.publicKey,
        state: 'previous' as const,
        createdAt: at,
      })),
    ],
  }
}

const refusal = (re: RegExp) => (err: unknown) =>
  err instanceof SshcaError && err.code === 'ERR_KEY_STORE' && re.test(err.message)

describe("a worker's signature by the main thread's key", () => {
  let base: CaMaterial
  let u1: ReturnType<typeof tokenLike>
  let u2: ReturnType<typeof tokenLike>
  let h1: ReturnType<typeof tokenLike>
  beforeEach(async () => {
    base = await testMaterial('worker-signing')
    u1 = tokenLike()
    u2 = tokenLike()
    h1 = tokenLike()
  })

  it('signs with the active key of the kind the worker names, bytes as they cross threads (a Uint8Array)', async () => {
    const signing = new WorkerSigning({...base, userCa: keySet('u1', u1), hostCa: keySet('h1', h1)})
    const data = Buffer.from('certificate body')
    const sig = await signing.sign(['host', 'h1', new Uint8Array(data)])
    assert.equal(verifySignature(h1.publicKey, data, sig).valid, true)
    assert.deepEqual([u1.signed, h1.signed], [0, 1])
  })

  it('the signature goes back to the worker alone: bytes of their own, not a view of the pool slab (cloned whole to the worker)', async () => {
    const signing = new WorkerSigning({...base, userCa: keySet('u1', u1), hostCa: keySet('h1', h1)})
    const sig = await signing.sign(['user', 'u1', new Uint8Array(64)])
    // what structured clone copies across the threads: the whole ArrayBuffer under the view
    assert.equal(
      sig.buffer.byteLength,
      sig.byteLength,
      `a ${sig.byteLength}-byte signature over ${sig.buffer.byteLength} bytes`,
    )
  })

  it('a worker a rotation step has not reached yet finishes under the key its certificate carries, still published; once retired, it is refused', async () => {
    const signing = new WorkerSigning({...base, userCa: keySet('u1', u1), hostCa: keySet('h1', h1)})
    // ca rotate activate: u2 signs from now on, u1 is the previous key, trusted until it retires
    signing.update({...base, userCa: keySet('u2', u2, {u1}), hostCa: keySet('h1', h1)})
    const data = Buffer.from('built around u1')
    const sig = await signing.sign(['user', 'u1', new Uint8Array(data)])
    assert.equal(
      verifySignature(u1.publicKey, data, sig).valid,
      true,
      "the old key's signature, matching the certificate",
    )
    await signing.sign(['user', 'u2', new Uint8Array(8)])
    assert.deepEqual([u1.signed, u2.signed], [1, 1])
    // ca rotate retire: u1 is published no more
    signing.update({...base, userCa: keySet('u2', u2), hostCa: keySet('h1', h1)})
    await assert.rejects(
      signing.sign(['user', 'u1', new Uint8Array(8)]),
      refusal(/key u1, which is not one this CA signs with \(u2 is active\)/),
    )
    assert.equal(u1.signed, 1)
  })

  it('never a key that was not active here, nor one of the other kind: a published next key, a host key asked for as a user key', async () => {
    const next = tokenLike()
    const signing = new WorkerSigning({...base, userCa: keySet('u1', u1, {u2: next}), hostCa: keySet('h1', h1)})
    await assert.rejects(signing.sign(['user', 'u2', new Uint8Array(8)]), refusal(/key u2/))
    await assert.rejects(signing.sign(['user', 'h1', new Uint8Array(8)]), refusal(/user CA key h1/))
    await assert.rejects(signing.sign(['host', 'u1', new Uint8Array(8)]), refusal(/host CA key u1/))
    assert.deepEqual([u1.signed, next.signed, h1.signed], [0, 0, 0])
  })

  it('arguments of the wrong kind are a bug, refused before any key signs', async () => {
    const signing = new WorkerSigning({...base, userCa: keySet('u1', u1), hostCa: keySet('h1', h1)})
    for (const args of [['root', 'u1', new Uint8Array(8)], ['user', 1, new Uint8Array(8)], ['user', 'u1', 'body'], []])
      await assert.rejects(signing.sign(args), TypeError)
    assert.deepEqual([u1.signed, h1.signed], [0, 0])
  })
})
