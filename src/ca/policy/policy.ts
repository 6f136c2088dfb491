/**
 * The policy: one engine for people and CI jobs. A token's claims must match exactly one enabled
 * rule of its provisioner; the rule alone decides the certificate (principals, key ID, lifetime,
 * options). Pure functions: no I/O, the clock is a parameter.
 */
import type {CertOptions} from '../../ssh/cert.ts'
import {asciiLower} from '../../util/text.ts'
import {denial, type MatchCondition, type PrincipalsFrom, type ProvisionerConfig, type RuleConfig} from './types.ts'

export type Claims = Readonly<Record<string, unknown>>

/** Principal and key ID values are checked, never cleaned: anything else denies. */
export const SAFE_VALUE = /^[A-Za-z0-9._@:/-]+$/
export const MAX_PRINCIPAL_LENGTH = 256
export const MAX_KEY_ID_LENGTH = 256

export interface RuleOutcome {
  rule: string
  matched: boolean
  /** The first condition that failed, in the order the rule lists them. */
  failed?: string
}

function describe(v: unknown): string {
  return JSON.stringify(v)
}

/** A glob, compiled: `test(text)` as a regular expression's, anchored at both ends. */
export interface Glob {
  test(text: string): boolean
}

const STAR = 0 // "*": any run of characters within one path segment
const GLOBSTAR = 1 // "**": any run, across segments (not across a line break, as "." in a regular expression)
const ONE = 2 // "?": one character of a segment
type GlobToken = typeof STAR | typeof GLOBSTAR | typeof ONE | string

const LINE_BREAKS = new Set(['\n', '\r', '\u2028', '\u2029'])

/**
 * `*` matches within one path segment, `**` across segments, `?` one character; everything else is
 * literal. Matched without backtracking: the set of glob positions reachable after each character of
 * the text, so O(text × glob) at worst. The text is the token holder's (a claim, a group name): as a
 * backtracking regular expression, `v*.*.*` took seconds of a thread on one 6 KB claim.
 */
export function compileGlob(glob: string): Glob {
  const tokens: GlobToken[] = []
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!
    // Stryker disable next-line ArithmeticOperator: glob[i - 1] turns "**" into "*" then "**", the same language as "**"
    if (c === '*' && glob[i + 1] === '*') {
      tokens.push(GLOBSTAR)
      i++
    } else if (c === '*') tokens.push(STAR)
    else if (c === '?') tokens.push(ONE)
    else tokens.push(c)
  }
  return {test: (text) => matchGlob(tokens, text)}
}

function matchGlob(tokens: readonly GlobToken[], text: string): boolean {
  const m = tokens.length
  let at = new Uint8Array(m + 1)
  let next = new Uint8Array(m + 1)
  // a star matches the empty run too: the position after it is reachable wherever it is (in order,
  // so that a run of stars passes on). The loops stop at `i !== m`: `i <= m` would only read
  // tokens[m], which is undefined and matches nothing
  const skipStars = (s: Uint8Array): void => {
    for (let i = 0; i !== m; i++) if (s[i] && (tokens[i] === STAR || tokens[i] === GLOBSTAR)) s[i + 1] = 1
  }
  at[0] = 1
  skipStars(at)
  for (let k = 0; k < text.length; k++) {
    const c = text[k]!
    next.fill(0)
    for (let i = 0; i !== m; i++) {
      if (!at[i]) continue
      const t = tokens[i]
      // a star takes the character and stays; "?" or a literal takes it and moves on
      if (t === STAR || t === GLOBSTAR) {
        if (t === STAR ? c !== '/' : !LINE_BREAKS.has(c)) next[i] = 1
      } else if (t === ONE ? c !== '/' : t === c) next[i + 1] = 1
    }
    // Stryker disable next-line ConditionalExpression: an early exit: once no position is reachable none becomes so again, and the end returns false too (the `true` twin, killed by any match, goes with it)
    if (!next.includes(1)) return false
    skipStars(next)
    ;[at, next] = [next, at]
  }
  return at[m] === 1
}

