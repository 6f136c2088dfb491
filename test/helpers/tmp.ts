import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

const dirs: string[] = []

/** A private temporary directory, removed by the root hook after the run. */
export function tempDir(prefix = 'sshca-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix))
  dirs.push(d)
  return d
}

export function removeTempDirs(): void {
  for (const d of dirs.splice(0)) rmSync(d, {recursive: true, force: true})
}
