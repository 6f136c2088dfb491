/**
 * A worker thread's signature by a key that cannot reach it (a PKCS#11 token's): the main thread signs
 * with the active key the worker names, and with no other (src/ca/workers.ts, signForWorker).
 */
import assert from 'node:assert/strict'
import {SshcaError} from '../../../src/errors.ts'
import {soleKeySet, type CaMaterial} from '../../../src/ca/keys/material.ts'
import {signForWorker} from '../../../src/ca/workers.ts'
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

describe("a worker's signature by the main thread's key", () => {
  let material: CaMaterial
  let user: ReturnType<typeof tokenLike>
  let host: ReturnType<typeof tokenLike>
  beforeEach(async () => {
    user = tokenLike()
    host = tokenLike()
    material = {
      ...(await testMaterial('worker-signing')),
      userCa: soleKeySet(user, 'u2'),
      hostCa: soleKeySet(host, 'h1'),
    }
  })

  it('signs with the active key of the kind the worker names, bytes as they cross threads (a Uint8Array)', async () => {
    const data = Buffer.from('certificate body')
    const sig = await signForWorker(material, ['host', 'h1', new Uint8Array(data)])
    assert.equal(verifySignature(host.publicKey, data, sig).valid, true)
    assert.deepEqual([user.signed, host.signed], [0, 1])
  })

  it('a worker naming a key that is no longer active (a rotation step it has not seen yet) gets ERR_KEY_STORE, nothing signed', async () => {
    // the worker built its certificate around u1, the key it last heard of: another key's signature
    // would make a certificate nobody can verify
    await assert.rejects(
      signForWorker(material, ['user', 'u1', new Uint8Array(8)]),
      (err: unknown) =>
        err instanceof SshcaError &&
        err.code === 'ERR_KEY_STORE' &&
        /u1 is no longer the active one \(u2 is\)/.test(err.message),
    )
    assert.equal(user.signed, 0)
  })

  it('arguments of the wrong kind are a bug, refused before any key signs', async () => {
    for (const args of [['root', 'u2', new Uint8Array(8)], ['user', 2, new Uint8Array(8)], ['user', 'u2', 'body'], []])
      await assert.rejects(signForWorker(material, args), TypeError)
    assert.deepEqual([user.signed, host.signed], [0, 0])
  })
})
