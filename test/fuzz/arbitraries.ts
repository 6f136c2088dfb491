/**
 * Generators shared by the fuzz properties: hostile bytes (random, SSH-string-shaped, and valid
 * encodings with a few mutations), and a pool of real keys of every type (generated once: RSA
 * generation is too slow to do per run).
 */
import fc from 'fast-check'
import {ERROR_CODES, SshcaError} from '../../src/errors.ts'
import type {KeyKind, PrivateKey} from '../../src/ssh/private-key.ts'
import {SshWriter} from '../../src/ssh/wire.ts'
import {fixedKey} from './fixed-keys.ts'

export const KEY_KINDS: readonly KeyKind[] = ['ed25519', 'ecdsa', 'ecdsa-p384', 'ecdsa-p521', 'rsa']

let pool: Record<KeyKind, PrivateKey[]> | undefined
/** Two fixed keys of each kind (RSA: 2048 bits, which the parsers accept; the CA refuses it for subjects). */
export function keyPool(): Record<KeyKind, PrivateKey[]> {
  pool ??= Object.fromEntries(KEY_KINDS.map((k) => [k, ['a', 'b'].map((label) => fixedKey(k, label))])) as Record<
    KeyKind,
    PrivateKey[]
  >
  return pool
}
export const anyKey = (): fc.Arbitrary<PrivateKey> =>
  fc.constantFrom(...KEY_KINDS).chain((k) => fc.constantFrom(...keyPool()[k]))

/** uint32 values that make length fields interesting: empty, off by one, huge, sign bit. */
const interestingU32 = (len: number): fc.Arbitrary<number> =>
  fc.oneof(
    fc.constantFrom(
      0,
      1,
      4,
      7,
      8,
      0x7f,
      0x80,
      0xff,
      0x7fff_ffff,
      0x8000_0000,
      0xffff_fffe,
      0xffff_ffff,
      Math.max(0, len - 1),
      len,
      len + 1,
    ),
    fc.nat(),
  )

type Mutation = (b: Buffer) => Buffer

/** One edit of a byte string: what a truncated download, a bit flip or a hand edit does. */
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({at: fc.nat(), bit: fc.integer({min: 0, max: 7})}).map(({at, bit}): Mutation => (b) => {
    if (b.length === 0) return b
    const out = Buffer.from(b)
    out[at % b.length]! ^= 1 << bit
    return out
  }),
  fc.record({at: fc.nat(), v: fc.integer({min: 0, max: 255})}).map(({at, v}): Mutation => (b) => {
    if (b.length === 0) return b
    const out = Buffer.from(b)
    out[at % b.length] = v
    return out
  }),
  fc.nat().map(
    (at): Mutation =>
      (b) =>
        b.subarray(0, b.length === 0 ? 0 : at % b.length),
  ),
  fc.record({at: fc.nat(), n: fc.integer({min: 1, max: 64})}).map(({at, n}): Mutation => (b) => {
    const i = b.length === 0 ? 0 : at % b.length
    return Buffer.concat([b.subarray(0, i), b.subarray(i + n)])
  }),
  fc.record({at: fc.nat(), ins: fc.uint8Array({minLength: 1, maxLength: 64})}).map(({at, ins}): Mutation => (b) => {
    const i = b.length === 0 ? 0 : at % (b.length + 1)
    return Buffer.concat([b.subarray(0, i), ins, b.subarray(i)])
  }),
  // overwrite 4 bytes with a length-like value (most fields are length-prefixed)
  fc.record({at: fc.nat(), v: interestingU32(64)}).map(({at, v}): Mutation => (b) => {
    if (b.length < 4) return b
    const out = Buffer.from(b)
    out.writeUInt32BE(v >>> 0, at % (b.length - 3))
    return out
  }),
  // duplicate a slice (repeated fields, repeated options)
  fc.record({at: fc.nat(), n: fc.integer({min: 1, max: 128})}).map(({at, n}): Mutation => (b) => {
    if (b.length === 0) return b
    const i = at % b.length
    const slice = b.subarray(i, i + n)
    return Buffer.concat([b.subarray(0, i), slice, b.subarray(i)])
  }),
  fc.uint8Array({minLength: 1, maxLength: 64}).map(
    (tail): Mutation =>
      (b) =>
        Buffer.concat([b, tail]),
  ),
)

