import assert from 'node:assert/strict'
import {SshReader, SshWriter, fixedWidth} from '../../../src/ssh/wire.ts'

describe('ssh wire types', () => {
  it('round-trips every type', () => {
    const b = new SshWriter().u8(7).u32(0xdeadbeef).u64(0xffff_ffff_ffff_ffffn).bool(true).string('héllo').string(Buffer.of(1, 2)).toBuffer()
    const r = new SshReader(b)
    assert.equal(r.u8(), 7)
    assert.equal(r.u32(), 0xdeadbeef)
    assert.equal(r.u64(), 0xffff_ffff_ffff_ffffn)
    assert.equal(r.bool(), true)
    assert.equal(r.text(), 'héllo')
    assert.deepEqual([...r.bytes()], [1, 2])
    r.end('test')
  })

  it('encodes mpints minimally, with a sign byte when the top bit is set (RFC 4251 §5)', () => {
    const enc = (hex: string): string => new SshWriter().mpint(Buffer.from(hex, 'hex')).toBuffer().toString('hex')
    assert.equal(enc(''), '00000000')
    assert.equal(enc('0000'), '00000000')
    assert.equal(enc('7f'), '000000017f')
    assert.equal(enc('80'), '0000000200' + '80')
    assert.equal(enc('00ff'), '0000000200ff')
    assert.deepEqual(new SshReader(Buffer.from('0000000200ff', 'hex')).mpint(), Buffer.from('ff', 'hex'))
  })

  it('refuses negative and non-minimal mpints', () => {
    assert.throws(() => new SshReader(Buffer.from('0000000180', 'hex')).mpint(), {code: 'ERR_SSH_FORMAT', message: /negative/})
    assert.throws(() => new SshReader(Buffer.from('00000002007f', 'hex')).mpint(), {code: 'ERR_SSH_FORMAT', message: /minimally/})
  })

  it('never reads past the buffer', () => {
    assert.throws(() => new SshReader(Buffer.from('00000005abcd', 'hex')).bytes(), {code: 'ERR_SSH_FORMAT', message: /truncated/})
    assert.throws(() => new SshReader(Buffer.from('ffffffff', 'hex')).bytes(), {code: 'ERR_SSH_FORMAT'})
    assert.throws(() => new SshReader(Buffer.of(1)).u32(), {code: 'ERR_SSH_FORMAT'})
  })

  it('refuses trailing bytes and invalid UTF-8', () => {
    const r = new SshReader(Buffer.of(0, 0, 0, 0, 9))
    r.bytes()
    assert.throws(() => r.end('thing'), {code: 'ERR_SSH_FORMAT', message: /trailing/})
    assert.throws(() => new SshReader(Buffer.from('00000001ff', 'hex')).text('name'), {code: 'ERR_SSH_FORMAT', message: /UTF-8/})
  })

  it('pads fixed-width values and refuses long ones', () => {
    assert.equal(fixedWidth(Buffer.of(1), 4, 'x').toString('hex'), '00000001')
    assert.equal(fixedWidth(Buffer.of(0, 0, 1, 2), 2, 'x').toString('hex'), '0102')
    assert.throws(() => fixedWidth(Buffer.of(1, 2, 3), 2, 'x'), {code: 'ERR_SSH_FORMAT'})
  })

  it('range-checks integers it writes', () => {
    assert.throws(() => new SshWriter().u32(-1), TypeError)
    assert.throws(() => new SshWriter().u64(1n << 64n), TypeError)
  })
})
