/** Regressions found by test/fuzz/known-hosts.test.ts. */
import assert from 'node:assert/strict'
import {beginMarker, endMarker, mergeKnownHosts} from '../../../src/client/local/known-hosts.ts'

describe('known_hosts merge on hostile files (fuzz regressions)', () => {
  // the merge searched each block's end from the top of the file again: quadratic in the number of
  // blocks (90 000 lines took 6.6 s; now ~0.1 s)
  it('finds each block end in one pass: 120 000 lines and 40 000 blocks merge in well under 4 s', () => {
    const lines: string[] = []
    for (let i = 0; i < 120_000; i++)
      lines.push(i % 3 === 0 ? beginMarker('work') : i % 3 === 2 ? endMarker('work') : `host${i} ssh-ed25519 AAAA`)
    lines.push('kept.example.com ssh-ed25519 BBBB')
    const t0 = performance.now()
    const {text} = mergeKnownHosts(`${lines.join('\n')}\n`, 'work', '*', ['ssh-ed25519 CCCC work host CA'])
    const took = performance.now() - t0
    // one block left, the foreign line kept; the bound is ~40× the linear time, a third of the quadratic one
    assert.equal(
      text,
      `${beginMarker('work')}\n@cert-authority * ssh-ed25519 CCCC work host CA\n${endMarker('work')}\nkept.example.com ssh-ed25519 BBBB\n`,
    )
    assert.ok(took < 4000, `merging took ${took.toFixed(0)} ms`)
  })

  // a last line ending in a lone CR: completing it with LF turned it into a CRLF line, so the next
  // merge used another line ending and, when the line was a begin marker, took it for a block start
  const keys = ['ssh-ed25519 CCCC work host CA']
  it('a file ending in a lone CR merges once: the line is completed to CRLF, the second merge changes nothing', () => {
    const existing = 'github.com ssh-ed25519 AAAA\r'
    const first = mergeKnownHosts(existing, 'work', '*', keys)
    assert.equal(
      first.text,
      `${existing}\n${beginMarker('work')}\r\n@cert-authority * ${keys[0]}\r\n${endMarker('work')}\r\n`,
    )
    const second = mergeKnownHosts(first.text, 'work', '*', keys)
    assert.equal(second.changed, false)
    assert.equal(second.text, first.text)
  })

  it('a begin marker ending in a lone CR is a begin marker: without its end the merge refuses, as with LF', () => {
    for (const existing of [`${beginMarker('work')}\r`, `${beginMarker('work')}\n`]) {
      assert.throws(() => mergeKnownHosts(existing, 'work', '*', keys), {code: 'ERR_INPUT', message: /not its end/})
    }
  })
})