/** `base` with one to four mutations applied. */
export function mutated(base: fc.Arbitrary<Buffer>): fc.Arbitrary<Buffer> {
  return fc
    .tuple(base, fc.array(mutation, {minLength: 1, maxLength: 4}))
    .map(([b, ms]) => ms.reduce((acc, m) => m(acc), b))
}

/** A sequence of SSH fields: strings with right or wrong lengths, uint32/uint64, bytes. */
export function sshFields(texts: readonly string[] = []): fc.Arbitrary<Buffer> {
  const field: fc.Arbitrary<(w: SshWriter) => void> = fc.oneof(
    fc.uint8Array({maxLength: 96}).map((b) => (w: SshWriter) => void w.string(b)),
    (texts.length > 0 ? fc.constantFrom(...texts) : fc.string()).map((s) => (w: SshWriter) => void w.string(s)),
    fc.string({unit: 'binary', maxLength: 40}).map((s) => (w: SshWriter) => void w.string(s)),
    interestingU32(16).map((n) => (w: SshWriter) => void w.u32(n >>> 0)),
    fc.bigInt({min: 0n, max: 0xffff_ffff_ffff_ffffn}).map((n) => (w: SshWriter) => void w.u64(n)),
    fc.integer({min: 0, max: 255}).map((n) => (w: SshWriter) => void w.u8(n)),
    fc.uint8Array({minLength: 1, maxLength: 128}).map((b) => (w: SshWriter) => void w.mpint(Buffer.from(b))),
  )
  return fc.array(field, {maxLength: 24}).map((fs) => {
    const w = new SshWriter()
    for (const f of fs) f(w)
    return Buffer.from(w.toBuffer())
  })
}

/**
 * Random bytes, SSH-field-shaped bytes, byte mutations of valid encodings and, given their
 * layouts, field mutations of them.
 */
export function hostileBytes(
  valid: fc.Arbitrary<Buffer>,
  texts: readonly string[] = [],
  fields?: fc.Arbitrary<Buffer[]>,
): fc.Arbitrary<Buffer> {
  return fc.oneof(
    {weight: 1, arbitrary: fc.uint8Array({maxLength: 2048}).map((b) => Buffer.from(b))},
    {weight: 2, arbitrary: sshFields(texts)},
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom(...texts, 'ssh-ed25519'), sshFields())
        .map(([t, rest]) => Buffer.concat([new SshWriter().string(t).toBuffer(), rest])),
    },
    {weight: 5, arbitrary: mutated(valid)},
    {weight: fields ? 5 : 0, arbitrary: fields ? fieldMutated(fields, texts) : fc.constant(Buffer.alloc(0))},
  )
}

/** The wire layout of each key type's public fields (after the type string). */
export const KEY_FIELDS: Readonly<Record<string, Layout>> = {
  'ssh-ed25519': ['s'],
  'ecdsa-sha2-nistp256': ['s', 's'],
  'ecdsa-sha2-nistp384': ['s', 's'],
  'ecdsa-sha2-nistp521': ['s', 's'],
  'ssh-rsa': ['s', 's'],
}

/**
 * Runs a parser on hostile input: returns its result, or undefined when it threw an SshcaError with
 * a known code. Anything else (a TypeError, a RangeError, an error without a code) fails the property.
 */
export function onlySshcaError<T>(what: string, fn: () => T): T | undefined {
  try {
    return fn()
  } catch (err) {
    if (err instanceof SshcaError && Object.hasOwn(ERROR_CODES, err.code)) return undefined
    throw new Error(
      `${what} threw ${(err as Error)?.constructor?.name ?? typeof err} instead of an SshcaError: ${(err as Error)?.message ?? String(err)}`,
      {cause: err},
    )
  }
}