/** undefined when the claim value satisfies the condition, else why not. */
export function checkCondition(claim: string, cond: MatchCondition, claims: Claims): string | undefined {
  // Stryker disable next-line ConditionalExpression: no condition matches undefined either; this only words the reason
  if (!Object.hasOwn(claims, claim) || claims[claim] === undefined || claims[claim] === null)
    return `claim "${claim}" is absent`
  const v = claims[claim]
  if (Array.isArray(cond))
    return cond.some((c) => c === v) ? undefined : `${claim} is ${describe(v)}, not one of ${describe(cond)}`
  if (typeof cond !== 'object') return cond === v ? undefined : `${claim} is ${describe(v)}, not ${describe(cond)}`
  if ('domain' in cond) {
    // Stryker disable next-line StringLiteral: any reason, "" included, fails the rule (evaluateRule compares with undefined)
    if (typeof v !== 'string' || !v.includes('@')) return `${claim} is not an email address`
    const domain = asciiLower(v.slice(v.lastIndexOf('@') + 1))
    return domain === asciiLower(cond.domain)
      ? undefined
      : `${claim} is in domain ${describe(domain)}, not ${describe(cond.domain)}`
  }
  if ('contains' in cond) {
    if (!Array.isArray(v)) return `${claim} is not a list`
    // Stryker disable next-line StringLiteral: any reason, "" included, fails the rule (evaluateRule compares with undefined)
    return v.includes(cond.contains) ? undefined : `${claim} does not contain ${describe(cond.contains)}`
  }
  // Stryker disable next-line StringLiteral: any reason, "" included, fails the rule (evaluateRule compares with undefined)
  if (typeof v !== 'string') return `${claim} is not a string`
  return compileGlob(cond.glob).test(v)
    ? undefined
    : `${claim} is ${describe(v)}, which does not match ${describe(cond.glob)}`
}

export function evaluateRule(rule: RuleConfig, claims: Claims): RuleOutcome {
  if (rule.disabled) return {rule: rule.name, matched: false, failed: 'the rule is disabled'}
  for (const [claim, cond] of Object.entries(rule.match)) {
    const failed = checkCondition(claim, cond, claims)
    if (failed !== undefined) return {rule: rule.name, matched: false, failed}
  }
  return {rule: rule.name, matched: true}
}

/** The one enabled rule the claims match; zero or several is a denial. */
export function selectRule(p: ProvisionerConfig, claims: Claims): {rule: RuleConfig; outcomes: RuleOutcome[]} {
  const outcomes = p.rules.map((r) => evaluateRule(r, claims))
  const matched = p.rules.filter((_, i) => outcomes[i]!.matched)
  if (matched.length === 1) return {rule: matched[0]!, outcomes}
  if (matched.length === 0) {
    throw denial('ERR_POLICY_DENIED', 'no_rule_matched', `no rule of provisioner "${p.name}" matches the token`, {
      provisioner: p.name,
    })
  }
  throw denial(
    'ERR_POLICY_DENIED',
    'multiple_rules_matched',
    `rules ${matched.map((r) => `"${r.name}"`).join(', ')} of provisioner "${p.name}" all match the token`,
    {
      provisioner: p.name,
      rules: matched.map((r) => r.name),
    },
  )
}

const PLACEHOLDER = /\$\{([A-Za-z_][A-Za-z0-9_-]*)(?:\.(local|domain))?(\|step)?\}/g

/** Syntax problems in a template (for check-config); empty when fine. */
export function templateProblems(template: string): string[] {
  // Stryker disable StringLiteral: what a valid placeholder becomes does not matter as long as it holds no "${"
  const rest = template.replace(PLACEHOLDER, (_m, _n, part: string | undefined, step: string | undefined) =>
    step && part !== 'local' ? '${' : '',
  )
  // Stryker restore StringLiteral
  if (rest.includes('${'))
    return [
      `"${template}" has a placeholder that is not \${claim}, \${claim.local}, \${claim.local|step} or \${claim.domain}`,
    ]
  return []
}

/** The claims a template reads, and whether it uses step's lossy local-part sanitizing. */
export function templateClaims(template: string): {claims: string[]; lossy: boolean; localParts: string[]} {
  const claims: string[] = []
  /** The claims whose local part (`${email.local}`) the template renders: their domain is dropped. */
  const localParts: string[] = []
  let lossy = false
  for (const m of template.matchAll(PLACEHOLDER)) {
    claims.push(m[1]!)
    if (m[2] === 'local') localParts.push(m[1]!)
    if (m[3]) lossy = true
  }
  return {claims, lossy, localParts}
}

/** Every claim a provisioner's rules read: match keys, template placeholders, principalsFrom. */
export function policyClaims(p: ProvisionerConfig): string[] {
  const out = new Set<string>()
  for (const r of p.rules) {
    for (const k of Object.keys(r.match)) out.add(k)
    for (const t of [...r.certificate.principals, r.certificate.keyId])
      for (const c of templateClaims(t).claims) out.add(c)
    if (r.certificate.principalsFrom) out.add(r.certificate.principalsFrom.claim)
  }
  return [...out]
}

/** What `${email.local}` may render to: anything else in the local part denies, never rewritten. */
export const LOCAL_PART = /^[a-z0-9._-]+$/

