/**
 * sshca's version, from the package.json beside src/ and dist/ (read once), or, in the single
 * executable, which has no package folder, from what its entry point (scripts/sea/main.ts) recorded.
 */
import {readFileSync} from 'node:fs'

let cached: string | undefined

export function packageVersion(): string {
  if (cached === undefined) {
    const sea = (globalThis as Record<symbol, {version?: unknown} | undefined>)[Symbol.for('sshca.single-executable')]
    if (typeof sea?.version === 'string') return (cached = sea.version)
    try {
      const v = (
        JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {version?: unknown}
      ).version
      cached = typeof v === 'string' ? v : 'unknown'
    } catch {
      cached = 'unknown'
    }
  }
  return cached
}