/** The async version of onlySshcaError. */
export async function onlySshcaErrorAsync<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof SshcaError && Object.hasOwn(ERROR_CODES, err.code)) return undefined
    throw new Error(
      `${what} threw ${(err as Error)?.constructor?.name ?? typeof err} instead of an SshcaError: ${(err as Error)?.message ?? String(err)}`,
      {cause: err},
    )
  }
}

/** Text without NUL (what OpenSSH text fields may hold), unicode included; well-formed UTF-16. */
export const sshText = (o: {minLength?: number; maxLength?: number} = {}): fc.Arbitrary<string> =>
  fc
    .string({
      unit: fc.oneof(
        fc.constantFrom('a', 'Z', '0', '-', '.', '@', ' ', '*', '\t', 'é', '中', '🔑'),
        fc.string({unit: 'grapheme', minLength: 1, maxLength: 1}),
      ),
      minLength: o.minLength ?? 0,
      maxLength: o.maxLength ?? 24,
    })
    .filter((s) => !s.includes('\0'))

/** Field layouts: 's' an SSH string (mpints too), '1'/'4'/'8' fixed-width integers, '*' the rest. */
export type Layout = readonly ('s' | '1' | '4' | '8' | '*')[]

/** Splits a valid encoding into its raw fields (length prefixes included), following `layout`. */
export function splitFields(buf: Buffer, layout: Layout): Buffer[] {
  const out: Buffer[] = []
  let at = 0
  for (const f of layout) {
    const n = f === 's' ? 4 + buf.readUInt32BE(at) : f === '*' ? buf.length - at : Number(f)
    out.push(buf.subarray(at, at + n))
    at += n
  }
  if (at !== buf.length) throw new Error(`layout covers ${at} of ${buf.length} bytes`)
  return out
}

const str = (b: Buffer | Uint8Array | string): Buffer => Buffer.from(new SshWriter().string(b).toBuffer())

/** What a field can be replaced by: edge-case strings and mpints, nested SSH fields, integers. */
const fieldReplacement = (texts: readonly string[]): fc.Arbitrary<Buffer> =>
  fc.oneof(
    fc.constantFrom(
      Buffer.alloc(0),
      str(''),
      str(Buffer.of(0)),
      str(Buffer.of(1)),
      str(Buffer.of(2)),
      str(Buffer.of(3)),
      str(Buffer.of(0x80)),
      str(Buffer.of(0, 0x80)),
      str(Buffer.of(0, 1)),
      str(Buffer.alloc(32)),
      str(Buffer.alloc(65, 0xff)),
    ),
    fc.uint8Array({maxLength: 80}).map(str),
    fc
      .uint8Array({minLength: 1, maxLength: 80})
      .map((b) => Buffer.from(new SshWriter().mpint(Buffer.from(b)).toBuffer())),
    sshFields(texts).map(str),
    texts.length > 0 ? fc.constantFrom(...texts).map(str) : fc.string().map(str),
    interestingU32(64).map((n) => Buffer.from(new SshWriter().u32(n >>> 0).toBuffer())),
    fc.bigInt({min: 0n, max: 0xffff_ffff_ffff_ffffn}).map((n) => Buffer.from(new SshWriter().u64(n).toBuffer())),
  )

/**
 * A valid encoding with one to three of its fields replaced, dropped or repeated: reaches the checks
 * after the length prefixes, which byte mutations seldom get past.
 */
export function fieldMutated(valid: fc.Arbitrary<Buffer[]>, texts: readonly string[] = []): fc.Arbitrary<Buffer> {
  const edit = fc.record({
    at: fc.nat(),
    kind: fc.constantFrom('replace', 'replace', 'replace', 'drop', 'repeat'),
    with: fieldReplacement(texts),
  })
  return fc.tuple(valid, fc.array(edit, {minLength: 1, maxLength: 3})).map(([fields, edits]) => {
    const fs = [...fields]
    for (const e of edits) {
      if (fs.length === 0) break
      const i = e.at % fs.length
      if (e.kind === 'replace') fs[i] = e.with
      else if (e.kind === 'drop') fs.splice(i, 1)
      else fs.splice(i, 0, fs[i]!)
    }
    return Buffer.concat(fs)
  })
}
