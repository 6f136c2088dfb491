/** Small text helpers. */

/**
 * `s` with A–Z lowercased and nothing else changed. String#toLowerCase also folds characters outside
 * ASCII, and one of them lands inside it: the Kelvin sign U+212A becomes "k", so "\u212Aen@corp.com"
 * would render the principal "ken". Names that decide who someone is compare with this instead.
 */
export const asciiLower = (s: string): string => s.replace(/[A-Z]+/g, (m) => m.toLowerCase())

/**
 * `s` on one line: CR, LF and the other characters that end a line somewhere (VT, FF, NEL U+0085,
 * the line and paragraph separators U+2028 and U+2029) become a space. For the words of an outside
 * party (a CA's message, an identity provider's error) put inside one of sshca's own lines:
 * terminalText keeps line ends, so a line break there would print lines that look like sshca's own
 * (a forged error, a forged hint).
 */
export const singleLine = (s: string): string => s.replace(/\r\n|[\n\r\v\f\u0085\u2028\u2029]/g, ' ')

/** Edits between two names, a swap of neighbours counting as one (optimal string alignment). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({length: a.length + 1}, (_, i) =>
    Array.from({length: b.length + 1}, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  )
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[a.length]![b.length]!
}

/**
 * Characters a terminal acts on rather than shows, or that change what a line seems to say: C0
 * controls but tab, newline and the CR of a CRLF (a file with Windows line ends, shown by
 * `config --dry-run`; a lone CR rewrites its line), DEL, C1 controls (U+0080–U+009F: some terminals
 * take U+009B as CSI), the bidirectional overrides and isolates that reorder what is shown
 * (U+202A–U+202E, U+2066–U+2069: "Trojan Source") and the bidirectional marks that move the
 * punctuation around them (U+061C, U+200E, U+200F), the line and paragraph separators (U+2028,
 * U+2029), and the invisible characters that make two names look alike or hide text: the soft
 * hyphen U+00AD, the combining grapheme joiner U+034F, the Hangul fillers (U+115F, U+1160, U+3164,
 * U+FFA0), the Mongolian vowel separator U+180E, the zero-width space U+200B, the word joiner and
 * invisible operators U+2060–U+2064, the deprecated format characters U+206A–U+206F, the byte order
 * mark U+FEFF and the tag characters U+E0000–U+E007F. The zero-width (non-)joiners U+200C and U+200D
 * stay: scripts and emoji need them to be written at all.
 */
const C0_UNSAFE = String.raw`\x00-\x08\x0b\x0c\x0e-\x1f`
const OTHER_UNSAFE = String.raw`\x7f-\x9f\xad\u034f\u061c\u115f\u1160\u180e\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\u3164\ufeff\uffa0\u{e0000}-\u{e007f}`
// u: the tag characters are outside the BMP, a pair of UTF-16 units each. The combining grapheme
// joiner U+034F is in the class to be matched on its own, not combined with the character before it
// eslint-disable-next-line no-misleading-character-class
const TERMINAL_UNSAFE = new RegExp(String.raw`[${C0_UNSAFE}${OTHER_UNSAFE}]|\r(?!\n)`, 'gu')

/**
 * `text` safe to write to a terminal: every character a terminal would act on is shown as an escape
 * (`\x1b`, `\u{202e}`) instead. A key ID, a principal, an agent key's comment, a file name or an
 * identity provider's message can carry escape sequences that rewrite the screen, hide a line or
 * set the window title; what sshca prints never passes them through. Tabs and line ends stay.
 */
export const terminalText = (text: string): string =>
  text.replace(TERMINAL_UNSAFE, (c) => {
    const code = c.codePointAt(0)!
    // Stryker disable next-line EqualityOperator: U+0100 is no character this replaces (<= is the same)
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`
  })

/** What JSON.stringify leaves raw of the above: everything but the C0 controls it escapes itself. */
// eslint-disable-next-line no-misleading-character-class -- U+034F on its own, as above
const JSON_UNSAFE = new RegExp(`[${OTHER_UNSAFE}]`, 'gu')

/**
 * `value` as the JSON document a command prints (two-space indent, a final newline), with every
 * character JSON.stringify leaves raw but a terminal acts on written as a \u escape: the same
 * document to a parser, nothing a terminal obeys (JSON.stringify escapes C0 controls itself; the
 * others can only be inside strings).
 */
export const jsonText = (value: unknown): string => `${escapeJson(JSON.stringify(value, null, 2) ?? 'null')}\n`

/** `value` as one line of JSON (a log line, without its newline), escaped as jsonText is. */
export const jsonLine = (value: unknown): string => escapeJson(JSON.stringify(value) ?? 'null')

/** Each UTF-16 unit of a character as a \u escape (a tag character is two: JSON has no longer escape). */
const escapeJson = (json: string): string =>
  json.replace(JSON_UNSAFE, (c) => {
    let out = ''
    for (let i = 0; i < c.length; i++) out += `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`
    return out
  })
