/** The $SSHCA_HOME owner/mode check, on made-up trees. */
import assert from 'node:assert/strict'
import {dirname} from 'node:path'
import {checkHomeTree, type HomeCheckDeps, type PathInfo} from '../../../src/client/home.ts'
import {throwsCode} from '../../helpers/assert.ts'

function tree(entries: Record<string, Partial<PathInfo>>, uid = 1000): HomeCheckDeps {
  const map = new Map(Object.entries(entries))
  const isDir = (p: string) => map.get(p)?.isDirectory ?? [...map.keys()].some((k) => dirname(k) === p && k !== p)
  return {
    uid,
    lstat: (p) =>
      map.has(p)
        ? {uid, mode: isDir(p) ? 0o40700 : 0o100600, isDirectory: isDir(p), isSymbolicLink: false, ...map.get(p)}
        : undefined,
    readdir: (p) => [...map.keys()].filter((k) => k !== p && dirname(k) === p).map((k) => k.slice(p.length + 1)),
    realpath: (p) => p,
  }
}

const H = '/home/a/.sshca'
const good = {
  [H]: {},
  [`${H}/current`]: {},
  [`${H}/contexts`]: {},
  [`${H}/contexts/prod`]: {},
  [`${H}/contexts/prod/context.json`]: {},
  [`${H}/contexts/prod/root_ca.crt`]: {},
  [`${H}/tokens`]: {},
  [`${H}/tokens/prod~sso.json`]: {},
}

describe('$SSHCA_HOME before use', () => {
  it("passes a home of the user's own, 0700/0600; and a home that does not exist yet", () => {
    checkHomeTree(H, tree(good))
    checkHomeTree(H, tree({}))
    checkHomeTree(H, tree({...good, [`${H}/contexts/prod/revoked_host_keys.krl`]: {mode: 0o100644}}))
    checkHomeTree(H, tree({...good, [`${H}/contexts/prod/root_ca.crt`]: {uid: 0}})) // root may own entries
  })

  it('refuses an entry another user owns or can write, naming it (ERR_UNSAFE_PATH)', () => {
    throwsCode(
      () => checkHomeTree(H, tree({...good, [H]: {mode: 0o40777}})),
      'ERR_UNSAFE_PATH',
      {},
      /^\/home\/a\/\.sshca is writable by every user \(mode 0777\)/,
    )
    throwsCode(
      () => checkHomeTree(H, tree({...good, [`${H}/contexts/prod/context.json`]: {mode: 0o100620}})),
      'ERR_UNSAFE_PATH',
      {},
      /context\.json is writable by its group/,
    )
    throwsCode(
      () => checkHomeTree(H, tree({...good, [`${H}/current`]: {uid: 1001}})),
      'ERR_UNSAFE_PATH',
      {},
      /current belongs to uid 1001, not to you \(uid 1000\)/,
    )
    throwsCode(
      () => checkHomeTree(H, tree({...good, [`${H}/contexts/prod/root_ca.crt`]: {isSymbolicLink: true}})),
      'ERR_UNSAFE_PATH',
      {},
      /root_ca\.crt is a symbolic link/,
    )
  })

  it('refuses a refresh token readable by others (ERR_FILE_PERMISSIONS); other files may be readable', () => {
    throwsCode(
      () => checkHomeTree(H, tree({...good, [`${H}/tokens/prod~sso.json`]: {mode: 0o100644}})),
      'ERR_FILE_PERMISSIONS',
      {},
      /prod~sso\.json holds a refresh token and is readable by others \(mode 0644\)/,
    )
  })

  it('does nothing where there are no uids (Windows)', () => {
    assert.doesNotThrow(() => checkHomeTree(H, {...tree({...good, [H]: {mode: 0o40777}}), uid: undefined}))
  })
})
