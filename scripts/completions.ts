/**
 * `npm run manifest` (after `oclif manifest`): writes completions/ from oclif.manifest.json with the
 * generator that `sshca completion` uses (src/cli/completions.ts).
 */
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {generate} from '../src/cli/completions.ts'

export {generate}

if (import.meta.url === `file://${process.argv[1]}`) {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..')
  const manifest = JSON.parse(readFileSync(join(root, 'oclif.manifest.json'), 'utf8'))
  mkdirSync(join(root, 'completions'), {recursive: true})
  for (const [name, text] of Object.entries(generate(manifest))) writeFileSync(join(root, 'completions', name), text)
}
