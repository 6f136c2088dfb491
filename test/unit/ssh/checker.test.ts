import assert from 'node:assert/strict'
import {signCertificate} from '../../../src/ssh/cert.ts'
import {checkCertificate} from '../../../src/ssh/checker.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'

type Key = ReturnType<typeof generatePrivateKey>
// made in before(), not at import: a test file that throws while loading (a mutant in the key code)
// is a crash to Stryker, not a failing test
let ca: Key
let other: Key
let subject: Key
const cert = (o: {type?: 'user' | 'host'; signer?: Key} = {}) =>
  signCertificate(
    {
      type: o.type ?? 'user',
      publicKey: subject.publicKey,
      serial: 1n,
      keyId: 'k',
      principals: ['alice'],
      validAfter: 100n,
      validBefore: 200n,
    },
    keySigner((o.signer ?? ca).keyObject),
  )
const codes = (c: Awaited<ReturnType<typeof cert>>, x: Parameters<typeof checkCertificate>[1]) =>
  checkCertificate(c, x).map((p) => p.code)

describe('checkCertificate: one checker for login, enrollment, renewal and inspect', () => {
  before(() => {
    ca = generatePrivateKey('ed25519')
    other = generatePrivateKey('ed25519')
    subject = generatePrivateKey('ed25519')
  })

  it('accepts a certificate that meets every expectation', async () => {
    assert.deepEqual(
      checkCertificate(await cert(), {
        type: 'user',
        caKeys: [other.publicKey, ca.publicKey],
        publicKey: subject.publicKey,
        at: 150n,
        principal: 'alice',
      }),
      [],
    )
  })

  it('names each unmet expectation, in order', async () => {
    assert.deepEqual(codes(await cert({type: 'host'}), {type: 'user'}), ['wrong_type'])
    assert.deepEqual(codes(await cert(), {publicKey: other.publicKey}), ['other_key'])
    assert.deepEqual(codes(await cert(), {at: 99n}), ['not_yet_valid'])
    assert.deepEqual(codes(await cert(), {at: 200n}), ['expired'])
    assert.deepEqual(codes(await cert(), {at: 199n}), [])
    assert.deepEqual(codes(await cert(), {principal: 'root'}), ['principal_missing'])
    assert.deepEqual(
      codes(await cert({type: 'host'}), {type: 'user', publicKey: other.publicKey, at: 300n, principal: 'bob'}),
      ['wrong_type', 'other_key', 'expired', 'principal_missing'],
    )
  })

  it('a signer outside the trusted set is reported, and its signature never verified', async () => {
    const forged = await cert({signer: other})
    // a broken signature from an untrusted signer: only unknown_ca, so nothing was verified
    const signature = Buffer.from(forged.signature)
    signature[signature.length - 1]! ^= 1
    const broken = {...forged, signature}
    assert.deepEqual(codes(broken, {caKeys: [ca.publicKey]}), ['unknown_ca'])
    // the same broken certificate, its signer trusted: the signature is checked and fails
    assert.deepEqual(codes(broken, {caKeys: [other.publicKey]}), ['bad_signature'])
    // no CA set given: the signature is still verified
    assert.deepEqual(codes(broken, {}), ['bad_signature'])
  })
})
