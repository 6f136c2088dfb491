import assert from 'node:assert/strict'
import {chmodSync, mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {
  chooseTokenSource,
  type ProcessView,
  readEnrollmentToken,
  tokenOnAncestorCommandLine,
} from '../../../src/cli/token-input.ts'
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

describe('tokenOnAncestorCommandLine', () => {
  const T = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ3ZWIxIn0.c2ln'
  // pid → what /proc shows of it: 40 is sudo holding the token, started by 30 (a shell), by 1
  const table: Record<number, ProcessView> = {
    50: {ppid: 40, argv: ['sshca', 'certificate']},
    40: {ppid: 30, argv: ['/usr/bin/sudo', `SSHCA_TOKEN=${T}`, 'sshca', 'certificate']},
    30: {ppid: 1, argv: ['-bash']},
    20: {ppid: 1, argv: ['sh', '-c', `SSHCA_TOKEN='${T}' sshca certificate; exit $?`]},
    1: {ppid: 0, argv: [`/sbin/init ${T}`]},
  }
  const view = (pid: number): ProcessView | undefined => table[pid]

  it('names the nearest process above whose command line holds the token, as an argument or inside one', () => {
    assert.deepEqual(tokenOnAncestorCommandLine(T, view, 50), {pid: 40, command: 'sudo'})
    assert.deepEqual(tokenOnAncestorCommandLine(T, view, 40), {pid: 40, command: 'sudo'})
    assert.deepEqual(tokenOnAncestorCommandLine(T, view, 20), {pid: 20, command: 'sh'})
  })

  it("none when no process above holds it, and never pid 1 (init is no one's wrapper)", () => {
    assert.equal(tokenOnAncestorCommandLine(T, view, 30), undefined)
    assert.equal(tokenOnAncestorCommandLine('another.token.value', view, 50), undefined)
    // too short to be a token: it would be found anywhere (an empty value matches every argument)
    assert.equal(tokenOnAncestorCommandLine('', view, 50), undefined)
    assert.equal(tokenOnAncestorCommandLine('sudo', view, 50), undefined)
  })

  it('stops where /proc cannot be read (a process gone, no /proc) and after 16 generations', () => {
    assert.equal(
      tokenOnAncestorCommandLine(T, () => undefined, 50),
      undefined,
    )
    const chain = (pid: number): ProcessView => ({ppid: pid + 1, argv: pid === 117 ? [T] : ['x']})
    assert.equal(tokenOnAncestorCommandLine(T, chain, 101), undefined)
    assert.deepEqual(tokenOnAncestorCommandLine(T, chain, 102), {pid: 117, command: T})
  })

  it("reads this machine's /proc by default: this test runner holds no token", () => {
    assert.equal(tokenOnAncestorCommandLine(T), undefined)
  })
})
