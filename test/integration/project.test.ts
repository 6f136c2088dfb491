/**
 * Guards on what the project commits: a fresh oclif.manifest.json (start-up depends on it), fresh
 * completions, and help with examples and --json on every command.
 */
import assert from 'node:assert/strict'
import {cpSync, mkdirSync, readFileSync, symlinkSync} from 'node:fs'
import {join} from 'node:path'
import {generate} from '../../scripts/completions.ts'
import {ROOT, sshca} from '../helpers/cli.ts'
import {runOk} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'

const committed = () => JSON.parse(readFileSync(join(ROOT, 'oclif.manifest.json'), 'utf8'))

describe('project', function () {
  this.timeout(120_000)

  it('oclif.manifest.json matches the commands in dist/ (run `npm run manifest` when this fails)', async () => {
    const dir = tempDir('sshca-manifest-')
    cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'))
    cpSync(join(ROOT, 'dist'), join(dir, 'dist'), {recursive: true})
    mkdirSync(join(dir, 'bin'))
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
    await runOk(process.execPath, [join(ROOT, 'node_modules', 'oclif', 'bin', 'run.js'), 'manifest'], {cwd: dir})
    const fresh = JSON.parse(readFileSync(join(dir, 'oclif.manifest.json'), 'utf8'))
    // paths differ between the checkout and the copy; the command shapes must not
    const strip = (m: {commands: Record<string, Record<string, unknown>>}) =>
      Object.fromEntries(
        Object.entries(m.commands).map(([id, c]) => [id, {...c, isESM: undefined, relativePath: undefined}]),
      )
    assert.deepEqual(strip(fresh), strip(committed()))
  })

  it('completions/ matches the manifest (run `npm run manifest` when this fails)', () => {
    for (const [name, text] of Object.entries(generate(committed()))) {
      assert.equal(readFileSync(join(ROOT, 'completions', name), 'utf8'), text, `completions/${name} is stale`)
    }
  })

  it('every command has a summary, examples and --json, and --help shows them', async () => {
    const {commands} = committed()
    assert.ok(Object.keys(commands).length >= 2)
    for (const [id, c] of Object.entries<{summary?: string; examples?: string[]; flags: Record<string, unknown>}>(
      commands,
    )) {
      assert.ok(c.summary, `${id} has no summary`)
      assert.ok((c.examples ?? []).length > 0, `${id} has no examples`)
      // proxycommand's stdout is ssh's transport: no document can go there
      if (id !== 'proxycommand') assert.ok(c.flags.json, `${id} has no --json`)
      const help = await sshca([...id.split(':'), '--help'])
      assert.equal(help.code, 0, `${id} --help failed: ${help.stderr}`)
      assert.match(help.stdout, /EXAMPLES/, `${id} --help shows no examples`)
    }
  })
})
