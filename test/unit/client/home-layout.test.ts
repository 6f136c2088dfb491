/** $SSHCA_HOME's layout version: older homes are brought forward, newer or damaged ones refused untouched. */
import assert from 'node:assert/strict'
import {existsSync, mkdirSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {SshcaError} from '../../../src/errors.ts'
import {
  HOME_LAYOUT,
  LAYOUT_FILE,
  ensureHomeLayout,
  readLayout,
  type HomeMigration,
} from '../../../src/client/home/home-layout.ts'
import {tempDir} from '../../helpers/tmp.ts'

/** A home as sshca 0.1.0 wrote it: no layout.json. */
function oldHome(): string {
  const home = tempDir('sshca-layout-')
  mkdirSync(join(home, 'contexts', 'corp'), {recursive: true, mode: 0o700})
  writeFileSync(join(home, 'contexts', 'corp', 'context.json'), '{"name":"corp"}\n', {mode: 0o600})
  writeFileSync(join(home, 'current'), 'corp\n', {mode: 0o600})
  return home
}

const layoutOf = (home: string): unknown => JSON.parse(readFileSync(join(home, LAYOUT_FILE), 'utf8')).layout

/** A step that renames current → current-context (idempotent: does nothing once done). */
const renameCurrent: HomeMigration = {
  to: 2,
  what: 'current → current-context',
  apply(home) {
    if (existsSync(join(home, 'current'))) renameSync(join(home, 'current'), join(home, 'current-context'))
  },
}

describe('the $SSHCA_HOME layout', () => {
  it('a home from before layouts had numbers is layout 1, and is stamped 0600 with this layout', () => {
    const home = oldHome()
    assert.equal(readLayout(home), 1)
    const r = ensureHomeLayout(home)
    assert.deepEqual(r, {from: 1, to: HOME_LAYOUT, applied: [], stamped: true})
    assert.equal(layoutOf(home), HOME_LAYOUT)
    assert.equal(statSync(join(home, LAYOUT_FILE)).mode & 0o777, 0o600)
    assert.equal(readFileSync(join(home, 'current'), 'utf8'), 'corp\n')
  })

  it('a home that does not exist yet is left alone (bootstrap creates it)', () => {
    const home = join(tempDir('sshca-layout-'), 'not-yet')
    assert.equal(ensureHomeLayout(home).stamped, false)
    assert.equal(existsSync(home), false)
  })

  it('runs the steps an older home needs, once, and records each', () => {
    const home = oldHome()
    const r = ensureHomeLayout(home, [renameCurrent])
    assert.deepEqual(r.applied, ['current → current-context'])
    assert.equal(layoutOf(home), 2)
    assert.equal(readFileSync(join(home, 'current-context'), 'utf8'), 'corp\n')
    assert.deepEqual(ensureHomeLayout(home, [renameCurrent]).applied, [])
  })

  it('a step that fails leaves the layout where it was, so the next run repeats it', () => {
    const home = oldHome()
    let fail = true
    const flaky: HomeMigration = {
      ...renameCurrent,
      apply(h) {
        if (fail) throw new Error('disk full')
        renameCurrent.apply(h)
      },
    }
    assert.throws(
      () => ensureHomeLayout(home, [flaky]),
      (e: unknown) =>
        e instanceof SshcaError && e.code === 'ERR_HOME_LAYOUT' && /from layout 1 to 2 .*disk full/.test(e.message),
    )
    assert.equal(readLayout(home), 1)
    fail = false
    assert.deepEqual(ensureHomeLayout(home, [flaky]).applied, ['current → current-context'])
    assert.equal(readLayout(home), 2)
  })

  it('refuses a home written by a newer sshca, and changes nothing in it', () => {
    const home = oldHome()
    writeFileSync(join(home, LAYOUT_FILE), `{"layout": ${HOME_LAYOUT + 1}}\n`, {mode: 0o600})
    const before = readdirSync(home).sort()
    assert.throws(
      () => ensureHomeLayout(home),
      (e: unknown) =>
        e instanceof SshcaError &&
        e.code === 'ERR_HOME_LAYOUT' &&
        /written by a newer sshca/.test(e.message) &&
        /upgrade sshca/.test(e.hint ?? ''),
    )
    assert.deepEqual(readdirSync(home).sort(), before)
    assert.equal(layoutOf(home), HOME_LAYOUT + 1)
  })

  for (const text of ['', 'not json', '{"layout": "2"}', '{"layout": 0}', '{"layout": 1.5}', 'null', '[]']) {
    it(`refuses a damaged layout.json: ${JSON.stringify(text)}`, () => {
      const home = oldHome()
      writeFileSync(join(home, LAYOUT_FILE), text, {mode: 0o600})
      assert.throws(
        () => ensureHomeLayout(home),
        (e: unknown) => e instanceof SshcaError && e.code === 'ERR_HOME_LAYOUT' && /is damaged/.test(e.message),
      )
    })
  }
})
