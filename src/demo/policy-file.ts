/** Sets top-level settings in a ca.yaml, keeping its comments. */
import {readFile} from 'node:fs/promises'
import {parseDocument} from 'yaml'
import {writeFileAtomic} from '../util/fs.ts'

export async function writePolicy(configPath: string, settings: Record<string, unknown>): Promise<void> {
  const doc = parseDocument(await readFile(configPath, 'utf8'))
  for (const [k, v] of Object.entries(settings)) doc.set(k, v)
  await writeFileAtomic(configPath, doc.toString())
}
