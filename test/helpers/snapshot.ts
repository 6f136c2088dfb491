import {readFileSync, readdirSync, statSync} from 'node:fs'
import {join} from 'node:path'

/** Every file and folder under `dir` with its mode (and content for files): what "nothing written" compares. */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  const walk = (d: string) => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      const mode = (statSync(p).mode & 0o777).toString(8)
      if (e.isDirectory()) {
        out[p] = `dir ${mode}`
        walk(p)
      } else out[p] = `${mode} ${readFileSync(p, 'utf8')}`
    }
  }
  try {
    walk(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw err
  }
  return out
}
