/**
 * Fuzzing the managed known_hosts block: on any existing file (other contexts' blocks, stray and
 * doubled markers, CRLF, no final newline, unicode) a merge is idempotent, keeps every line outside
 * its own block byte for byte and in order, and refuses only with SshcaError (a begin marker without
 * its end).
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {validContextName} from '../../src/client/home/home.ts'
import {beginMarker, endMarker, mergeKnownHosts} from '../../src/client/local/known-hosts.ts'
import {keyPool, onlySshcaError} from './arbitraries.ts'
import {bounded, property} from './fuzz.ts'

const context = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/).filter(validContextName)
const pattern = fc.oneof(
  fc.constantFrom('*', '*.example.com', '10.0.0.*,!10.0.0.1', '[host]:2222'),
  fc.string({unit: 'grapheme', minLength: 1, maxLength: 20}).filter((s) => !/\s/.test(s)),
)
const hostKeys = (ctx: string) =>
  fc.subarray(
    Object.values(keyPool())
      .flat()
      .map((k) => k.publicKey.toLine(`${ctx} host CA`)),
    {minLength: 1, maxLength: 3},
  )

/** Lines a known_hosts file holds, markers of this and other contexts among them. */
const line = (ctx: string): fc.Arbitrary<string> =>
  fc.oneof(
    {
      weight: 4,
      arbitrary: fc.constantFrom(
        'github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl',
        '|1|abc=|def= ecdsa-sha2-nistp256 AAAA',
        '# a comment',
        '',
        '   ',
        '@revoked * ssh-ed25519 AAAA',
        '@cert-authority *.corp ssh-ed25519 AAAA other',
      ),
    },
    {weight: 3, arbitrary: fc.string({unit: 'grapheme', maxLength: 60}).map((s) => s.replace(/[\r\n]/g, ''))},
    {weight: 2, arbitrary: fc.constantFrom(beginMarker(ctx), endMarker(ctx))},
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        `${beginMarker(ctx)} `,
        ` ${endMarker(ctx)}`,
        beginMarker(`${ctx}x`),
        endMarker(`${ctx}x`),
        beginMarker('other'),
        endMarker('other'),
        `${beginMarker(ctx)}\r`,
      ),
    },
    {weight: 1, arbitrary: fc.string({unit: 'binary', maxLength: 30}).map((s) => s.replace(/\n/g, ''))},
  )

/** A whole file: lines with LF or CRLF terminators, a final newline or not. */
const file = (ctx: string): fc.Arbitrary<string> =>
  fc
    .tuple(fc.array(fc.tuple(line(ctx), fc.constantFrom('\n', '\n', '\r\n')), {maxLength: 14}), fc.boolean())
    .map(([ls, finalNewline]) => {
      const text = ls.map(([l, eol]) => l + eol).join('')
      return finalNewline ? text : text.replace(/\r?\n$/, '')
    })

/** A file made of well-formed blocks (each begin has its end) and foreign lines. */
const wellFormedFile = (ctx: string): fc.Arbitrary<string> =>
  fc
    .tuple(
      fc.array(
        fc.oneof(
          {
            weight: 3,
            arbitrary: line(ctx)
              .filter((l) => l !== beginMarker(ctx) && l !== endMarker(ctx))
              .map((l) => [l]),
          },
          {
            weight: 1,
            arbitrary: fc
              .array(
                line(ctx).filter((l) => l !== beginMarker(ctx) && l !== endMarker(ctx)),
                {maxLength: 3},
              )
              .map((inner) => [beginMarker(ctx), ...inner, endMarker(ctx)]),
          },
        ),
        {maxLength: 10},
      ),
      fc.constantFrom('\n', '\r\n'),
      fc.boolean(),
    )
    .map(([groups, eol, finalNewline]) => {
      const text = groups
        .flat()
        .map((l) => l + eol)
        .join('')
      return finalNewline ? text : text.slice(0, -eol.length)
    })

/** The lines outside this context's blocks (a begin up to its next end), with their terminators. */
function foreign(text: string, ctx: string): string[] {
  const lines = text.match(/[^\n]*\n|[^\n]+$/g) ?? []
  const bare = (l: string) => l.replace(/\r?\n$|\r$/, '')
  const out: string[] = []
  let inside = false
  for (const l of lines) {
    if (!inside && bare(l) === beginMarker(ctx)) inside = true
    else if (inside && bare(l) === endMarker(ctx)) inside = false
    else if (!inside) out.push(l)
  }
  return out
}

describe('fuzz: the known_hosts managed block', function () {
  before(() => keyPool())

  property(
    'any file: the merge refuses with SshcaError only, is idempotent, and keeps foreign lines byte for byte',
    1000,
    fc.property(
      context.chain((ctx) =>
        fc.tuple(fc.constant(ctx), fc.oneof(file(ctx), wellFormedFile(ctx)), pattern, hostKeys(ctx)),
      ),
      ([ctx, existing, pat, keys]) => {
        const first = onlySshcaError('mergeKnownHosts', () => mergeKnownHosts(existing, ctx, pat, keys))
        if (!first) return
        // idempotent: a second run changes nothing
        const second = mergeKnownHosts(first.text, ctx, pat, keys)
        assert.equal(second.changed, false)
        assert.equal(second.text, first.text)
        assert.equal(first.changed, first.text !== existing)
        // foreign lines: the same, in the same order; when the block is appended, the last line
        // gains the line ending it lacked
        const eol = existing.includes('\r\n') || existing.endsWith('\r') ? '\r\n' : '\n'
        const before = foreign(existing, ctx)
        const after = foreign(first.text, ctx)
        const appended = !(existing.match(/[^\n]*\n|[^\n]+$/g) ?? []).some(
          (l) => l.replace(/\r?\n$|\r$/, '') === beginMarker(ctx),
        )
        assert.equal(after.length, before.length)
        for (const [i, l] of before.entries())
          assert.equal(
            after[i],
            appended && i === before.length - 1 && !l.endsWith('\n') ? l + (l.endsWith('\r') ? '\n' : eol) : l,
            `line ${i}`,
          )
        // exactly one block of this context, holding these keys
        const block = [beginMarker(ctx), ...keys.map((k) => `@cert-authority ${pat} ${k}`), endMarker(ctx)].join(eol)
        assert.equal(first.text.split(block).length, 2, 'expected exactly one managed block')
      },
    ),
  )

  property(
    'a big file (90 000 lines, a third of them blocks) merges in linear time',
    4,
    fc.property(
      context,
      fc.integer({min: 20_000, max: 30_000}).map((n) => n * 3),
      fc.constantFrom('\n', '\r\n'),
      (ctx, n, eol) => {
        const keys = [keyPool().ed25519[0]!.publicKey.toLine(`${ctx} host CA`)]
        const lines: string[] = []
        for (let i = 0; i < n; i++)
          lines.push(i % 3 === 0 ? beginMarker(ctx) : i % 3 === 2 ? endMarker(ctx) : `host${i} ssh-ed25519 AAAA`)
        const text = lines.join(eol) + eol
        const r = bounded(1500, `merging ${n} lines`, () => mergeKnownHosts(text, ctx, '*', keys))
        assert.equal(foreign(r.text, ctx).length, 0)
      },
    ),
  )
})