/**
 * `${claim.local|step}`: the email local part sanitized as step-ca does for principals: lowercased,
 * dots dropped, every other character outside [a-z0-9-] replaced by "_". Lossy: `J.Doe@` and `jdoe@`
 * collide (check-config warns).
 */
export function sanitizeLocalPart(email: string): string {
  const at = email.lastIndexOf('@')
  const local = asciiLower(at === -1 ? email : email.slice(0, at))
  let out = ''
  for (const ch of local) {
    if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch === '-') out += ch
    else if (ch !== '.') out += '_'
  }
  return out
}

/**
 * Renders `${claim}`, `${claim.local}` (the local part, lower-cased; a character outside
 * [a-z0-9._-] denies), `${claim.local|step}` (step-ca's sanitizing) and `${claim.domain}`. A claim that
 * is absent or not text denies.
 */
export function renderTemplate(template: string, claims: Claims): string {
  return template.replace(PLACEHOLDER, (_m, name: string, part: string | undefined, step: string | undefined) => {
    const v = claims[name]
    if (typeof v !== 'string' && !Number.isSafeInteger(v)) {
      throw denial(
        'ERR_POLICY_DENIED',
        'claim_missing',
        `template "${template}" needs claim "${name}", which the token lacks or is not text`,
        {claim: name},
      )
    }
    const s = String(v)
    const at = s.lastIndexOf('@')
    if (part === 'local') {
      if (step) return sanitizeLocalPart(s)
      const local = asciiLower(at === -1 ? s : s.slice(0, at))
      if (!LOCAL_PART.test(local)) {
        throw denial(
          'ERR_POLICY_DENIED',
          'principal_invalid',
          `the local part of claim "${name}" has characters outside [a-z0-9._-]; it is denied, not rewritten`,
          {claim: name, rendered: JSON.stringify(local).slice(0, 300)},
        )
      }
      return local
    }
    if (part === 'domain') return at === -1 ? '' : asciiLower(s.slice(at + 1))
    return s
  })
}

/** Accounts no template may render into (ssh.reservedPrincipals overrides): root and the usual system and shared accounts. */
export const DEFAULT_RESERVED_PRINCIPALS = [
  'root',
  'toor',
  'admin',
  'administrator',
  'daemon',
  'bin',
  'sys',
  'sync',
  'games',
  'man',
  'lp',
  'mail',
  'news',
  'uucp',
  'proxy',
  'www-data',
  'backup',
  'list',
  'irc',
  'gnats',
  'nobody',
  'nogroup',
  '_apt',
  'sshd',
  'messagebus',
  'polkitd',
  'systemd-network',
  'systemd-resolve',
  'systemd-timesync',
  'systemd-coredump',
  'ubuntu',
  'debian',
  'ec2-user',
  'centos',
  'fedora',
  'cloud-user',
  // the default users of other cloud and VM images, each with sudo and no password: Azure, Oracle
  // Cloud, Fedora CoreOS and Flatcar, Rocky, AlmaLinux, Alpine, Arch, FreeBSD, Bitnami, Vagrant boxes;
  // and of boards and distributions: Raspberry Pi OS (before 2022), Kali
  'azureuser',
  'opc',
  'core',
  'rocky',
  'almalinux',
  'alpine',
  'arch',
  'freebsd',
  'bitnami',
  'vagrant',
  'pi',
  'kali',
  'git',
  'postgres',
  'mysql',
  'redis',
  'docker',
  'operator',
  'halt',
  'shutdown',
  'ftp',
]

export interface Limits {
  /** Global ceiling for user certificates, seconds. */
  maxUserTtl: number
  /** Principals no template may render (a rule may still grant one literally). */
  reservedPrincipals: readonly string[]
}

/** What principalsFrom did with each element of its claim (explain shows it). */
export interface PrincipalsFromOutcome {
  claim: string
  granted: {from: string; principal: string}[]
  /** Elements left out: not admitted by allow, outside the safe set, or reserved. */
  dropped: {value: string; why: 'not_allowed' | 'unsafe' | 'reserved' | 'not_text'}[]
}

/** One principal per admitted element of a list claim, renamed by map; reserved or unsafe results are dropped. */
export function principalsFromClaim(
  pf: PrincipalsFrom,
  claims: Claims,
  reserved: readonly string[],
): PrincipalsFromOutcome {
  const out: PrincipalsFromOutcome = {claim: pf.claim, granted: [], dropped: []}
  const raw = claims[pf.claim]
  const values = Array.isArray(raw) ? raw : raw === undefined || raw === null ? [] : [raw]
  const allow = pf.allow.map(compileGlob)
  for (const v of values.slice(0, MAX_GROUP_ELEMENTS)) {
    if (typeof v !== 'string') {
      out.dropped.push({value: JSON.stringify(v).slice(0, 100), why: 'not_text'})
      continue
    }
    if (!allow.some((re) => re.test(v))) {
      out.dropped.push({value: v.slice(0, 200), why: 'not_allowed'})
      continue
    }
    const principal = pf.map && Object.hasOwn(pf.map, v) ? pf.map[v]! : v
    if (!SAFE_VALUE.test(principal) || principal.length > MAX_PRINCIPAL_LENGTH)
      out.dropped.push({value: v.slice(0, 200), why: 'unsafe'})
    // the reserved-principal rule holds for every principal a claim produces, mapped ones included
    else if (reserved.includes(principal)) out.dropped.push({value: v, why: 'reserved'})
    else out.granted.push({from: v, principal})
  }
  return out
}

