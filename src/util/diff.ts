/**
 * A unified diff (`diff -u` format) of two texts, for `--dry-run`s that show what they would change.
 * The changed region is what lies between the longest common prefix and suffix of lines: exact, and
 * minimal for the edits sshca makes (one managed block replaced or added, one line at the top), in
 * one pass whatever the file's size; for scattered edits it is one larger hunk, still correct.
 */
export function unifiedDiff(before: string, after: string, o: {from: string; to: string; context?: number}): string {
  if (before === after) return ''
  const ctx = o.context ?? 3
  const a = splitLines(before)
  const b = splitLines(after)
  let head = 0
  while (head < a.length && head < b.length && a[head] === b[head]) head++
  let tail = 0
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++
  const start = Math.max(0, head - ctx)
  const aEnd = a.length - tail
  const bEnd = b.length - tail
  const after0 = Math.min(tail, ctx)
  const lines = [
    ...a.slice(start, head).map((l) => ` ${l}`),
    ...a.slice(head, aEnd).map((l) => `-${l}`),
    ...b.slice(head, bEnd).map((l) => `+${l}`),
    ...a.slice(aEnd, aEnd + after0).map((l) => ` ${l}`),
  ]
  const aLen = aEnd + after0 - start
  const bLen = bEnd + after0 - start
  // diff -u numbers an empty range by the line before it
  const range = (from: number, len: number) => `${len === 0 ? from : from + 1}${len === 1 ? '' : `,${len}`}`
  return (
    [`--- ${o.from}`, `+++ ${o.to}`, `@@ -${range(start, aLen)} +${range(start, bLen)} @@`, ...lines].join('\n') + '\n'
  )
}

/** Lines without their terminators; a last line without one is marked as diff marks it. */
function splitLines(text: string): string[] {
  if (text === '') return []
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  else lines[lines.length - 1] += '\n\\ No newline at end of file'
  return lines
}
