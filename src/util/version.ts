/** sshca's version, from the package.json beside src/ and dist/ (read once). */
import {readFileSync} from 'node:fs'

let cached: string | undefined

export function packageVersion(): string {
  if (cached === undefined) {
    try {
      const v = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {version?: unknown}).version
      cached = typeof v === 'string' ? v : 'unknown'
    } catch {
      cached = 'unknown'
    }
  }
  return cached
}
