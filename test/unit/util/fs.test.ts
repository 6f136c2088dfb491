import assert from 'node:assert/strict'
import {lstatSync, readFileSync, symlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {refuseSymlink, writeFileAtomic} from '../../../src/util/fs.ts'
import {rejectsCode} from '../../helpers/assert.ts'
import {tempDir} from '../../helpers/tmp.ts'

describe('atomic writes and symlinks', () => {
  it('writeFileAtomic replaces a symlink at the name; the file it pointed to is untouched', async () => {
    const d = tempDir()
    const victim = join(d, 'authorized_keys')
    writeFileSync(victim, 'ssh-ed25519 AAAA mine\n')
    symlinkSync(victim, join(d, 'out-cert.pub'))
    await writeFileAtomic(join(d, 'out-cert.pub'), 'certificate\n', 0o644)
    assert.equal(readFileSync(victim, 'utf8'), 'ssh-ed25519 AAAA mine\n')
    assert.equal(lstatSync(join(d, 'out-cert.pub')).isSymbolicLink(), false)
    assert.equal(readFileSync(join(d, 'out-cert.pub'), 'utf8'), 'certificate\n')
    assert.equal(lstatSync(join(d, 'out-cert.pub')).mode & 0o777, 0o644)
  })

  it('refuseSymlink: ERR_UNSAFE_PATH for a link (dangling too), nothing for a file or a missing name', async () => {
    const d = tempDir()
    symlinkSync('/nonexistent/target', join(d, 'dangling'))
    await rejectsCode(refuseSymlink(join(d, 'dangling')), 'ERR_UNSAFE_PATH', {}, /is a symbolic link/)
    writeFileSync(join(d, 'plain'), '')
    await refuseSymlink(join(d, 'plain'))
    await refuseSymlink(join(d, 'missing'))
  })
})
