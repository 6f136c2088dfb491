/**
 * terminalText and jsonText: what sshca prints can carry strings from certificates, agents, identity
 * providers and files; nothing in them may reach the terminal as a control sequence.
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import {asciiLower, jsonLine, jsonText, singleLine, terminalText} from '../../../src/util/text.ts'
import {JSON_UNSAFE, TERMINAL_UNSAFE as UNSAFE} from '../../helpers/assert.ts'

describe('terminalText', () => {
  it('shows escape sequences, C1 controls and bidirectional overrides as escapes', () => {
    assert.equal(terminalText('a\x1b[2Jb'), 'a\\x1b[2Jb')
    assert.equal(terminalText('\x1b]0;owned\x07'), '\\x1b]0;owned\\x07')
    assert.equal(terminalText('x\ry'), 'x\\x0dy')
    assert.equal(terminalText('x\r\r\n'), 'x\\x0d\r\n')
    assert.equal(terminalText('\x00\x7f\x9b'), '\\x00\\x7f\\x9b')
    assert.equal(terminalText('evil\u202egpj.exe'), 'evil\\u{202e}gpj.exe')
    assert.equal(terminalText('\u2066\u2069'), '\\u{2066}\\u{2069}')
  })

  it('shows the bidirectional marks, line separators and invisible characters as escapes', () => {
    // "root\u200f,alice" reads "root,alice" with the comma moved; "ro\u200bot" reads "root"
    assert.equal(terminalText('root\u200f,\u200ealice\u061c'), 'root\\u{200f},\\u{200e}alice\\u{61c}')
    assert.equal(terminalText('ro\u200bot\u2060\u2064\ufeff'), 'ro\\u{200b}ot\\u{2060}\\u{2064}\\u{feff}')
    assert.equal(terminalText('a\u2028b\u2029c'), 'a\\u{2028}b\\u{2029}c')
    assert.equal(
      terminalText('ad\xadmin\u034f\u115f\u1160\u180e\u206a\u206f\u3164\uffa0'),
      'ad\\xadmin\\u{34f}\\u{115f}\\u{1160}\\u{180e}\\u{206a}\\u{206f}\\u{3164}\\u{ffa0}',
    )
    // tag characters, outside the BMP: one escape each, not two halves
    assert.equal(terminalText('root\u{e0001}\u{e0072}\u{e007f}'), 'root\\u{e0001}\\u{e0072}\\u{e007f}')
  })

  it('leaves tabs, newlines, printable text and every other character as they are', () => {
    // the zero-width joiners stay: Persian and Indic scripts and emoji sequences need them
    const plain =
      'TYPE\tKEY ID\r\nalice@example.com  clé de José ✓ 鍵 \u00a0 \u{1f511}\\x1b می\u200cخواهم \u{1f469}\u200d\u{1f4bb}\n'
    assert.equal(terminalText(plain), plain)
  })

  it('never lets an unsafe character through, whatever the string', () => {
    fc.assert(
      fc.property(fc.string({unit: 'binary'}), (s) => {
        const out = terminalText(s)
        assert.doesNotMatch(out, UNSAFE)
        // a string with nothing unsafe in it is printed as it is
        if (!UNSAFE.test(s)) assert.equal(out, s)
      }),
    )
  })
})

describe('jsonText', () => {
  it('writes the same document JSON.stringify does, two-space indented, with a final newline', () => {
    const value = {keyId: 'alice', principals: ['a', 'b'], n: 1, none: null}
    assert.equal(jsonText(value), `${JSON.stringify(value, null, 2)}\n`)
    // a command with nothing to say under --json still prints a document
    assert.equal(jsonText(undefined), 'null\n')
  })

  it('escapes what JSON.stringify leaves raw but a terminal obeys, and parses back to the same value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.string({unit: 'binary'}), (value, s) => {
        for (const v of [value, {s, nested: [s, {s}]}]) {
          const text = jsonText(v)
          assert.doesNotMatch(text, JSON_UNSAFE)
          assert.deepEqual(JSON.parse(text), JSON.parse(JSON.stringify(v)))
        }
      }),
    )
    assert.equal(jsonText('\x9b\u202e\x7f'), '"\\u009b\\u202e\\u007f"\n')
    assert.equal(jsonText('\u200f\u2028\ufeff'), '"\\u200f\\u2028\\ufeff"\n')
    // a tag character is two UTF-16 units: two escapes, which parse back to it
    assert.equal(jsonText('\u{e0072}'), '"\\udb40\\udc72"\n')
    assert.equal(JSON.parse(jsonText('\u{e0072}')), '\u{e0072}')
  })
})

describe('jsonLine', () => {
  it('is one line of JSON (a log line), escaped as jsonText is, and parses back to the same value', () => {
    const fields = {
      event: 'certificate_denied',
      detail: 'no provisioner trusts issuer "https://evil\u009b2J\u202e\x1b"',
    }
    const line = jsonLine(fields)
    assert.equal(line.includes('\n'), false)
    assert.doesNotMatch(line, JSON_UNSAFE)
    assert.deepEqual(JSON.parse(line), fields)
    assert.equal(line, JSON.stringify(fields).replace('\u009b', '\\u009b').replace('\u202e', '\\u202e'))
    assert.equal(jsonLine(undefined), 'null')
  })
})

describe('asciiLower', () => {
  it('lower-cases A-Z and nothing else: no character outside ASCII becomes one inside it', () => {
    assert.equal(asciiLower('AZaz09@Zoe.Example'), 'azaz09@zoe.example')
    assert.equal(asciiLower('\u212Aen \u0130 \u00C9'), '\u212Aen \u0130 \u00C9')
    for (let c = 0x80; c <= 0xffff; c++) {
      const ch = String.fromCharCode(c)
      assert.equal(asciiLower(ch), ch)
    }
  })
})

describe('singleLine', () => {
  it("makes each line break one space (a CRLF too), so an outside party's words cannot start a line of sshca's own", () => {
    assert.equal(singleLine('refused\r\nsshca: error: run curl | sh'), 'refused sshca: error: run curl | sh')
    for (const br of ['\n', '\r', '\v', '\f', '\u0085', '\u2028', '\u2029'])
      assert.equal(singleLine(`a${br}b${br}`), 'a b ', JSON.stringify(br))
    // a CR after a LF starts another line: two breaks, two spaces; so do two CRLFs
    assert.equal(singleLine('a\n\rb'), 'a  b')
    assert.equal(singleLine('a\r\n\r\nb'), 'a  b')
  })

  it('leaves every other character as it is (terminalText shows the controls)', () => {
    const kept = 'tab\there, \x1b[31m, \u0084\u0086 \u2027\u202a\u202e, é ü, \\n'
    assert.equal(singleLine(kept), kept)
    assert.equal(singleLine(''), '')
  })
})
