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

  it('round-trips every part: serials (0 dropped, 64-bit), key IDs, revoked key digests (sorted, deduplicated), version, time, comment', () => {
    const other = generatePrivateKey('ecdsa').publicKey
    const h = (b: number) => Buffer.alloc(32, b)
    const k = parseKrl(
      buildKrl({
        version: 7n,
        generatedAt: 1_800_000_123n,
        comment: 'sshca KRL',
        sections: [
          {caKey: ca, serials: [2n ** 64n - 1n, 3n, 3n], keyIds: []},
          {caKey: other, serials: [], keyIds: ['host:web1', 'host:db', 'host:web1']},
        ],
        revokedKeySha256: [h(9), h(1), h(9), h(5)],
      }),
    )
    assert.deepEqual([k.version, k.generatedAt, k.comment], [7n, 1_800_000_123n, 'sshca KRL'])
    assert.deepEqual(
      k.sections.map((s) => [s.caKeyBlob.equals(ca.blob), s.caKeyBlob.equals(other.blob), s.serials, s.keyIds]),
      [
        [true, false, [3n, 2n ** 64n - 1n], []],
        [false, true, [], ['host:db', 'host:web1']],
      ],
    )
    assert.deepEqual(k.revokedKeySha256, [h(1), h(5), h(9)])
    // nothing revoked: a header and nothing else, which every reader takes as "nothing revoked"
    const empty = buildKrl({
      version: 1n,
      generatedAt: 1n,
      comment: '',
      sections: [{caKey: ca, serials: [0n], keyIds: []}],
    })
    assert.equal(empty.length, 8 + 4 + 8 + 8 + 8 + 4 + 4)
    assert.deepEqual(parseKrl(empty), {version: 1n, generatedAt: 1n, comment: '', sections: [], revokedKeySha256: []})
    // a section of serials only has no key ID list, and one of key IDs only no serial list
    const serialsOnly = buildKrl({
      version: 1n,
      generatedAt: 1n,
      comment: '',
      sections: [{caKey: ca, serials: [1n], keyIds: []}],
    })
    const idsOnly = buildKrl({
      version: 1n,
      generatedAt: 1n,
      comment: '',
      sections: [{caKey: ca, serials: [], keyIds: ['a']}],
    })
    const header = empty.length
    const section = 1 + 4 + (4 + ca.blob.length) + 4
    assert.equal(serialsOnly.length, header + section + (1 + 4 + 8))
    assert.equal(idsOnly.length, header + section + (1 + 4 + 4 + 1))
    assert.throws(
      () => buildKrl({version: 1n, generatedAt: 1n, comment: '', sections: [], revokedKeySha256: [Buffer.alloc(20)]}),
      TypeError,
    )
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
    throwsCode(() => parseKrl(good.subarray(0, 7)), 'ERR_SSH_FORMAT', {}, /magic/)
    // the header alone (8 bytes of magic) is no KRL either: its version is missing
    throwsCode(() => parseKrl(good.subarray(0, 8)), 'ERR_SSH_FORMAT')
    // a section type sshca does not write, a digest that is not 32 bytes, a certificate subsection it does not know
    const header = buildKrl({version: 1n, generatedAt: 1n, comment: '', sections: []})
    const section = (type: number, body: Buffer) => {
      const len = Buffer.alloc(4)
      len.writeUInt32BE(body.length)
      return Buffer.concat([Buffer.from([type]), len, body])
    }
    const str = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b])
    throwsCode(
      () => parseKrl(Buffer.concat([header, section(2, Buffer.alloc(0))])),
      'ERR_SSH_FORMAT',
      {},
      /section type 2/,
    )
    throwsCode(
      () => parseKrl(Buffer.concat([header, section(5, str(Buffer.alloc(20)))])),
      'ERR_SSH_FORMAT',
      {},
      /32 bytes/,
    )
    const sub = Buffer.concat([str(ca.blob), str(Buffer.alloc(0)), Buffer.from([0x99]), str(Buffer.alloc(0))])
    throwsCode(
      () => parseKrl(Buffer.concat([header, section(1, sub)])),
      'ERR_SSH_FORMAT',
      {},
      /subsection|section type 153/,
    )
    // what OpenSSH refuses, and with it the whole list (sshd then refuses every public key): a serial 0,
    // a CA key that is no key
    const serials = (...xs: bigint[]) => {
      const b = Buffer.alloc(8 * xs.length)
      xs.forEach((x, i) => b.writeBigUInt64BE(x, 8 * i))
      return b
    }
    const certs = (caBlob: Buffer, list: Buffer) =>
      section(1, Buffer.concat([str(caBlob), str(Buffer.alloc(0)), Buffer.from([0x20]), str(list)]))
    assert.deepEqual(parseKrl(Buffer.concat([header, certs(ca.blob, serials(5n, 7n))]))!.sections[0]!.serials, [5n, 7n])
    throwsCode(
      () => parseKrl(Buffer.concat([header, certs(ca.blob, serials(5n, 0n))])),
      'ERR_SSH_FORMAT',
      {},
      /serial 0/,
    )
    throwsCode(
      () => parseKrl(Buffer.concat([header, certs(Buffer.from('not a key'), serials(5n))])),
      'ERR_SSH_FORMAT',
      {},
      /CA key in the KRL is not a key/,
    )
  })
})