/** Elements of a group claim looked at (an IdP that sends thousands of groups gets the first ones). */
export const MAX_GROUP_ELEMENTS = 256

export interface CertificateSpec {
  principals: string[]
  /** What principalsFrom granted and dropped, when the rule has it. */
  principalsFrom?: PrincipalsFromOutcome
  keyId: string
  validAfter: bigint
  validBefore: bigint
  ttl: number
  criticalOptions: CertOptions
  extensions: CertOptions
}

/** Validity starts this far back, for clocks that run behind the CA's. */
export const CLOCK_SKEW_SECONDS = 60

/** The certificate a rule grants for these claims. The request's own wishes are never consulted. */
export function buildCertificateSpec(
  p: ProvisionerConfig,
  rule: RuleConfig,
  claims: Claims,
  limits: Limits,
  nowSeconds: number,
): CertificateSpec {
  const c = rule.certificate
  const principals: string[] = []
  for (const t of c.principals) {
    const v = renderTemplate(t, claims)
    if (!SAFE_VALUE.test(v) || v.length > MAX_PRINCIPAL_LENGTH) {
      throw denial(
        'ERR_POLICY_DENIED',
        'principal_invalid',
        `principal template "${t}" rendered a value outside [A-Za-z0-9._@:/-] (or too long)`,
        {template: t, rendered: JSON.stringify(v).slice(0, 300)},
      )
    }
    // a claim the person or the IdP controls must never turn into root (or another system account)
    if (templateClaims(t).claims.length > 0 && limits.reservedPrincipals.includes(v)) {
      throw denial(
        'ERR_POLICY_DENIED',
        'principal_reserved',
        `principal template "${t}" rendered the reserved principal "${v}"`,
        {template: t, rendered: v},
      )
    }
    if (!principals.includes(v)) principals.push(v)
  }
  let fromClaim: PrincipalsFromOutcome | undefined
  if (c.principalsFrom) {
    fromClaim = principalsFromClaim(c.principalsFrom, claims, limits.reservedPrincipals)
    for (const g of fromClaim.granted) if (!principals.includes(g.principal)) principals.push(g.principal)
  }
  if (principals.length === 0) {
    throw denial(
      'ERR_POLICY_DENIED',
      'no_principals',
      `rule "${rule.name}" grants no principal for these claims (principalsFrom ${c.principalsFrom?.claim ?? ''} admitted none)`,
      fromClaim ? {dropped: fromClaim.dropped.slice(0, 20)} : {},
    )
  }
  if (principals.length > MAX_GROUP_ELEMENTS)
    throw denial(
      'ERR_POLICY_DENIED',
      'principal_invalid',
      `rule "${rule.name}" would grant ${principals.length} principals (at most ${MAX_GROUP_ELEMENTS})`,
    )
  const keyId = renderTemplate(c.keyId, claims)
  if (!SAFE_VALUE.test(keyId) || keyId.length > MAX_KEY_ID_LENGTH) {
    throw denial(
      'ERR_POLICY_DENIED',
      'key_id_invalid',
      `key ID template "${c.keyId}" rendered a value outside [A-Za-z0-9._@:/-] (or too long)`,
      {template: c.keyId, rendered: JSON.stringify(keyId).slice(0, 300)},
    )
  }
  const ttl = Math.min(c.ttl, p.maxTtl ?? Infinity, limits.maxUserTtl)
  const criticalOptions: CertOptions = {}
  if (c.forceCommand !== undefined) criticalOptions['force-command'] = c.forceCommand
  if (c.sourceAddress !== undefined) criticalOptions['source-address'] = c.sourceAddress.join(',')
  const extensions: CertOptions = {}
  for (const e of c.extensions) extensions[e] = true
  return {
    principals,
    ...(fromClaim ? {principalsFrom: fromClaim} : {}),
    keyId,
    ttl,
    validAfter: BigInt(nowSeconds - CLOCK_SKEW_SECONDS),
    validBefore: BigInt(nowSeconds + ttl),
    criticalOptions,
    extensions,
  }
}
