/** Reading a running CA's audit file (JSON lines). */
import {readFileSync} from 'node:fs'

/**
 * The file's complete lines, parsed. A reader can catch a line while the CA is writing it: whatever
 * follows the last newline is left for the next read, as `tail -f` would.
 */
export function readAuditLines(file: string): Record<string, unknown>[] {
  const text = readFileSync(file, 'utf8')
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}
