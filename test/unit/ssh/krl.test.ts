import assert from 'node:assert/strict'
import {buildKrl, parseKrl} from '../../../src/ssh/krl.ts'
import type {PublicKey} from '../../../src/ssh/keys.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {throwsCode} from '../../helpers/assert.ts'

describe('KRL', () => {
  let ca: PublicKey
  before(() => {
    ca = generatePrivateKey('ed25519').publicKey
  })
  it('round-trips: serials sorted and deduplicated (0 dropped), key IDs sorted, empty sections omitted', () => {
    const buf = buildKrl({
      version: 3n,
      generatedAt: 1_800_000_000n,
      comment: 'c',
      sections: [
        {caKey: ca, serials: [9n, 2n, 9n, 0n], keyIds: ['b', 'a']},
        {caKey: ca, serials: [], keyIds: []},
      ],
    })
    assert.equal(buf.subarray(0, 8).toString('latin1'), 'SSHKRL\n\0')
    const k = parseKrl(buf)
    assert.equal(k.version, 3n)
    assert.equal(k.sections.length, 1)
    assert.deepEqual(k.sections[0]!.serials, [2n, 9n])
    assert.deepEqual(k.sections[0]!.keyIds, ['a', 'b'])
    assert.ok(k.sections[0]!.caKeyBlob.equals(ca.blob))
  })

  it('refuses what is not a KRL', () => {
    throwsCode(() => parseKrl(Buffer.from('hello world, no krl here')), 'ERR_SSH_FORMAT', {}, /magic/)
    const good = buildKrl({
      version: 1n,
      generatedAt: 1n,
      comment: '',
      sections: [{caKey: ca, serials: [1n], keyIds: []}],
    })
    throwsCode(() => parseKrl(good.subarray(0, good.length - 3)), 'ERR_SSH_FORMAT')
  })
})
