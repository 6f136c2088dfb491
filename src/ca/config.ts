/**
 * ca.yaml: parsed once with a schema, defaults merged, named checks run; a problem names its field.
 * The same code backs `ca serve` (refuse to start), SIGHUP (keep the old policy) and `ca check-config`.
 */
import {readFile} from 'node:fs/promises'
import {dirname, isAbsolute, resolve} from 'node:path'
import {parseDocument} from 'yaml'
import {z} from 'zod'
import {SshcaError} from '../errors.ts'
import {KNOWN_EXTENSIONS} from '../ssh/cert.ts'
import {formatDuration, parseDuration} from '../util/duration.ts'
import {isCidr, isLoopbackAddress, parseHostPort} from '../util/net.ts'
import {globToRegExp, templateProblems} from './policy.ts'

const scalar = z.union([z.string(), z.number(), z.boolean()])
const matchCondition = z.union([
  scalar,
  z.array(scalar).min(1, 'a list of allowed values must not be empty'),
  z.strictObject({domain: z.string().min(1)}),
  z.strictObject({contains: scalar}),
  z.strictObject({glob: z.string().min(1)}),
])

const duration = z.union([z.string(), z.number().int().positive()]).transform((v, ctx) => {
  const s = typeof v === 'number' ? v : parseDuration(v)
  if (s === undefined) {
    ctx.addIssue({code: 'custom', message: `"${v}" is not a duration (use 90s, 15m, 8h, 30d)`})
    return z.NEVER
  }
  return s
})

const ruleSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'rule names use letters, digits, ".", "_" and "-"'),
  disabled: z.boolean().default(false),
  match: z.record(z.string().min(1), matchCondition),
  certificate: z.strictObject({
    principals: z.array(z.string().min(1)).min(1, 'a rule must grant at least one principal'),
    keyId: z.string().min(1).default('${sub}'),
    ttl: duration,
    forceCommand: z.string().min(1).optional(),
    sourceAddress: z.array(z.string()).min(1).optional(),
    extensions: z.array(z.string()).default([]),
  }),
})

const provisionerSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'provisioner names use letters, digits, ".", "_" and "-"'),
  type: z.literal('oidc'),
  issuer: z.url(),
  clientId: z.string().min(1).optional(),
  audience: z.string().min(1).optional(),
  clientSecret: z.string().optional(),
  listenAddress: z.string().optional(),
  scopes: z.array(z.string()).optional(),
  maxTtl: duration.optional(),
  rules: z.array(ruleSchema).default([]),
})

const configSchema = z.strictObject({
  address: z.string().default('127.0.0.1:9000'),
  dnsNames: z.array(z.string().min(1)).default(['127.0.0.1']),
  name: z.string().default('sshca'),
  disabled: z.boolean().default(false),
  db: z
    .strictObject({
      type: z.literal('sqlite'),
      path: z.string().default('db/sshca.sqlite'),
      // full: every commit on disk before a certificate is returned; normal risks the last commits on power loss
      durability: z.enum(['full', 'normal']).default('full'),
    })
    .default({type: 'sqlite', path: 'db/sshca.sqlite', durability: 'full'}),
  audit: z.strictObject({file: z.string().default('-')}).default({file: '-'}),
  ssh: z
    .strictObject({
      hostPattern: z.string().min(1).default('*'),
      maxUserTtl: duration.default(86400),
      hostTtl: duration.default(30 * 86400),
      maxHostTtl: duration.default(90 * 86400),
    })
    .default({hostPattern: '*', maxUserTtl: 86400, hostTtl: 30 * 86400, maxHostTtl: 90 * 86400}),
  provisioners: z.array(provisionerSchema).default([]),
})

export type CaConfig = Omit<z.infer<typeof configSchema>, 'provisioners'> & {
  provisioners: ProvisionerConfig[]
  /** The directory holding ca.yaml; key and database paths are relative to it. */
  dir: string
  path: string
}
export type ProvisionerConfig = z.infer<typeof provisionerSchema> & {audience: string}
export type RuleConfig = z.infer<typeof ruleSchema>
export type MatchCondition = z.infer<typeof matchCondition>

export interface ConfigCheck {
  config: CaConfig
  warnings: string[]
}

export function configError(problems: string[], file: string): SshcaError {
  return new SshcaError('ERR_CA_CONFIG', `${file} is invalid:\n${problems.map((p) => `  - ${p}`).join('\n')}`, {
    details: {problems},
    hint: `fix the fields named above, then run: sshca ca check-config --config ${file}`,
  })
}

function fieldPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), '') || '(top level)'
}

/** Parses and checks ca.yaml text; throws ERR_CA_CONFIG listing every problem. */
export function parseConfig(text: string, path: string): ConfigCheck {
  const doc = parseDocument(text, {prettyErrors: true, uniqueKeys: true})
  if (doc.errors.length > 0) throw configError(doc.errors.map((e) => e.message.split('\n')[0]!), path)
  const parsed = configSchema.safeParse(doc.toJS() ?? {})
  if (!parsed.success) throw configError(parsed.error.issues.map((i) => `${fieldPath(i.path)}: ${i.message}`), path)
  const raw = parsed.data
  const problems: string[] = []
  const warnings: string[] = []
  const provisioners: ProvisionerConfig[] = raw.provisioners.map((p) => ({...p, audience: p.audience ?? p.clientId ?? ''}))
  const config: CaConfig = {...raw, provisioners, dir: dirname(resolve(path)), path: resolve(path)}

  if (!parseHostPort(raw.address)) problems.push(`address: "${raw.address}" is not host:port`)
  checkProvisioners(config, problems, warnings)
  if (raw.db.durability === 'normal') {
    warnings.push('db.durability: normal — a power loss can drop the last commits: certificates missing from the store and spent tokens forgotten, so replayable until they expire')
  }
  if (config.provisioners.length === 0) warnings.push('provisioners: none configured, so no user certificate can be issued')
  if (raw.ssh.hostTtl > raw.ssh.maxHostTtl) problems.push(`ssh.hostTtl: ${formatDuration(raw.ssh.hostTtl)} is above ssh.maxHostTtl (${formatDuration(raw.ssh.maxHostTtl)})`)
  if (problems.length > 0) throw configError(problems, path)
  return {config, warnings}
}

export async function loadConfig(path: string): Promise<ConfigCheck> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new SshcaError('ERR_FILE_NOT_FOUND', `no CA configuration at ${path}`, {hint: 'create a CA with: sshca ca init --dir DIR'})
    }
    throw new SshcaError('ERR_INPUT', `cannot read ${path}: ${(err as Error).message}`, {cause: err})
  }
  return parseConfig(text, path)
}

export function resolveInDir(config: Pick<CaConfig, 'dir'>, p: string): string {
  return isAbsolute(p) ? p : resolve(config.dir, p)
}

function checkProvisioners(config: CaConfig, problems: string[], warnings: string[]): void {
  const names = new Set<string>()
  const routes = new Map<string, string>()
  config.provisioners.forEach((p, i) => {
    const at = `provisioners[${i}]`
    if (names.has(p.name)) problems.push(`${at}.name: "${p.name}" is used twice`)
    names.add(p.name)
    if (!p.audience) problems.push(`${at}: set clientId or audience (the token's "aud" must name this CA)`)
    const issuer = new URL(p.issuer)
    if (issuer.protocol === 'http:' && !isLoopbackAddress(issuer.hostname)) {
      problems.push(`${at}.issuer: plain http is accepted only on loopback addresses (development); use https`)
    } else if (issuer.protocol !== 'http:' && issuer.protocol !== 'https:') {
      problems.push(`${at}.issuer: must be an https URL`)
    }
    const route = `${p.issuer.replace(/\/$/, '')} ${p.audience}`
    if (routes.has(route)) problems.push(`${at}: same issuer and audience as provisioner "${routes.get(route)}", so tokens could not be routed`)
    routes.set(route, p.name)
    if (p.listenAddress !== undefined) {
      const hp = parseHostPort(p.listenAddress)
      if (!hp || !isLoopbackAddress(hp.host)) problems.push(`${at}.listenAddress: must be a loopback address with a port, such as 127.0.0.1:10000`)
    }
    if (p.rules.length === 0) warnings.push(`${at} (${p.name}): no rules, so every token from it is denied`)
    const ruleNames = new Set<string>()
    p.rules.forEach((r, j) => checkRule(config, p, r, `${at}.rules[${j}]`, ruleNames, problems, warnings))
    warnings.push(...overlapWarnings(p, at))
  })
}

