import assert from 'node:assert/strict'
import {chmodSync, mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {chooseTokenSource, readEnrollmentToken} from '../../../src/cli/token-input.ts'
import {rejectsCode, throwsCode} from '../../helpers/assert.ts'

describe("the enrollment token's source (certificate --host --sign)", () => {
  it('exactly one of --token, --token-file, $SSHCA_TOKEN', () => {
    assert.deepEqual(chooseTokenSource({tokenFile: '/root/t'}), {kind: 'file', path: '/root/t'})
    assert.deepEqual(chooseTokenSource({tokenFile: '-'}), {kind: 'file', path: '-'})
    assert.deepEqual(chooseTokenSource({env: 'eyJ'}), {kind: 'env', value: 'eyJ'})
    assert.deepEqual(chooseTokenSource({token: 'eyJ', env: ''}), {kind: 'flag', value: 'eyJ'})
    throwsCode(() => chooseTokenSource({}), 'ERR_USAGE', {}, /no enrollment token/)
    throwsCode(
      () => chooseTokenSource({tokenFile: '/t', env: 'eyJ'}),
      'ERR_USAGE',
      {},
      /2 ways \(--token-file, \$SSHCA_TOKEN\)/,
    )
    throwsCode(() => chooseTokenSource({token: 'a', tokenFile: '/t', env: 'b'}), 'ERR_USAGE', {}, /3 ways/)
  })

  it('a token file only its owner can read, trimmed; one others may read is refused before it is read; an empty token is an error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sshca-token-'))
    const file = (name: string, text: string, mode: number) => {
      const p = join(dir, name)
      writeFileSync(p, text)
      chmodSync(p, mode)
      return p
    }
    assert.equal(await readEnrollmentToken({kind: 'file', path: file('ok', '  eyJ.a.b\n', 0o600)}), 'eyJ.a.b')
    assert.equal(await readEnrollmentToken({kind: 'file', path: file('owner-only', 'eyJ', 0o400)}), 'eyJ')
    for (const mode of [0o640, 0o604, 0o620, 0o660])
      await rejectsCode(
        readEnrollmentToken({kind: 'file', path: file(`m${mode}`, 'eyJ', mode)}),
        'ERR_FILE_PERMISSIONS',
      )
    await rejectsCode(readEnrollmentToken({kind: 'file', path: join(dir, 'missing')}), 'ERR_FILE_NOT_FOUND')
    await rejectsCode(readEnrollmentToken({kind: 'file', path: file('blank', ' \n', 0o600)}), 'ERR_INPUT')
    assert.equal(await readEnrollmentToken({kind: 'env', value: ' eyJ.env '}), 'eyJ.env')
    assert.equal(await readEnrollmentToken({kind: 'flag', value: 'eyJ.flag'}), 'eyJ.flag')
    await rejectsCode(readEnrollmentToken({kind: 'env', value: '  '}), 'ERR_INPUT')
    await rejectsCode(readEnrollmentToken({kind: 'flag', value: ''}), 'ERR_INPUT')
  })
})
