/**
 * Usage errors as sshca errors: oclif's parse failures (missing or unknown flags, a bad option
 * value, extra arguments) and unknown commands become ERR_USAGE with one short message and the
 * command's usage line as the hint — the same shape under --json as every other error, exit 2.
 */
import {SshcaError} from '../errors.ts'
import {editDistance} from '../util/text.ts'

interface FlagSpec {
  required?: boolean
  type?: string
  hidden?: boolean
  char?: string
}
interface CommandSpec {
  id?: string
  flags?: Record<string, FlagSpec>
  args?: Record<string, {required?: boolean}>
}

/** `sshca bootstrap --ca-url <value> --fingerprint <value> [options]`, from the command's own flags. */
export function usageLine(bin: string, cmd: CommandSpec): string {
  const words = [bin, ...(cmd.id ?? '').split(':').filter(Boolean)]
  for (const [name, a] of Object.entries(cmd.args ?? {}))
    words.push(a.required ? name.toUpperCase() : `[${name.toUpperCase()}]`)
  const flags = Object.entries(cmd.flags ?? {}).filter(([, f]) => !f.hidden)
  for (const [name, f] of flags) if (f.required) words.push(f.type === 'boolean' ? `--${name}` : `--${name} <value>`)
  if (flags.some(([, f]) => !f.required)) words.push('[options]')
  return words.join(' ')
}

/** True for oclif's own command-line errors (they carry `oclif.exit` 2 or a `parse` record). */
export function isOclifUsageError(err: unknown): boolean {
  const e = err as {oclif?: {exit?: number}; parse?: unknown}
  return typeof e === 'object' && e !== null && (e.parse !== undefined || e.oclif?.exit === 2)
}

/** The short message of an oclif parse error: its lines without oclif's "see more help" footer. */
export function usageMessage(err: unknown): string {
  const missing = (err as {args?: {name?: string}[]}).args
  if (Array.isArray(missing) && /^Missing \d+ required arg/.test(String((err as Error).message))) {
    const names = missing.map((a) => (a.name ?? '?').toUpperCase())
    const multi = /Note: (.*?) allows? multiple values/.exec(String((err as Error).message))?.[1]
    return `missing ${names.length === 1 ? 'argument' : 'arguments'} ${names.join(' ')}${multi ? ` (give ${names.length === 1 ? 'it' : 'them'} before ${multi}, or after --)` : ''}`
  }
  const raw = String((err as Error).message ?? err)
  const lines = raw
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^See more help with/.test(l) && l !== 'The following errors occurred:')
  return lines.join('; ') || 'the command line is incomplete or contradictory'
}

export function usageError(err: unknown, bin: string, cmd: CommandSpec, message = usageMessage(err)): SshcaError {
  const id = (cmd.id ?? '').replace(/:/g, ' ')
  return new SshcaError('ERR_USAGE', message, {
    hint: `usage: ${usageLine(bin, cmd)}   (${bin} ${id ? `${id} ` : ''}--help for examples)`,
  })
}

/** An unknown command: the closest known one, when there is one. */
export function unknownCommand(id: string, known: readonly string[], bin: string): SshcaError {
  const spoken = id.replace(/:/g, ' ')
  const best = known.map((k) => ({k, d: editDistance(k, id)})).sort((a, b) => a.d - b.d)[0]
  const suggestion =
    best && best.d <= Math.max(2, Math.floor(id.length / 3))
      ? `did you mean \`${bin} ${best.k.replace(/:/g, ' ')}\`? `
      : ''
  return new SshcaError('ERR_USAGE', `"${spoken}" is not an sshca command`, {
    hint: `${suggestion}${bin} --help lists the commands`,
  })
}
