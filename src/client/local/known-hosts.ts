/**
 * The managed @cert-authority block in known_hosts: one block per context, between marker lines,
 * replaced in place. Every byte outside the block is kept as it was (line endings included).
 */
import {SshcaError} from '../../errors.ts'

export const beginMarker = (context: string): string =>
  `# >>> sshca ${context} (managed by \`sshca config\`; changes inside this block are replaced)`
export const endMarker = (context: string): string => `# <<< sshca ${context}`

export function managedBlock(context: string, pattern: string, hostCaKeys: readonly string[], eol = '\n'): string {
  const lines = [beginMarker(context), ...hostCaKeys.map((k) => `@cert-authority ${pattern} ${k}`), endMarker(context)]
  return lines.join(eol) + eol
}

/**
 * `existing` with the context's block replaced (or appended when absent). Throws when a begin marker
 * has no end marker: guessing where the block ends could delete the person's own lines.
 */
export function mergeKnownHosts(
  existing: string,
  context: string,
  pattern: string,
  hostCaKeys: readonly string[],
): {text: string; changed: boolean} {
  // Stryker disable next-line StringLiteral: the file's name only words an error message
  return mergeManagedBlock(existing, context, (eol) => managedBlock(context, pattern, hostCaKeys, eol), 'known_hosts')
}

/**
 * The generic form: `existing` with the block between the context's markers replaced by
 * `block(eol)` (which includes both markers), or appended when there is none. Line endings follow
 * the file's; every byte outside the block is kept.
 */
export function mergeManagedBlock(
  existing: string,
  context: string,
  block: (eol: string) => string,
  fileLabel: string,
): {text: string; changed: boolean} {
  // a file ending in a lone CR is a CRLF file missing its final LF: completing it must not make a
  // line that was not a marker become one, or change the line ending of the next merge
  const eol = existing.includes('\r\n') || existing.endsWith('\r') ? '\r\n' : '\n'
  const text = block(eol)
  const begin = beginMarker(context)
  const end = endMarker(context)
  // line boundaries, keeping each line's own terminator (match is null only for "", which takes the
  // append path, where lines is not read; the last alternative can only match at the end anyway)
  // Stryker disable next-line ArrayDeclaration,Regex: see above
  const lines = existing.match(/[^\n]*\n|[^\n]+$/g) ?? []
  // Stryker disable next-line Regex: a line holds one LF at most, at its end, so "$" after it changes nothing (the CR's "$" is tested)
  const bare = (l: string): string => l.replace(/\r?\n$|\r$/, '')
  const starts = lines.flatMap((l, i) => (bare(l) === begin ? [i] : []))
  if (starts.length === 0) {
    const sep = existing.length === 0 || existing.endsWith('\n') ? '' : existing.endsWith('\r') ? '\n' : eol
    const merged = existing + sep + text
    // Stryker disable next-line ConditionalExpression: a block is never empty, so appending one always changes the text
    return {text: merged, changed: merged !== existing}
  }
  const out: string[] = []
  let i = 0
  let placed = false
  while (i < lines.length) {
    if (bare(lines[i]!) !== begin) {
      out.push(lines[i]!)
      i++
      continue
    }
    let j = i + 1
    while (j < lines.length && bare(lines[j]!) !== end) j++
    if (j === lines.length) {
      throw new SshcaError(
        'ERR_INPUT',
        `${fileLabel} has the start of the sshca "${context}" block but not its end ("${end}")`,
        {hint: 'repair or remove the block by hand, then run sshca config again'},
      )
    }
    if (!placed) {
      // keep the file's final-newline state: a block that ended the file without a newline still does
      const last = lines[j]!
      out.push(last.endsWith('\n') ? text : text.slice(0, -eol.length))
      placed = true
    }
    i = j + 1
  }
  const merged = out.join('')
  return {text: merged, changed: merged !== existing}
}
