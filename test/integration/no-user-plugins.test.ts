/**
 * oclif loads "user" and "link" plugins named in its data folder's package.json ($SSHCA_DATA_DIR,
 * $XDG_DATA_HOME/sshca, ~/.local/share/sshca) and runs their hooks before any command. Root runs sshca
 * (`sshca host …`, the renewal) with environments it did not choose — `su` without `-` keeps
 * XDG_DATA_HOME, `sudo -E` keeps HOME — so whoever could write that folder would run code as root.
 * sshca loads no plugin but its own (bin/run.cjs).
 */
import assert from 'node:assert/strict'
import {existsSync, mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {BIN, ROOT, sshca} from '../helpers/cli.ts'
import {run} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'

/** An oclif plugin whose init hook writes `marker`, linked from `<dataDir>/package.json` (oclif's user plugins). */
function plantPlugin(dataDir: string): string {
  const dir = tempDir()
  const marker = join(dir, 'ran')
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({name: 'evil', version: '1.0.0', type: 'commonjs', oclif: {hooks: {init: './hook.js'}}}),
  )
  writeFileSync(
    join(dir, 'hook.js'),
    `module.exports = async function () { require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran') }\n`,
  )
  mkdirSync(dataDir, {recursive: true})
  writeFileSync(
    join(dataDir, 'package.json'),
    JSON.stringify({oclif: {plugins: [{type: 'link', name: 'evil', root: dir}]}}),
  )
  return marker
}

describe("no plugin but sshca's own", function () {
  this.timeout(60_000)

  // each way oclif finds its data folder: the variable, then the folder it names
  const cases: [string, (d: string) => NodeJS.ProcessEnv, (d: string) => string][] = [
    ['$XDG_DATA_HOME/sshca', (d) => ({XDG_DATA_HOME: d}), (d) => join(d, 'sshca')],
    ['$SSHCA_DATA_DIR', (d) => ({SSHCA_DATA_DIR: d}), (d) => d],
    ['~/.local/share/sshca', (d) => ({HOME: d, XDG_DATA_HOME: ''}), (d) => join(d, '.local', 'share', 'sshca')],
  ]
  it("the planted plugin is one oclif loads by default: its hook runs under oclif's own defaults (the control)", async () => {
    const d = tempDir()
    const marker = plantPlugin(join(d, 'sshca'))
    // oclif as bin/run.cjs started it before: execute() with no load options but the package's folder
    const script = `require('@oclif/core').execute({dir: ${JSON.stringify(BIN)}, args: ['krl', '--help']})`
    const r = await run(process.execPath, ['-e', script], {cwd: ROOT, env: {...process.env, XDG_DATA_HOME: d}})
    assert.equal(r.code, 0, r.stderr)
    assert.equal(existsSync(marker), true, 'oclif ran the planted hook')
  })

  for (const [where, env, folder] of cases) {
    it(`a link plugin named in ${where} is not loaded: its init hook does not run`, async () => {
      const d = tempDir()
      const marker = plantPlugin(folder(d))
      const r = await sshca(['krl', '--help'], {env: env(d)})
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /USAGE/)
      assert.equal(existsSync(marker), false, 'the planted hook ran')
    })
  }
})
