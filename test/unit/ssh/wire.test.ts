import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {SshReader, SshWriter, fixedWidth, formatError} from '../../../src/ssh/wire.ts'

describe('ssh wire types', () => {
  it('round-trips every type', () => {
    const b = new SshWriter()
      .u8(7)
      .u32(0xdeadbeef)
      .u64(0xffff_ffff_ffff_ffffn)
      .bool(true)
      .string('héllo')
      .string(Buffer.of(1, 2))
      .toBuffer()
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
    assert.throws(() => new SshReader(Buffer.from('0000000180', 'hex')).mpint(), {
      code: 'ERR_SSH_FORMAT',
      message: /negative/,
    })
    assert.throws(() => new SshReader(Buffer.from('00000002007f', 'hex')).mpint(), {
      code: 'ERR_SSH_FORMAT',
      message: /minimally/,
    })
  })

  it('never reads past the buffer', () => {
    assert.throws(() => new SshReader(Buffer.from('00000005abcd', 'hex')).bytes(), {
      code: 'ERR_SSH_FORMAT',
      message: /truncated/,
    })
    assert.throws(() => new SshReader(Buffer.from('ffffffff', 'hex')).bytes(), {code: 'ERR_SSH_FORMAT'})
    assert.throws(() => new SshReader(Buffer.of(1)).u32(), {code: 'ERR_SSH_FORMAT'})
  })

  it('refuses trailing bytes and invalid UTF-8', () => {
    const r = new SshReader(Buffer.of(0, 0, 0, 0, 9))
    r.bytes()
    assert.throws(() => r.end('thing'), {code: 'ERR_SSH_FORMAT', message: /trailing/})
    assert.throws(() => new SshReader(Buffer.from('00000001ff', 'hex')).text('name'), {
      code: 'ERR_SSH_FORMAT',
      message: /UTF-8/,
    })
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

  it('grows as it goes: every byte lands, across and exactly at each capacity boundary', () => {
    // byte by byte: the write that lands exactly at the current capacity is the one that must grow it
    const bytes = randomBytes(1100)
    const w = new SshWriter()
    for (const b of bytes) w.u8(b)
    assert.deepEqual(w.toBuffer(), bytes)
    // every kind of write, from every offset around the first boundaries, against a reference encoding
    for (let pad = 240; pad <= 270; pad++) {
      const text = 'é'.repeat(pad % 7) + 'x'.repeat(pad)
      const blob = randomBytes(pad)
      const got = new SshWriter()
        .raw(Buffer.alloc(pad, 7))
        .u32(0xa1b2c3d4)
        .u64(0x0102030405060708n)
        .string(text)
        .string(blob)
        .bool(false)
        .u8(0xff)
        .mpint(Buffer.of(0x80, 1))
        .raw(blob)
        .toBuffer()
      const u32 = (n: number) => {
        const b = Buffer.alloc(4)
        b.writeUInt32BE(n)
        return b
      }
      const want = Buffer.concat([
        Buffer.alloc(pad, 7),
        Buffer.from('a1b2c3d4', 'hex'),
        Buffer.from('0102030405060708', 'hex'),
        u32(Buffer.byteLength(text)),
        Buffer.from(text, 'utf8'),
        u32(blob.length),
        blob,
        Buffer.of(0, 0xff),
        Buffer.from('000000030080' + '01', 'hex'),
        blob,
      ])
      assert.deepEqual(got, want, `pad ${pad}`)
    }
  })

  it('writes and reads integers at the edges of their range, and refuses what is not one', () => {
    const b = new SshWriter()
      .u8(0)
      .u8(255)
      .u8(256 + 7)
      .u32(0)
      .u32(0xffff_ffff)
      .u64(0n)
      .u64(0xffff_ffff_ffff_ffffn)
      .toBuffer()
    assert.equal(b.toString('hex'), '00ff07' + '00000000' + 'ffffffff' + '0000000000000000' + 'ffffffffffffffff')
    const r = new SshReader(b)
    assert.deepEqual(
      [r.u8(), r.u8(), r.u8(), r.u32(), r.u32(), r.u64(), r.u64()],
      [0, 255, 7, 0, 0xffff_ffff, 0n, 0xffff_ffff_ffff_ffffn],
    )
    assert.equal(r.remaining, 0)
    for (const bad of [-1, 0x1_0000_0000, 1.5, Number.NaN, Infinity])
      assert.throws(() => new SshWriter().u32(bad), TypeError, String(bad))
    assert.throws(() => new SshWriter().u64(-1n), TypeError)
  })

  it('reads any non-zero byte as true', () => {
    const r = new SshReader(Buffer.of(0, 1, 2, 0x80))
    assert.deepEqual([r.bool(), r.bool(), r.bool(), r.bool()], [false, true, true, true])
  })

  it('reads only what it is given, and counts what is left', () => {
    const r = new SshReader(Buffer.from('0000000161' + '00000002' + 'ff', 'hex'))
    assert.equal(r.remaining, 10)
    assert.equal(r.text(), 'a')
    assert.equal(r.remaining, 5)
    assert.throws(() => r.bytes(), {code: 'ERR_SSH_FORMAT'})
    for (const read of [(x: SshReader) => x.u8(), (x: SshReader) => x.u32(), (x: SshReader) => x.u64()]) {
      assert.throws(() => read(new SshReader(Buffer.alloc(0))), {code: 'ERR_SSH_FORMAT'})
    }
    assert.throws(() => new SshReader(Buffer.alloc(7)).u64(), {code: 'ERR_SSH_FORMAT'})
    assert.throws(() => new SshReader(Buffer.alloc(3)).u32(), {code: 'ERR_SSH_FORMAT'})
    const whole = new SshReader(Buffer.of(1, 2, 3))
    whole.u8()
    assert.deepEqual([...whole.rest()], [2, 3])
    whole.end('all of it')
  })

  it("hands out strings that share the input's memory", () => {
    const input = Buffer.from('00000002abcd', 'hex')
    const s = new SshReader(input).bytes()
    input[4] = 0
    assert.equal(s[0], 0)
  })

  it('reads C strings as OpenSSH does: text without NUL bytes', () => {
    assert.equal(new SshReader(new SshWriter().string('alice').toBuffer()).cstring(), 'alice')
    assert.equal(new SshReader(new SshWriter().string('').toBuffer()).cstring(), '')
    for (const bad of ['ali\0ce', '\0', 'alice\0']) {
      assert.throws(() => new SshReader(new SshWriter().string(bad).toBuffer()).cstring('principal'), {
        code: 'ERR_SSH_FORMAT',
      })
    }
    assert.throws(() => new SshReader(Buffer.from('00000002c328', 'hex')).cstring(), {code: 'ERR_SSH_FORMAT'})
  })

  it('reads mpints: zero is empty, a sign byte is dropped, and only the minimal form is accepted', () => {
    const mp = (hex: string) => new SshReader(Buffer.from(hex, 'hex')).mpint().toString('hex')
    assert.equal(mp('00000000'), '')
    assert.equal(mp('000000017f'), '7f')
    assert.equal(mp('000000020080'), '80')
    assert.equal(mp('00000002017f'), '017f')
    for (const bad of ['0000000100', '00000002007f', '000000020001', '00000001ff']) {
      assert.throws(() => mp(bad), {code: 'ERR_SSH_FORMAT'}, bad)
    }
  })

  it('pads short values to a fixed width, keeps exact ones, trims leading zeros of long ones', () => {
    const fw = (hex: string, size: number) => fixedWidth(Buffer.from(hex, 'hex'), size, 'x').toString('hex')
    assert.equal(fw('', 2), '0000')
    assert.equal(fw('0102', 2), '0102')
    assert.equal(fw('000000', 2), '0000')
    assert.equal(fw('00ff01', 2), 'ff01')
    assert.throws(() => fw('01ff01', 2), {code: 'ERR_SSH_FORMAT'})
  })

  it('keeps what caused a format error, for whoever debugs it', () => {
    const cause = new RangeError('inner')
    const err = formatError('outer', cause)
    assert.equal(err.code, 'ERR_SSH_FORMAT')
    assert.equal(err.cause, cause)
    assert.equal(Object.hasOwn(formatError('outer'), 'cause'), false)
  })
})