function checkRule(config: CaConfig, p: ProvisionerConfig, r: RuleConfig, at: string, ruleNames: Set<string>, problems: string[], warnings: string[]): void {
  if (ruleNames.has(r.name)) problems.push(`${at}.name: "${r.name}" is used twice in provisioner "${p.name}"`)
  ruleNames.add(r.name)
  const keys = Object.keys(r.match)
  if (keys.length === 0) problems.push(`${at}.match: a rule must match on at least one claim`)
  for (const [claim, cond] of Object.entries(r.match)) {
    if (typeof cond === 'object' && !Array.isArray(cond) && 'glob' in cond && /[^*?]\*\*[^/]|\*\*\*/.test(cond.glob)) {
      problems.push(`${at}.match.${claim}: "**" must stand for a whole path segment`)
    }
  }
  if (keys.length === 1 && keys[0] === 'repository') {
    warnings.push(`${at} (${r.name}): matches on repository alone, so any branch, workflow, event or manual run of it gets a certificate; also pin ref, event_name, job_workflow_ref or environment`)
  }
  const c = r.certificate
  c.principals.forEach((t, k) => {
    for (const problem of templateProblems(t)) problems.push(`${at}.certificate.principals[${k}]: ${problem}`)
  })
  for (const problem of templateProblems(c.keyId)) problems.push(`${at}.certificate.keyId: ${problem}`)
  if (c.forceCommand !== undefined && /[\r\n\0]/.test(c.forceCommand)) problems.push(`${at}.certificate.forceCommand: must be one line`)
  c.sourceAddress?.forEach((a, k) => {
    if (!isCidr(a)) problems.push(`${at}.certificate.sourceAddress[${k}]: "${a}" is not an address or CIDR block`)
  })
  c.extensions.forEach((e, k) => {
    if (!KNOWN_EXTENSIONS.has(e)) problems.push(`${at}.certificate.extensions[${k}]: unknown extension "${e}" (known: ${[...KNOWN_EXTENSIONS].join(', ')})`)
  })
  const risky = c.extensions.filter((e) => e !== 'permit-pty')
  if (c.forceCommand !== undefined && c.extensions.length > 0) {
    warnings.push(`${at} (${r.name}): grants ${c.extensions.join(', ')} with a force-command, which does not need them`)
  } else if (risky.length > 0) {
    warnings.push(`${at} (${r.name}): grants ${risky.join(', ')}; grant forwarding only where a use case needs it`)
  }
  const ceiling = Math.min(p.maxTtl ?? Infinity, config.ssh.maxUserTtl)
  if (c.ttl > ceiling) warnings.push(`${at}.certificate.ttl: ${formatDuration(c.ttl)} is capped to ${formatDuration(ceiling)} (maxTtl / ssh.maxUserTtl)`)
}

/** Two enabled rules of one provisioner that one token could match both of: a certain denial. */
function overlapWarnings(p: ProvisionerConfig, at: string): string[] {
  const out: string[] = []
  const rules = p.rules.filter((r) => !r.disabled)
  for (let i = 0; i < rules.length; i++) {
    for (let j = i + 1; j < rules.length; j++) {
      const a = rules[i]!
      const b = rules[j]!
      const shared = Object.keys(a.match).filter((k) => k in b.match)
      if (shared.every((k) => mayOverlap(a.match[k]!, b.match[k]!))) {
        out.push(`${at} (${p.name}): rules "${a.name}" and "${b.name}" can match the same token, and a token matching two rules is denied; make them exclusive`)
      }
    }
  }
  return out
}

type Scalar = string | number | boolean
function valuesOf(c: MatchCondition): Scalar[] | undefined {
  if (Array.isArray(c)) return c
  if (typeof c !== 'object') return [c]
  return undefined
}

/** Conservative: true unless the two conditions certainly exclude each other. */
export function mayOverlap(a: MatchCondition, b: MatchCondition): boolean {
  const va = valuesOf(a)
  const vb = valuesOf(b)
  if (va && vb) return va.some((x) => vb.includes(x))
  const [vals, other] = va ? [va, b] : vb ? [vb, a] : [undefined, undefined]
  if (vals && other && typeof other === 'object' && !Array.isArray(other)) {
    if ('domain' in other) return vals.some((v) => typeof v === 'string' && v.toLowerCase().endsWith(`@${other.domain.toLowerCase()}`))
    if ('glob' in other) return vals.some((v) => typeof v === 'string' && globToRegExp(other.glob).test(v))
    return false // {contains} needs an array claim; a scalar claim can never satisfy both
  }
  if (typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b) && 'domain' in a && 'domain' in b) {
    return a.domain.toLowerCase() === b.domain.toLowerCase()
  }
  return true
}
