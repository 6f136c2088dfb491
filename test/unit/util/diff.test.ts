/**
 * The dry-run diff: `patch` (GNU) applies it to the old text and gets the new one, for the edits sshca
 * makes and for awkward ones (empty files, missing final newlines, changes at both ends).
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {unifiedDiff} from '../../../src/util/diff.ts'
import {tempDir} from '../../helpers/tmp.ts'

const dir = tempDir('sshca-diff-')

function roundTrip(before: string, after: string): string {
  const d = unifiedDiff(before, after, {from: 'a/f', to: 'b/f'})
  const file = join(dir, 'f')
  writeFileSync(file, before)
  const r = spawnSync('patch', ['--quiet', '--force', '--no-backup-if-mismatch', file], {input: d, encoding: 'utf8'})
  assert.equal(r.status, 0, `patch refused:\n${d}\n${r.stdout}${r.stderr}`)
  assert.equal(readFileSync(file, 'utf8'), after, d)
  return d
}

describe('unifiedDiff', () => {
  const block = (k: string) => `# >>> sshca prod\n@cert-authority *.example.com ${k}\n# <<< sshca prod\n`
  const others = Array.from({length: 20}, (_, i) => `host${i} ssh-ed25519 AAAA${i}\n`).join('')

  it('nothing for equal texts', () => assert.equal(unifiedDiff('a\n', 'a\n', {from: 'x', to: 'y'}), ''))

  it('a block replaced in the middle: one hunk, three lines of context each side', () => {
    const d = roundTrip(`${others}${block('KEY1')}${others}`, `${others}${block('KEY2')}${others}`)
    assert.match(d, /^@@ -19,7 \+19,7 @@$/m)
    assert.equal(d.split('\n').filter((l) => l.startsWith('-') && !l.startsWith('---')).length, 1)
  })

  it('a block appended, an Include put on top, an empty file filled, a file emptied', () => {
    roundTrip(others, `${others}${block('K')}`)
    const d = roundTrip('Host *\n  User alice\n', 'Include /home/alice/.sshca/ssh_config\nHost *\n  User alice\n')
    assert.match(d, /^@@ -0,0 \+1 @@$|^@@ -1,2 \+1,3 @@$/m)
    roundTrip('', block('K'))
    roundTrip(block('K'), '')
  })

  it('missing final newlines, CRLF, and changes at both ends', () => {
    roundTrip('a\nb\nc', 'a\nb\nc\n')
    roundTrip('a\nb\nc\n', 'a\nB\nc')
    roundTrip('a\r\nb\r\n', 'a\r\nx\r\nb\r\n')
    roundTrip(`first\n${others}last\n`, `FIRST\n${others}LAST\n`)
  })
})
