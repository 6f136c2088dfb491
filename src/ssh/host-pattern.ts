/**
 * OpenSSH host pattern lists (ssh_config(5) PATTERNS): comma-separated globs with `*` and `?`,
 * `!` negating an entry. The same list goes into known_hosts (`@cert-authority <list> key`) and into
 * ssh_config (`Match host <list>`), so only what both read the same way is accepted: no whitespace,
 * no quotes, no `[host]:port` forms. Hostnames are compared lower-cased, as ssh does.
 *
 * Set algebra on globs, for the client: does one list lie within another (`config --pattern` may
 * only narrow the CA's), and may two lists match the same host (two contexts claiming one host).
 */
import {isIP} from 'node:net'
import {SshcaError} from '../errors.ts'
import {asciiLower} from '../util/text.ts'

export interface PatternEntry {
  glob: string
  negated: boolean
}

/**
 * The list a CA uses to say "no hosts": one negation and nothing positive, which ssh never
 * matches. `ca init` writes it when --dns names no domain; the client then asks for --pattern.
 */
export const NO_HOSTS = '!*'

const ENTRY = /^[a-z0-9.*?_:-]+$/

/** Parses and lower-cases a pattern list; throws ERR_USAGE naming what is wrong. */
export function parsePatternList(list: string, what = 'host pattern'): PatternEntry[] {
  const entries = asciiLower(list).split(',')
  const out: PatternEntry[] = []
  for (const raw of entries) {
    const negated = raw.startsWith('!')
    const glob = negated ? raw.slice(1) : raw
    if (!ENTRY.test(glob)) {
      throw new SshcaError('ERR_USAGE', `the ${what} "${list}" has an entry "${raw}" that is not a host glob`, {
        hint: 'a comma-separated list of names with * and ? (and ! to exclude), e.g. "*.example.com,!bastion.example.com"; no spaces, quotes or [host]:port',
      })
    }
    out.push({glob, negated})
  }
  return out
}

export const formatPatternList = (entries: readonly PatternEntry[]): string =>
  entries.map((e) => `${e.negated ? '!' : ''}${e.glob}`).join(',')

export function positives(list: string): string[] {
  return parsePatternList(list)
    .filter((e) => !e.negated)
    .map((e) => e.glob)
}

/**
 * The list's positive entries that match hosts in any domain: a wildcard not followed by a dot and a
 * domain (`*`, `?*`, `**`, `*example.com`), unless it comes after two octets of an IPv4 address
 * (`10.0.*`). `*.com` is not among them: it reads as `*.corp` does, and only a list of public suffixes
 * could tell the two apart.
 */
