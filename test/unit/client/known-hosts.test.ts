import assert from 'node:assert/strict'
import {beginMarker, endMarker, managedBlock, mergeKnownHosts} from '../../../src/client/local/known-hosts.ts'
import {throwsCode} from '../../helpers/assert.ts'

const KEY1 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl demo host CA'
const KEY2 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBz4b0hJm8ZFf1vQz3K1l9m2mY3sWbqg7XyQWm3q0aA1 demo host CA'
const OTHER =
  '# my own comment\n|1|abc=|def= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGH1\nhost.example.com ssh-rsa AAAAB3NzaC1yc2E=\n'

describe('known_hosts managed block', () => {
  it('appends a block to a file and keeps every other byte', () => {
    const {text, changed} = mergeKnownHosts(OTHER, 'demo', '*', [KEY1])
    assert.equal(changed, true)
    assert.equal(text, `${OTHER}${beginMarker('demo')}\n@cert-authority * ${KEY1}\n${endMarker('demo')}\n`)
  })

  it('is idempotent: a second run changes nothing and leaves one block', () => {
    const once = mergeKnownHosts(OTHER, 'demo', '*', [KEY1]).text
    const twice = mergeKnownHosts(once, 'demo', '*', [KEY1])
    assert.equal(twice.changed, false)
    assert.equal(twice.text, once)
    assert.equal(twice.text.split(beginMarker('demo')).length, 2)
  })

  it('replaces the block in place when the key changes, keeping lines before and after', () => {
    const withBlock = mergeKnownHosts(OTHER, 'demo', '*', [KEY1]).text + 'after.example.com ssh-ed25519 AAAAC3Nz\n'
    const {text, changed} = mergeKnownHosts(withBlock, 'demo', '*.example.com', [KEY2])
    assert.equal(changed, true)
    assert.equal(
      text,
      `${OTHER}${beginMarker('demo')}\n@cert-authority *.example.com ${KEY2}\n${endMarker('demo')}\nafter.example.com ssh-ed25519 AAAAC3Nz\n`,
    )
  })

  it('keeps CRLF files CRLF and a missing final newline missing', () => {
    const crlf = OTHER.replace(/\n/g, '\r\n')
    const {text} = mergeKnownHosts(crlf, 'demo', '*', [KEY1])
    assert.equal(text, `${crlf}${beginMarker('demo')}\r\n@cert-authority * ${KEY1}\r\n${endMarker('demo')}\r\n`)
    const noFinal = `${beginMarker('demo')}\n@cert-authority * ${KEY1}\n${endMarker('demo')}`
    assert.equal(
      mergeKnownHosts(noFinal, 'demo', '*', [KEY2]).text,
      `${beginMarker('demo')}\n@cert-authority * ${KEY2}\n${endMarker('demo')}`,
    )
    assert.equal(
      mergeKnownHosts('last line without newline', 'demo', '*', [KEY1]).text.startsWith(
        'last line without newline\n# >>>',
      ),
      true,
    )
  })

  it("leaves other contexts' blocks alone and collapses duplicates of its own", () => {
    const a = mergeKnownHosts('', 'prod', '*', [KEY1]).text
    const both = mergeKnownHosts(a, 'demo', '*', [KEY1]).text
    const dup = both + `${beginMarker('demo')}\nstale\n${endMarker('demo')}\n`
    const {text} = mergeKnownHosts(dup, 'demo', '*', [KEY2])
    assert.equal(text.split(beginMarker('demo')).length, 2)
    assert.ok(text.startsWith(a))
    assert.ok(!text.includes('stale'))
  })

  it('refuses to guess when a block has no end marker', () => {
    throwsCode(
      () => mergeKnownHosts(`${beginMarker('demo')}\n@cert-authority * ${KEY1}\nmine\n`, 'demo', '*', [KEY2]),
      'ERR_INPUT',
      {},
      /not its end/,
    )
  })

  it('writes only the block into an empty file, and a block is its markers around one line per key', () => {
    const {text, changed} = mergeKnownHosts('', 'demo', '*.example.com', [KEY1, KEY2])
    assert.equal(changed, true)
    assert.equal(
      text,
      `${beginMarker('demo')}\n@cert-authority *.example.com ${KEY1}\n@cert-authority *.example.com ${KEY2}\n${endMarker('demo')}\n`,
    )
    assert.equal(managedBlock('demo', '*.example.com', [KEY1, KEY2]), text)
    assert.equal(managedBlock('demo', '*', []), `${beginMarker('demo')}\n${endMarker('demo')}\n`)
  })

  it('finds and replaces its block in a CRLF file, at the end or in the middle, with or without a final newline', () => {
    const crlf = (s: string) => s.replace(/\n/g, '\r\n')
    const old = crlf(mergeKnownHosts(OTHER, 'demo', '*', [KEY1]).text)
    const want = crlf(mergeKnownHosts(OTHER, 'demo', '*', [KEY2]).text)
    assert.deepEqual(mergeKnownHosts(old, 'demo', '*', [KEY2]), {text: want, changed: true})
    assert.deepEqual(mergeKnownHosts(`${old}mine\r\n`, 'demo', '*', [KEY2]), {text: `${want}mine\r\n`, changed: true})
    assert.deepEqual(mergeKnownHosts(old.slice(0, -2), 'demo', '*', [KEY2]), {text: want.slice(0, -2), changed: true})
    assert.deepEqual(mergeKnownHosts(old, 'demo', '*', [KEY1]), {text: old, changed: false})
  })

  it("only whole marker lines count: a marker inside another line is the person's text", () => {
    const quoted = `# see "${beginMarker('demo')}" below\n`
    const {text} = mergeKnownHosts(quoted, 'demo', '*', [KEY1])
    assert.equal(text, `${quoted}${managedBlock('demo', '*', [KEY1])}`)
    // another context's markers are not this one's
    assert.equal(
      mergeKnownHosts(managedBlock('demo-2', '*', [KEY1]), 'demo', '*', [KEY2]).text.split('# >>> sshca').length,
      3,
    )
  })

  it('appends to a CRLF file whose last line has no terminator with a CRLF, not a bare LF', () => {
    const {text} = mergeKnownHosts('a\r\nb', 'demo', '*', [KEY1])
    assert.equal(text, `a\r\nb\r\n${managedBlock('demo', '*', [KEY1], '\r\n')}`)
  })

  it("a carriage return inside a line is not a line ending: a marker with one in it is the person's text", () => {
    const begin = beginMarker('demo')
    const mine = `${begin.slice(0, 5)}\r${begin.slice(5)}`
    const {text} = mergeKnownHosts(mine, 'demo', '*', [KEY1])
    assert.equal(text, `${mine}\n${managedBlock('demo', '*', [KEY1])}`)
  })

  it('an end marker before the begin marker does not count as its end', () => {
    const text = `${endMarker('demo')}\n${beginMarker('demo')}\n@cert-authority * ${KEY1}\n`
    throwsCode(() => mergeKnownHosts(text, 'demo', '*', [KEY2]), 'ERR_INPUT')
  })
})
