import assert from 'node:assert/strict'
import {chooseTokenSource} from '../../../src/cli/token-input.ts'
import {throwsCode} from '../../helpers/assert.ts'

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
})