export function broadEntries(list: string): string[] {
  return positives(list).filter(
    (g) => /[*?]/.test(g) && !/[*?]\.[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(g) && !/^\d{1,3}\.\d{1,3}\./.test(g),
  )
}

/** True when the list matches no host at all (only negations, such as NO_HOSTS). */
export function namesNoHosts(list: string): boolean {
  return positives(list).length === 0
}

/**
 * The pattern a CA sent (GET /ssh/roots), as the client stores it: lower-cased when it is a list ssh
 * reads as we do, else NO_HOSTS. It ends up in known_hosts and ssh_config, so a value with a space,
 * a quote or a newline (an injected `ProxyCommand` line) must never pass; absent names no hosts.
 */
export function caHostPattern(raw: string | undefined): string {
  // Stryker disable next-line ConditionalExpression: parsing undefined throws, and the catch below names no hosts too
  if (raw === undefined) return NO_HOSTS
  try {
    return formatPatternList(parsePatternList(raw))
  } catch {
    return NO_HOSTS
  }
}

/** ssh's match_pattern: `*` any run (dots included), `?` one character. */
export function globMatches(glob: string, name: string): boolean {
  const memo = new Map<number, boolean>()
  const go = (i: number, j: number): boolean => {
    const k = i * (name.length + 1) + j
    const hit = memo.get(k)
    if (hit !== undefined) return hit
    let r: boolean
    if (i === glob.length) r = j === name.length
    else if (glob[i] === '*') r = go(i + 1, j) || (j < name.length && go(i, j + 1))
    else r = j < name.length && (glob[i] === '?' || glob[i] === name[j]) && go(i + 1, j + 1)
    memo.set(k, r)
    return r
  }
  return go(0, 0)
}

/** ssh's match_hostname for a whole list: some positive entry matches and no negated one does. */
export function listMatches(list: string, host: string): boolean {
  const h = asciiLower(host)
  let hit = false
  for (const e of parsePatternList(list)) {
    if (!globMatches(e.glob, h)) continue
    if (e.negated) return false
    hit = true
  }
  return hit
}

/**
 * True when every name `inner` matches, `outer` matches too. Sound (never true by mistake); it may
 * answer false for exotic pairs that are in fact covered, which only makes --pattern stricter.
 */
export function globCovers(outer: string, inner: string): boolean {
  const memo = new Map<number, boolean>()
  const go = (i: number, j: number): boolean => {
    const k = i * (inner.length + 1) + j
    const hit = memo.get(k)
    if (hit !== undefined) return hit
    let r: boolean
    if (i === outer.length) r = j === inner.length
    else if (outer[i] === '*') r = go(i + 1, j) || (j < inner.length && go(i, j + 1))
    else if (j === inner.length || inner[j] === '*') r = false
    else if (inner[j] === '?') r = outer[i] === '?' && go(i + 1, j + 1)
    else r = (outer[i] === '?' || outer[i] === inner[j]) && go(i + 1, j + 1)
    memo.set(k, r)
    return r
  }
  return go(0, 0)
}

/** True when some name matches both globs. */
export function globsIntersect(a: string, b: string): boolean {
  const memo = new Map<number, boolean>()
  const go = (i: number, j: number): boolean => {
    const k = i * (b.length + 1) + j
    const hit = memo.get(k)
    if (hit !== undefined) return hit
    let r: boolean
    if (i === a.length && j === b.length) r = true
    else if (i < a.length && a[i] === '*') r = go(i + 1, j) || (j < b.length && go(i, j + 1))
    else if (j < b.length && b[j] === '*') r = go(i, j + 1) || (i < a.length && go(i + 1, j))
    else if (i === a.length || j === b.length) r = false
    else r = (a[i] === '?' || b[j] === '?' || a[i] === b[j]) && go(i + 1, j + 1)
    memo.set(k, r)
    return r
  }
  return go(0, 0)
}

/**
 * May one host be matched by both lists? Judged on the positive entries (negations ignored), so it
 * errs towards "yes": it feeds a warning, never a refusal.
 */
export function listsOverlap(a: string, b: string): boolean {
  const pa = positives(a)
  const pb = positives(b)
  return pa.some((x) => pb.some((y) => globsIntersect(x, y)))
}

/**
 * The list `sshca config` writes: the CA's, or `requested` when it lies within the CA's (every
 * positive entry covered by a positive entry of the CA; the CA's exclusions are kept). A CA that
 * names no hosts leaves the choice to the person, who must then make it.
 */
export function effectivePattern(caPattern: string, requested?: string): string {
  // Stryker disable next-line StringLiteral: the label only words the error
  const ca = parsePatternList(caPattern, "CA's host pattern")
  const caPositives = ca.filter((e) => !e.negated)
  if (requested === undefined) {
    if (caPositives.length === 0) {
      throw new SshcaError(
        'ERR_USAGE',
        'the CA names no hosts for its host certificates (its ssh.hostPattern is empty)',
        {
          hint: 'say which hosts this CA vouches for: sshca config --pattern "*.corp.example.com" (ask the CA operator to set ssh.hostPattern in ca.yaml)',
        },
      )
    }
    return formatPatternList(ca)
  }
  // Stryker disable next-line StringLiteral: the label only words the error
  const want = parsePatternList(requested, '--pattern')
  if (want.every((e) => e.negated))
    throw new SshcaError('ERR_USAGE', `--pattern "${requested}" names no hosts`, {
      hint: 'give at least one name or glob that is not negated',
    })
  // a CA that names no hosts leaves the whole choice to the person (its "!*" is no exclusion to keep)
  if (caPositives.length === 0) return formatPatternList(want)
  const wider = want.filter((e) => !e.negated && !caPositives.some((c) => globCovers(c.glob, e.glob)))
  if (wider.length > 0) {
    throw new SshcaError(
      'ERR_USAGE',
      `--pattern "${requested}" is wider than the CA's host pattern "${caPattern}": ${wider.map((e) => e.glob).join(', ')} lies outside it`,
      {
        hint: '--pattern may only narrow the hosts the CA vouches for; to widen them, the CA operator changes ssh.hostPattern',
      },
    )
  }
  const out = [...want]
  for (const e of ca) if (e.negated && !out.some((o) => o.negated && o.glob === e.glob)) out.push(e)
  return formatPatternList(out)
}

/** A DNS name (not an IP, not a wildcard) with at least `labels` labels. */
function dnsLabels(name: string): string[] | undefined {
  const n = asciiLower(name).replace(/\.$/, '')
  if (isIP(n) !== 0 || n.includes('*') || !/^[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(n)) return undefined
  return n.split('.')
}

/**
 * Second-level labels that public suffixes under a country code use (co.uk, com.au, ac.jp …): a
 * domain such as acme.co.uk must not turn into *.co.uk. Not the Public Suffix List; a name this does
 * not cover only makes the derived pattern narrower or absent, never wider than the parent domain.
 */
const PUBLIC_SECOND_LEVEL = new Set([
  'ac',
  'co',
  'com',
  'edu',
  'gob',
  'gov',
  'govt',
  'ltd',
  'me',
  'mil',
  'net',
  'nic',
  'or',
  'org',
  'plc',
  'sch',
  'ne',
  'go',
  'gen',
  'nom',
  'ind',
  'res',
])

/**
 * The host pattern a CA named `dnsNames` vouches for: `*.<parent domain>` of each DNS name whose
 * parent is a private domain (`ca.example.com` → `*.example.com`). IP addresses, single-label names
 * and names whose parent is a top-level or public second-level domain give nothing; when nothing is
 * left the CA names no hosts (NO_HOSTS) and the operator writes the pattern. Never `*`.
 */
export function derivePattern(dnsNames: readonly string[]): string {
  const out: string[] = []
  for (const name of dnsNames) {
    const labels = dnsLabels(name)
    if (!labels || labels.length < 3) continue
    const parent = labels.slice(1)
    if (parent.length === 2 && parent[1]!.length === 2 && PUBLIC_SECOND_LEVEL.has(parent[0]!)) continue
    const glob = `*.${parent.join('.')}`
    if (!out.includes(glob)) out.push(glob)
  }
  return out.length > 0 ? out.join(',') : NO_HOSTS
}
