/**
 * ca.yaml: parsed once with a schema, defaults merged, named checks run; a problem names its field.
 * The same code backs `ca serve` (refuse to start), SIGHUP (keep the old policy) and `ca check-config`.
 */
import {readFile} from 'node:fs/promises'
import {dirname, isAbsolute, resolve} from 'node:path'
import {parseDocument} from 'yaml'
import {z} from 'zod'
import {SshcaError} from '../../errors.ts'
import {WEBHOOK_MAX_SECONDS} from '../../protocol/api.ts'
import {KNOWN_EXTENSIONS} from '../../ssh/cert.ts'
import {formatDuration, parseDuration} from '../../util/duration.ts'
import {isCidr, isLoopbackAddress, parseHostPort} from '../../util/net.ts'
import {unknownClaim} from '../policy/claims.ts'
import {DEFAULT_KEYS_TIMEOUT_SECONDS, parseKms, type Kms} from './kms.ts'
import {
  DEFAULT_RESERVED_PRINCIPALS,
  compileGlob,
  SAFE_VALUE,
  templateClaims,
  templateProblems,
} from '../policy/policy.ts'
import type {MatchCondition, ProvisionerConfig, RuleConfig} from '../policy/types.ts'

const scalar = z.union([z.string(), z.number(), z.boolean()])
const matchCondition = z.union([
  scalar,
  z.array(scalar).min(1, 'a list of allowed values must not be empty'),
  z.strictObject({domain: z.string().min(1)}),
  z.strictObject({contains: scalar}),
  z.strictObject({glob: z.string().min(1)}),
])

/** The longest duration ca.yaml takes: 100 years (no certificate, token or window needs more). */
const MAX_DURATION = 36_500 * 86_400

const duration = z.union([z.string(), z.number().int().positive()]).transform((v, ctx) => {
  const s = typeof v === 'number' ? v : parseDuration(v)
  if (s === undefined) {
    ctx.addIssue({code: 'custom', message: `"${v}" is not a duration (use 90s, 15m, 8h, 30d)`})
    return z.NEVER
  }
  // a certificate valid for 272,000 years or more ends past the last day Date can write, where the
  // CA's reports (ca certs, status, rotate, explain) would fail or compute NaN
  if (s > MAX_DURATION) {
    ctx.addIssue({code: 'custom', message: `"${v}" is longer than 100 years (36500d), the most ca.yaml takes`})
    return z.NEVER
  }
  return s
})

const ruleSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'rule names use letters, digits, ".", "_" and "-"'),
  disabled: z.boolean().default(false),
  webhook: z
    .strictObject({
      url: z.url(),
      timeout: duration.default(2),
      ca: z.string().min(1).optional(),
      secretFile: z.string().min(1).optional(),
    })
    .optional(),
  match: z.record(z.string().min(1), matchCondition),
  certificate: z.strictObject({
    principals: z.array(z.string().min(1)).default([]),
    principalsFrom: z
      .strictObject({
        claim: z.string().min(1),
        allow: z.array(z.string().min(1)).min(1, 'allow at least one pattern (a glob such as "ssh-*")'),
        map: z.record(z.string().min(1), z.string().min(1)).optional(),
      })
      .optional(),
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
  /** Longest token lifetime (exp − iat) accepted; default 1h. */
  maxTokenAge: duration.optional(),
  rules: z.array(ruleSchema).default([]),
})

const rateLimit = z.union([
  z.literal(false),
  z.strictObject({
    /** Signing requests (/ssh/sign, /sign, /ssh/renew) per client address per window. */
    max: z.number().int().positive(),
    window: duration,
  }),
])

export const LIMIT_DEFAULTS = {
  requestTimeout: 10,
  headersTimeout: 5,
  idleTimeout: 60,
  handshakeTimeout: 5,
  maxConnections: 1000,
  maxEventLoopDelay: 200 as number | false,
  rate: {max: 300, window: 60} as {max: number; window: number} | false,
}

/** How long a client may take and how much it may ask for; every default is finite. */
const limitsSchema = z
  .strictObject({
    /** The request's arrival, headers and body (slow bodies are cut off here); not its answer. */
    requestTimeout: duration.default(LIMIT_DEFAULTS.requestTimeout),
    headersTimeout: duration.default(LIMIT_DEFAULTS.headersTimeout),
    /**
     * A connection nothing crosses for this long is closed: an idle keep-alive one, or one whose
     * request is still being answered (waiting on its webhook).
     */
    idleTimeout: duration.default(LIMIT_DEFAULTS.idleTimeout),
    handshakeTimeout: duration.default(LIMIT_DEFAULTS.handshakeTimeout),
    /** Open connections beyond this are refused at accept. */
    maxConnections: z.number().int().positive().default(LIMIT_DEFAULTS.maxConnections),
    /**
     * Signing requests being worked on at once, by the whole CA; more are answered 503 (Retry-After)
     * at once instead of queueing. Unset: 48 for each thread serving the API (src/ca/http/app.ts).
     */
    maxInFlight: z.number().int().positive().optional(),
    /**
     * Milliseconds: past this mean event-loop delay over the last second, signing requests are answered
     * 503 at once. The queue in the sockets that maxInFlight cannot count; false = off.
     */
    maxEventLoopDelay: z
      .union([z.number().int().positive(), z.literal(false)])
      .default(LIMIT_DEFAULTS.maxEventLoopDelay),
    rate: rateLimit.default(LIMIT_DEFAULTS.rate),
  })
  .default(LIMIT_DEFAULTS)

/** The embedded store (one CA process): a SQLite file in the CA directory. */
const sqliteDb = z.strictObject({
  type: z.literal('sqlite'),
  path: z.string().default('db/sshca.sqlite'),
  // full: every commit on disk before a certificate is returned; normal risks the last commits on power loss
  durability: z.enum(['full', 'normal']).default('full'),
})

/**
 * Several replicas on one PostgreSQL. The password is never in ca.yaml or the URL: `passwordFile`
 * (0600, relative to ca.yaml's directory), else $PGPASSWORD, else none (certificate or peer auth).
 */
const postgresDb = z.strictObject({
  type: z.literal('postgresql'),
  /** postgres://USER@HOST:PORT/DATABASE; HOST may be a socket directory (%2Frun%2Fpostgresql or ?host=/run/postgresql). */
  url: z.string().min(1),
  /** Connections per replica. */
  pool: z.number().int().positive().max(1000).default(10),
  passwordFile: z.string().min(1).optional(),
  tls: z
    .strictObject({
      /** verify-full (the default over TCP): the server's certificate chains to `ca` and names the host. */
      mode: z.enum(['disable', 'require', 'verify-ca', 'verify-full']).optional(),
      /** PEM file of the CA(s) that sign the server's certificate (default: the system's). */
      ca: z.string().min(1).optional(),
      /** A client certificate and its key (PEM), for servers that authenticate clients by certificate. */
      cert: z.string().min(1).optional(),
      key: z.string().min(1).optional(),
    })
    .default({}),
  /** The longest wait for the database (connect, statement): past it the request is answered 503. */
  timeout: duration.default(5),
  /** Apply pending migrations at start (under an advisory lock); false: `sshca ca migrate` does, and serve refuses an old schema. */
  autoMigrate: z.boolean().default(true),
})

export type SqliteDbConfig = z.infer<typeof sqliteDb>
export type PostgresDbConfig = z.infer<typeof postgresDb>

const configSchema = z.strictObject({
  address: z.string().default('127.0.0.1:9000'),
  dnsNames: z.array(z.string().min(1)).default(['127.0.0.1']),
  name: z.string().default('sshca'),
  disabled: z.boolean().default(false),
  db: z
    .discriminatedUnion('type', [sqliteDb, postgresDb])
    .default({type: 'sqlite', path: 'db/sshca.sqlite', durability: 'full'}),
  audit: z.strictObject({file: z.string().default('-')}).default({file: '-'}),
  /** Prometheus metrics (text format, GET /metrics) on their own plain-HTTP address; off when absent. */
  metrics: z.strictObject({address: z.string()}).optional(),
  /**
   * Where new SSH CA keys are made (ca init, ca rotate prepare): "file" or a pkcs11: URI (kms.ts); how
   * long the CA waits for a token's answer to one operation (a signature) before it fails it (503).
   */
  keys: z
    .strictObject({kms: z.string().default('file'), timeout: duration.default(DEFAULT_KEYS_TIMEOUT_SECONDS)})
    .default({kms: 'file', timeout: DEFAULT_KEYS_TIMEOUT_SECONDS}),
  limits: limitsSchema,
  /**
   * The API's TLS. `clientCertificates: request` asks every client for a certificate, for step's X.509
   * identity (`step ssh hosts` over mutual TLS; /version then says requireClientAuthentication, so
   * step sends an identityCSR when it signs in). Off by default: OpenSSL checks the signature of every
   * link of any chain a client sends, before any token or limit, and a chain of RSA keys with huge
   * public exponents makes each handshake cost the CA hundreds of ordinary ones (SECURITY.md row 42).
   * Read at start.
   */
  tls: z
    .strictObject({clientCertificates: z.enum(['off', 'request']).default('off')})
    .default({clientCertificates: 'off'}),
  /**
   * Whom to believe about the client's address (X-Forwarded-For): false (default) trusts no proxy;
   * true trusts any (only behind a balancer that overwrites the header); addresses/CIDRs or a hop count
   * trust those. Rate limits key on the address this yields.
   */
  trustProxy: z.union([z.boolean(), z.number().int().nonnegative(), z.array(z.string().min(1)).min(1)]).default(false),
  ssh: z
    .strictObject({
      hostPattern: z.string().min(1).default('*'),
      maxUserTtl: duration.default(86400),
      hostTtl: duration.default(30 * 86400),
      maxHostTtl: duration.default(90 * 86400),
      /** Principals no template may render; a rule may still list one literally (check-config warns). */
      reservedPrincipals: z.array(z.string().min(1)).default(DEFAULT_RESERVED_PRINCIPALS),
    })
    .default({
      hostPattern: '*',
      maxUserTtl: 86400,
      hostTtl: 30 * 86400,
      maxHostTtl: 90 * 86400,
      reservedPrincipals: DEFAULT_RESERVED_PRINCIPALS,
    }),
  // `provisioners:` with every example still commented out is null: none yet
  provisioners: z.preprocess((v) => v ?? [], z.array(provisionerSchema)).default([]),
})

export type CaConfig = Omit<z.infer<typeof configSchema>, 'provisioners'> & {
  provisioners: ProvisionerConfig[]
  /** The directory holding ca.yaml; key and database paths are relative to it. */
  dir: string
  path: string
}
export type {MatchCondition, ProvisionerConfig, RuleConfig} from '../policy/types.ts'
// the schema's output is the policy's vocabulary: a change to either that breaks the other fails to compile
type Assignable<T, U extends T> = U
export type _SchemaMatchesPolicy = [
  Assignable<RuleConfig, z.infer<typeof ruleSchema>>,
  Assignable<ProvisionerConfig, z.infer<typeof provisionerSchema> & {audience: string}>,
]

/** What the HTTP server's own settings need from ca.yaml: the limits and whom to trust as a proxy. */
export type ServerSettings = Pick<CaConfig, 'limits' | 'trustProxy'>

/** The same names for a TLS certificate: the same set, in any order (what makes one be issued again). */
export const sameNames = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((n) => b.includes(n))

/**
 * What a reload cannot change: the API's server is built from these at the CA's start (the TLS
 * server's requestCert, the HTTP timeouts, the connection cap, whose address a request is from, and
 * whether and over which window signing requests are counted), and the CA opens its address, its
 * store (db), its audit sink, its metrics listener and its signer registry (keys.kms) then; every
 * thread keeps them, one started after a reload too. A reload that changes one says so
 * (policy_loaded's warnings) rather than seem to apply it. maxInFlight, maxEventLoopDelay and
 * rate.max follow the policy in force. dnsNames name the TLS certificate the next time it is issued:
 * at the restart, or at its renewal, a root's activation or `ca intermediate` if one comes first
 * (SSHPOP tokens are checked against them at once); `tlsNames` are the names of the certificate in
 * force, which differ from the start's once one of those issued it. A rule's webhook applies at once,
 * so its timeout, with the store's waits around it, is checked against the idleTimeout in force, the
 * start's, when the reload changes that one or the db: the socket's timeout is what closes a
 * request's connection while it waits on the webhook.
 */
export function startOnlyChanges(
  start: CaConfig,
  next: CaConfig,
  tlsNames: readonly string[] = start.dnsNames,
): string[] {
  const show = (v: unknown): string => JSON.stringify(v)
  const rateOn = (c: CaConfig): boolean => c.limits.rate !== false
  const fields: [string, unknown, unknown][] = [
    ['tls.clientCertificates', start.tls.clientCertificates, next.tls.clientCertificates],
    ['trustProxy', start.trustProxy, next.trustProxy],
    ['limits.requestTimeout', start.limits.requestTimeout, next.limits.requestTimeout],
    ['limits.headersTimeout', start.limits.headersTimeout, next.limits.headersTimeout],
    ['limits.idleTimeout', start.limits.idleTimeout, next.limits.idleTimeout],
    ['limits.handshakeTimeout', start.limits.handshakeTimeout, next.limits.handshakeTimeout],
    ['limits.maxConnections', start.limits.maxConnections, next.limits.maxConnections],
    // turned off, the limit is off at once (no request is over an unlimited max); turned on, it needs the counting
    ...(!rateOn(start) && rateOn(next) ? [['limits.rate', false, next.limits.rate] as [string, unknown, unknown]] : []),
    ...(start.limits.rate !== false && next.limits.rate !== false
      ? [['limits.rate.window', start.limits.rate.window, next.limits.rate.window] as [string, unknown, unknown]]
      : []),
    // what the main thread opens at start: the listener, the store (every thread's), the audit sink and
    // the metrics listener
    ['address', start.address, next.address],
    ['db', start.db, next.db],
    ['audit.file', start.audit.file, next.audit.file],
    ['metrics.address', start.metrics?.address ?? 'unset', next.metrics?.address ?? 'unset'],
    // the signer registry (its PKCS#11 module, token and PIN), and whether the API runs on workers
    ['keys.kms', start.keys.kms, next.keys.kms],
    ['keys.timeout', start.keys.timeout, next.keys.timeout],
  ]
  const say = (v: unknown): string => (typeof v === 'string' ? v : show(v))
  const changed = fields
    .filter(([, was, now]) => show(was) !== show(now))
    .map(
      ([name, was, now]) => `${name}: ${say(now)} takes effect when the CA restarts; until then it stays ${say(was)}`,
    )
  // read when the TLS certificate is issued, which a reload does not do; compared with the names of
  // the one in force as loadTls compares them (another order is the same certificate)
  if (!sameNames(next.dnsNames, tlsNames))
    changed.push(
      `dnsNames: ${show(next.dnsNames)} name the TLS certificate from its next issue (the restart, or its renewal, a root activation or \`ca intermediate\` before it); until then it names ${show(tlsNames)}`,
    )
  // the rule check compared the webhooks' timeouts with the reloaded idleTimeout and db, not the ones in force
  if (next.limits.idleTimeout === start.limits.idleTimeout && storeWaitSeconds(next.db) === storeWaitSeconds(start.db))
    return changed
  const slow = next.provisioners.flatMap((p, i) =>
    p.rules.flatMap((r, j) => {
      const line =
        r.webhook &&
        slowWebhook(`provisioners[${i}].rules[${j}]`, r.webhook.timeout, start.db, start.limits.idleTimeout, true)
      return line ? [line] : []
    }),
  )
  return [...changed, ...slow]
}

/**
 * The longest a signing request waits on its store with nothing crossing its connection: with
 * PostgreSQL a connection from the pool (db.timeout) and then the issuance's statement (db.timeout,
 * and half a second more for its answer: postgres.ts's query_timeout); SQLite is on this host. A
 * deadlock's retry and the item-by-item path after a refused batch start no statement that would end
 * past it (postgres.ts, inTime).
 */
export function storeWaitSeconds(db: CaConfig['db']): number {
  return db.type === 'postgresql' ? 2 * db.timeout + 0.5 : 0
}

/**
 * The store calls one signing request makes one after the other, each waiting up to storeWaitSeconds:
 * a renewal or a rekey reads the certificate, then its revocations, then issues (authority/host.ts);
 * a rule with a webhook records the token's ask (reading its spend) before the webhook and issues
 * after it (sign.ts).
 */
export const STORE_CALLS_IN_SEQUENCE = 3
export const STORE_CALLS_AROUND_WEBHOOK = 2

/**
 * The longest a signing request may wait with nothing crossing its connection: its store calls, its
 * rule's webhook between them, and its signature (keysWait: a token's, keysWaitSeconds).
 */
export function signingWaitSeconds(db: CaConfig['db'], webhookTimeout = 0, keysWait = 0): number {
  const store = storeWaitSeconds(db)
  return Math.max(STORE_CALLS_IN_SEQUENCE * store, webhookTimeout + STORE_CALLS_AROUND_WEBHOOK * store) + keysWait
}

/** A token's signature: keys.timeout for its turn, then as long for its answer (keys/pkcs11.ts); files sign in memory. */
export function keysWaitSeconds(keys: CaConfig['keys']): number {
  return parseKms(keys.kms).type === 'pkcs11' ? 2 * keys.timeout : 0
}

/**
 * How long closing the CA waits for the requests in flight before it ends their connections: their
 * arrival (limits.requestTimeout, the start's: a reload's waits for the restart), their signing
 * waits (the start's db and keys, the webhooks of the policy in force), and 5 s to answer.
 */
export function closeDeadlineSeconds(start: CaConfig, inForce: CaConfig): number {
  const webhook = Math.max(0, ...inForce.provisioners.flatMap((p) => p.rules.map((r) => r.webhook?.timeout ?? 0)))
  return start.limits.requestTimeout + signingWaitSeconds(start.db, webhook, keysWaitSeconds(start.keys)) + 5
}

/** The key store named by keys.kms, with the wait keys.timeout sets on each of a token's operations. */
export function keyStoreOf(keys: CaConfig['keys']): Kms {
  const kms = parseKms(keys.kms)
  return kms.type === 'pkcs11' ? {...kms, timeoutSeconds: keys.timeout} : kms
}

/**
 * A token's signature comes between a signing request's store calls: keys.timeout, and those, must
 * end before the connection's idleTimeout closes it (the issuance may still commit, its token spent
 * for nothing), and no request should wait on a token for more than 30 s.
 */
function checkKeysTimeout(config: CaConfig, problems: string[], warnings: string[]): void {
  const t = config.keys.timeout
  if (t > KEYS_TIMEOUT_MAX_SECONDS) {
    problems.push(
      `keys.timeout: ${formatDuration(t)} is above ${formatDuration(KEYS_TIMEOUT_MAX_SECONDS)}; a signing request must not wait that long on a token`,
    )
    return
  }
  const wait = signingWaitSeconds(config.db, 0, keysWaitSeconds(config.keys))
  if (wait >= config.limits.idleTimeout)
    warnings.push(
      `keys.timeout: ${formatDuration(t)} lets a signing request wait ${seconds(wait)} on the token (its turn, then its answer)${wait > 2 * t ? ' and the database' : ''}, not below limits.idleTimeout (${formatDuration(config.limits.idleTimeout)}): the connection closes while the issuance may still commit; lower keys.timeout or raise limits.idleTimeout`,
    )
}

const KEYS_TIMEOUT_MAX_SECONDS = 30

/** Seconds as a duration, a fraction kept (formatDuration drops it). */
const seconds = (n: number): string => (Number.isInteger(n) ? formatDuration(n) : `${n}s`)

/**
 * The warning for a rule whose webhook, with the store's waits around it, is not below `idleTimeout`;
 * undefined when it is. `inForce`: the values are the start's, in force until the CA restarts.
 */
function slowWebhook(
  at: string,
  timeout: number,
  db: CaConfig['db'],
  idleTimeout: number,
  inForce = false,
): string | undefined {
  const store = STORE_CALLS_AROUND_WEBHOOK * storeWaitSeconds(db)
  if (timeout + store < idleTimeout) return undefined
  const after =
    store > 0
      ? `, and up to ${seconds(store)} on the database around it (db.timeout: the token's spend before, the issuance after),`
      : ''
  const idle = inForce
    ? `in force (${formatDuration(idleTimeout)} until the CA restarts)`
    : `(${formatDuration(idleTimeout)})`
  return `${at}.webhook.timeout: ${formatDuration(timeout)}${after} must be below limits.idleTimeout ${idle}`
}

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
  return (
    path.reduce<string>(
      (acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)),
      '',
    ) || '(top level)'
  )
}

/** Parses and checks ca.yaml text; throws ERR_CA_CONFIG listing every problem. */
export function parseConfig(text: string, path: string): ConfigCheck {
  // Stryker disable next-line ObjectLiteral,BooleanLiteral: yaml's defaults; said here because duplicate keys must stay refused
  const doc = parseDocument(text, {prettyErrors: true, uniqueKeys: true})
  if (doc.errors.length > 0)
    throw configError(
      doc.errors.map((e) => e.message.split('\n')[0]!),
      path,
    )
  const parsed = configSchema.safeParse(doc.toJS() ?? {})
  if (!parsed.success)
    throw configError(
      parsed.error.issues.map((i) => `${fieldPath(i.path)}: ${i.message}`),
      path,
    )
  const raw = parsed.data
  const problems: string[] = []
  const warnings: string[] = []
  const provisioners: ProvisionerConfig[] = raw.provisioners.map((p) => ({
    ...p,
    audience: p.audience ?? p.clientId ?? '',
  }))
  const config: CaConfig = {...raw, provisioners, dir: dirname(resolve(path)), path: resolve(path)}

  if (!parseHostPort(raw.address)) problems.push(`address: "${raw.address}" is not host:port`)
  if (raw.metrics !== undefined) {
    const m = parseHostPort(raw.metrics.address)
    if (!m) problems.push(`metrics.address: "${raw.metrics.address}" is not host:port`)
    else if (raw.metrics.address === raw.address && m.port !== 0)
      problems.push('metrics.address: must differ from address (metrics are served on their own listener)')
    else if (!isLoopbackAddress(m.host))
      warnings.push(
        `metrics.address: ${raw.metrics.address} is reachable from other machines; metrics are plain HTTP without authentication, so firewall it to your Prometheus`,
      )
  }
  try {
    if (parseKms(raw.keys.kms).type === 'pkcs11') checkKeysTimeout(config, problems, warnings)
  } catch (err) {
    problems.push(`keys.kms: ${(err as Error).message}`)
  }
  checkProvisioners(config, problems, warnings)
  // Stryker disable next-line ConditionalExpression: a PostgreSQL block has no durability, so the type test only narrows
  if (raw.db.type === 'sqlite' && raw.db.durability === 'normal') {
    warnings.push(
      'db.durability: normal — a power loss can drop the last commits: certificates missing from the store and spent tokens forgotten, so replayable until they expire',
    )
  }
  if (config.provisioners.length === 0)
    warnings.push('provisioners: none configured, so no user certificate can be issued')
  if (raw.limits.headersTimeout > raw.limits.requestTimeout)
    problems.push(
      `limits.headersTimeout: ${formatDuration(raw.limits.headersTimeout)} is above limits.requestTimeout (${formatDuration(raw.limits.requestTimeout)})`,
    )
  if (Array.isArray(raw.trustProxy)) {
    raw.trustProxy.forEach((a, i) => {
      if (!isCidr(a)) problems.push(`trustProxy[${i}]: "${a}" is not an address or CIDR block`)
    })
  } else if (raw.trustProxy === true) {
    warnings.push("trustProxy: true believes X-Forwarded-For from anyone; list the balancer's addresses instead")
  }
  if (raw.tls.clientCertificates === 'request')
    warnings.push(
      "tls.clientCertificates: request asks every client for a certificate, and OpenSSL checks every signature of any chain one sends, before any token or limit: anyone who reaches the CA can make each handshake cost it hundreds of ordinary ones. Only for `step ssh hosts` over mutual TLS; sshca's own client sends a token instead",
    )
  if (raw.db.type === 'postgresql') checkPostgres(raw.db, raw.limits.idleTimeout, problems, warnings)
  // the list replaces the defaults: an operator who adds one name may not know they gave up the rest
  const unreserved = DEFAULT_RESERVED_PRINCIPALS.filter((p) => !raw.ssh.reservedPrincipals.includes(p))
  if (unreserved.length > 0)
    warnings.push(
      `ssh.reservedPrincipals: the list replaces the default one, so these are no longer reserved and a template may render them from a claim: ${unreserved.join(', ')}; list them too unless you mean it`,
    )
  if (raw.ssh.hostTtl > raw.ssh.maxHostTtl)
    problems.push(
      `ssh.hostTtl: ${formatDuration(raw.ssh.hostTtl)} is above ssh.maxHostTtl (${formatDuration(raw.ssh.maxHostTtl)})`,
    )
  if (problems.length > 0) throw configError(problems, path)
  return {config, warnings}
}

export async function loadConfig(path: string): Promise<ConfigCheck> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new SshcaError('ERR_FILE_NOT_FOUND', `no CA configuration at ${path}`, {
        hint: 'create a CA with: sshca ca init --dir DIR',
      })
    }
    throw new SshcaError('ERR_INPUT', `cannot read ${path}: ${(err as Error).message}`, {cause: err})
  }
  return parseConfig(text, path)
}

/** Query parameters db.url may carry; TLS and the password have their own fields. */
const URL_PARAMS = new Set(['host', 'application_name'])

/**
 * db.url as the pg client needs it: host (or socket directory), port, user, database. Throws a
 * message naming what is wrong; never echoes a password.
 */
export function parsePostgresUrl(url: string): {
  host: string
  port: number
  user: string | undefined
  database: string | undefined
  applicationName: string | undefined
} {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new Error('is not a URL (postgres://USER@HOST:PORT/DATABASE)')
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new Error('must start with postgres://')
  if (u.password !== '')
    throw new Error('holds a password: put it in db.passwordFile (0600) or $PGPASSWORD, never in ca.yaml')
  for (const k of u.searchParams.keys()) {
    if (!URL_PARAMS.has(k))
      throw new Error(
        `?${k}= is not supported${k.startsWith('ssl') ? ': TLS is set with db.tls' : ''} (only ${[...URL_PARAMS].join(', ')})`,
      )
  }
  const host = u.searchParams.get('host') ?? decodeURIComponent(u.hostname)
  if (!host) throw new Error('names no host (postgres://USER@HOST:PORT/DATABASE, or ?host=/socket/dir)')
  const port = u.port ? Number(u.port) : 5432
  const database = decodeURIComponent(u.pathname.replace(/^\//, '')) || undefined
  return {
    host,
    port,
    user: u.username ? decodeURIComponent(u.username) : undefined,
    database,
    applicationName: u.searchParams.get('application_name') ?? undefined,
  }
}

function checkPostgres(db: PostgresDbConfig, idleTimeout: number, problems: string[], warnings: string[]): void {
  let host: string
  try {
    host = parsePostgresUrl(db.url).host
  } catch (err) {
    problems.push(`db.url: ${(err as Error).message}`)
    return
  }
  const socket = host.startsWith('/')
  // the socket's timeout closes a connection nothing crosses for idleTimeout, a request waiting on the
  // database among them, while its statement goes on and may commit: the token spent for nothing. Not
  // limits.requestTimeout: it bounds the request's arrival. A warning, so that a ca.yaml that loaded
  // before (checked then against requestTimeout) still loads
  const wait = STORE_CALLS_IN_SEQUENCE * storeWaitSeconds(db)
  if (wait >= idleTimeout)
    warnings.push(
      `db.timeout: ${formatDuration(db.timeout)} lets a signing request wait ${seconds(wait)} on the database (a renewal: the certificate, its revocations, then the issuance; each a connection, then its statement), not below limits.idleTimeout (${formatDuration(idleTimeout)}): the connection closes while the issuance may still commit and spend its token; lower db.timeout or raise limits.idleTimeout`,
    )
  if ((db.tls.cert === undefined) !== (db.tls.key === undefined)) problems.push('db.tls: cert and key go together')
  const mode = db.tls.mode ?? (socket ? 'disable' : 'verify-full')
  if (!socket && !isLoopbackAddress(host) && (mode === 'disable' || mode === 'require')) {
    warnings.push(
      `db.tls.mode: ${mode} to ${host} ${mode === 'disable' ? 'sends spent tokens and certificates in clear' : 'encrypts but does not check whom it talks to'}; use verify-full with db.tls.ca`,
    )
  }
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
    } else if (issuer.protocol === 'http:') {
      warnings.push(
        `${at}.issuer: ${p.issuer} is plain http, fit for local development only; a real identity provider is https`,
      )
    } else if (issuer.protocol !== 'https:') {
      problems.push(`${at}.issuer: must be an https URL`)
    }
    // OpenID Connect Discovery: an issuer has no query or fragment. A "#" would also let the ids the CA
    // keeps for spent and asked tokens (issuer#jti) of two issuers meet: one's token spending another's
    if (p.issuer.includes('#') || p.issuer.includes('?'))
      problems.push(`${at}.issuer: ${p.issuer} has a query or fragment; an issuer is an https URL without either`)
    const route = `${p.issuer.replace(/\/$/, '')} ${p.audience}`
    if (routes.has(route))
      problems.push(
        `${at}: same issuer and audience as provisioner "${routes.get(route)}", so tokens could not be routed`,
      )
    routes.set(route, p.name)
    if (p.listenAddress !== undefined) {
      const hp = parseHostPort(p.listenAddress)
      if (!hp || !isLoopbackAddress(hp.host))
        problems.push(`${at}.listenAddress: must be a loopback address with a port, such as 127.0.0.1:10000`)
    }
    if (p.rules.length === 0) warnings.push(`${at} (${p.name}): no rules, so every token from it is denied`)
    const ruleNames = new Set<string>()
    p.rules.forEach((r, j) => checkRule(config, p, r, `${at}.rules[${j}]`, ruleNames, problems, warnings))
    warnings.push(...overlapWarnings(p, at))
  })
  warnings.push(...localPartCollisions(config))
}

/**
 * Rules (of any provisioner) that render one principal template from a claim's local part with its
 * domain pinned to different domains: alice@example.com and alice@agency.io, two people, get the one
 * principal alice. Each rule alone is sound (checkRule warns about a domain left open); together they
 * collide. A template of its own per domain ("c-${email.local}") keeps them apart.
 */
function localPartCollisions(config: CaConfig): string[] {
  /** template → the domains its local parts are pinned to → the rules (provisioner/rule) that render it so. */
  const seen = new Map<string, Map<string, string[]>>()
  for (const p of config.provisioners)
    for (const r of p.rules)
      for (const t of new Set(r.certificate.principals)) {
        const pinned = templateClaims(t).localParts.map((claim) => {
          const cond = r.match[claim]
          return typeof cond === 'object' && !Array.isArray(cond) && 'domain' in cond ? cond.domain.toLowerCase() : ''
        })
        // a domain left open is checkRule's warning
        if (pinned.length === 0 || pinned.includes('')) continue
        const domains = seen.get(t) ?? new Map<string, string[]>()
        seen.set(t, domains)
        const key = pinned.join(', ')
        domains.set(key, [...(domains.get(key) ?? []), `${p.name}/${r.name}`])
      }
  return [...seen].flatMap(([t, domains]) =>
    domains.size < 2
      ? []
      : [
          `principals: "${t}" is rendered for addresses in ${[...domains].map(([d, rules]) => `${d} (${rules.join(', ')})`).join(' and ')}: alice@ of each domain gets the same principal, two people one account; give each domain a template of its own (for example a prefix, "c-${t}")`,
        ],
  )
}

function checkRule(
  config: CaConfig,
  p: ProvisionerConfig,
  r: RuleConfig,
  at: string,
  ruleNames: Set<string>,
  problems: string[],
  warnings: string[],
): void {
  if (ruleNames.has(r.name)) problems.push(`${at}.name: "${r.name}" is used twice in provisioner "${p.name}"`)
  ruleNames.add(r.name)
  const keys = Object.keys(r.match)
  if (keys.length === 0) problems.push(`${at}.match: a rule must match on at least one claim`)
  for (const claim of keys) {
    const why = unknownClaim(p.issuer, claim)
    if (why) warnings.push(`${at}.match.${claim}: ${why} (a claim the token lacks never matches)`)
  }
  ;[...r.certificate.principals, r.certificate.keyId].forEach((t) => {
    for (const claim of templateClaims(t).claims) {
      const why = unknownClaim(p.issuer, claim)
      if (why) warnings.push(`${at}.certificate: template "${t}": ${why} (a template whose claim is absent denies)`)
    }
  })
  for (const [claim, cond] of Object.entries(r.match)) {
    // "**" with anything but "/" or an end on either side ("a**", "**main", "***") is refused
    if (
      typeof cond === 'object' &&
      // Stryker disable next-line ConditionalExpression: 'glob' in [] is false, so the array test only narrows the type
      !Array.isArray(cond) &&
      'glob' in cond &&
      /(?<!^|\/)\*\*|\*\*(?!$|\/)/.test(cond.glob)
    ) {
      problems.push(`${at}.match.${claim}: "**" must stand for a whole path segment`)
    }
  }
  // {domain} on an email the IdP has not verified: anyone who can type an address in that domain
  for (const [claim, cond] of Object.entries(r.match)) {
    if (typeof cond === 'object' && !Array.isArray(cond) && 'domain' in cond && r.match.email_verified !== true) {
      warnings.push(
        `${at} (${r.name}): matches ${claim} on domain ${cond.domain} without email_verified: true, so an unverified address in that domain gets a certificate; add email_verified: true`,
      )
    }
  }
  if (isCiProvisioner(p) && !keys.some((k) => PINNING_CLAIMS.has(k) && pins(r.match[k]!))) {
    warnings.push(
      `${at} (${r.name}): a CI rule that pins neither repository/repository_owner (or their ids) nor sub: a workflow in any repository this issuer serves can match it; pin the repository`,
    )
  }
  if (keys.length === 1 && keys[0] === 'repository') {
    warnings.push(
      `${at} (${r.name}): matches on repository alone, so any branch, workflow, event or manual run of it gets a certificate; also pin ref, event_name, job_workflow_ref or environment`,
    )
  }
  if (r.webhook) {
    const u = new URL(r.webhook.url)
    if (u.protocol === 'http:' && isLoopbackAddress(u.hostname))
      warnings.push(`${at}.webhook.url: plain http, fit for local development only`)
    else if (u.protocol !== 'https:') problems.push(`${at}.webhook.url: must be https (the claims travel in it)`)
    if (u.username || u.password)
      problems.push(`${at}.webhook.url: no credentials in the URL; use secretFile (HMAC-SHA256 of the body)`)
    if (r.webhook.timeout > WEBHOOK_MAX_SECONDS)
      problems.push(
        `${at}.webhook.timeout: ${formatDuration(r.webhook.timeout)} is above ${formatDuration(WEBHOOK_MAX_SECONDS)}; a signing request must not wait that long`,
      )
    else {
      // the socket's timeout (limits.idleTimeout) closes a connection that nothing crosses for that
      // long, the request waiting on the call (and then on the database) among them, while the call
      // goes on, and an allow then spends the token for nothing. Not limits.requestTimeout: it bounds
      // the request's arrival (headers and body), and a request received in full waits for its
      // webhook. A warning, so that a ca.yaml that loaded before still loads
      const slow = slowWebhook(at, r.webhook.timeout, config.db, config.limits.idleTimeout)
      if (slow) warnings.push(slow)
    }
    if (!r.webhook.secretFile)
      warnings.push(`${at}.webhook: no secretFile, so the webhook cannot tell the CA's requests from anyone else's`)
  }
  const c = r.certificate
  if (c.principals.length === 0 && !c.principalsFrom)
    problems.push(`${at}.certificate: a rule must grant at least one principal (principals or principalsFrom)`)
  if (c.principalsFrom) {
    const pf = c.principalsFrom
    const why = unknownClaim(p.issuer, pf.claim)
    if (why) warnings.push(`${at}.certificate.principalsFrom.claim: ${why}`)
    if (USER_CHOSEN_CLAIMS.has(pf.claim))
      warnings.push(
        `${at}.certificate.principalsFrom.claim: "${pf.claim}" is chosen by the user at the identity provider; use a group claim the IdP manages`,
      )
    // the address itself as a principal (a mapped one too): as a template of it, anyone's to type unverified
    if (pf.claim === 'email' && r.match.email_verified !== true)
      warnings.push(
        `${at}.certificate.principalsFrom.claim: "email" without email_verified: true in the rule's match, so whoever sets an unverified address at the identity provider gets the principal it names; add email_verified: true`,
      )
    pf.allow.forEach((g, k) => {
      if (/^[*?]+$/.test(g))
        warnings.push(
          `${at}.certificate.principalsFrom.allow[${k}]: "${g}" admits every group the IdP sends; name a prefix such as "ssh-*"`,
        )
    })
    for (const [from, to] of Object.entries(pf.map ?? {})) {
      if (!pf.allow.some((g) => compileGlob(g).test(from)))
        warnings.push(`${at}.certificate.principalsFrom.map: "${from}" is not admitted by allow, so it is never mapped`)
      if (!SAFE_VALUE.test(to))
        problems.push(`${at}.certificate.principalsFrom.map: "${to}" is outside [A-Za-z0-9._@:/-]`)
      if (config.ssh.reservedPrincipals.includes(to))
        warnings.push(
          `${at}.certificate.principalsFrom.map: "${from}" → "${to}" is a reserved principal (ssh.reservedPrincipals), so it is never granted`,
        )
    }
  }
  c.principals.forEach((t, k) => {
    for (const problem of templateProblems(t)) problems.push(`${at}.certificate.principals[${k}]: ${problem}`)
    const {claims, lossy, localParts} = templateClaims(t)
    const chosen = claims.filter((cl) => USER_CHOSEN_CLAIMS.has(cl))
    if (chosen.length) {
      warnings.push(
        `${at}.certificate.principals[${k}]: "${t}" renders ${chosen.join(', ')}, which the user chooses at the identity provider; use an email the IdP verifies, or a fixed principal`,
      )
    }
    // an address the IdP has not verified is anyone's to type: bob@ renders bob, another person's account
    if (claims.includes('email') && r.match.email_verified !== true) {
      warnings.push(
        `${at}.certificate.principals[${k}]: "${t}" renders email, but the rule does not match email_verified: true, so whoever sets an unverified address at the identity provider (bob@…) gets that person's principal; add email_verified: true`,
      )
    }
    // ${email.local} drops the domain: unless the rule pins it, alice@ of every domain the IdP vouches
    // for renders the one principal alice
    for (const claim of localParts) {
      const cond = r.match[claim]
      if (!(typeof cond === 'object' && !Array.isArray(cond) && 'domain' in cond))
        warnings.push(
          `${at}.certificate.principals[${k}]: "${t}" renders the local part of ${claim} but the rule does not pin its domain (match: {${claim}: {domain: …}}), so alice@ of any domain the identity provider vouches for gets the principal alice; pin the domain`,
        )
    }
    if (lossy) {
      warnings.push(
        `${at}.certificate.principals[${k}]: "${t}" uses step's lossy sanitizing: J.Doe@ and jdoe@ (and r.o.o.t@ and root@) collide; prefer \${email.local}, which denies rather than rewrites`,
      )
    }
    // a template ("${…}") is never an account name; the reserved list is checked again when it renders
    if (config.ssh.reservedPrincipals.includes(t)) {
      warnings.push(
        `${at}.certificate.principals[${k}]: grants the reserved account "${t}" to everyone the rule matches${t === 'root' ? '; prefer a named account with sudo' : ''}`,
      )
    }
  })
  for (const problem of templateProblems(c.keyId)) problems.push(`${at}.certificate.keyId: ${problem}`)
  // Stryker disable next-line StringLiteral: any one-line stand-in for an absent force-command passes the same
  if (/[\r\n\0]/.test(c.forceCommand ?? '')) problems.push(`${at}.certificate.forceCommand: must be one line`)
  c.sourceAddress?.forEach((a, k) => {
    if (!isCidr(a)) problems.push(`${at}.certificate.sourceAddress[${k}]: "${a}" is not an address or CIDR block`)
  })
  c.extensions.forEach((e, k) => {
    if (!KNOWN_EXTENSIONS.has(e))
      problems.push(
        `${at}.certificate.extensions[${k}]: unknown extension "${e}" (known: ${[...KNOWN_EXTENSIONS].join(', ')})`,
      )
  })
  const risky = c.extensions.filter((e) => e !== 'permit-pty')
  if (c.forceCommand !== undefined && c.extensions.length > 0) {
    warnings.push(`${at} (${r.name}): grants ${c.extensions.join(', ')} with a force-command, which does not need them`)
  } else if (risky.length > 0) {
    warnings.push(`${at} (${r.name}): grants ${risky.join(', ')}; grant forwarding only where a use case needs it`)
  }
  const ceiling = Math.min(p.maxTtl ?? Infinity, config.ssh.maxUserTtl)
  if (c.ttl > ceiling)
    warnings.push(
      `${at}.certificate.ttl: ${formatDuration(c.ttl)} is capped to ${formatDuration(ceiling)} (maxTtl / ssh.maxUserTtl)`,
    )
}

/**
 * Claims a CI token carries that name the repository the workflow runs for. Not `job_workflow_ref`:
 * it names the reusable workflow a job calls, which any repository may call when it is public (or,
 * internal, any of the organisation's), so the caller, whose runners and inputs the job runs with,
 * is anyone's.
 */
const PINNING_CLAIMS = new Set([
  'repository',
  'repository_id',
  'repository_owner',
  'repository_owner_id',
  'sub',
  'project_path',
  'project_id',
  'namespace_path',
  'namespace_id',
])
/** Claims a person sets for themselves at most identity providers: never a principal. */
const USER_CHOSEN_CLAIMS = new Set([
  'preferred_username',
  'name',
  'nickname',
  'given_name',
  'family_name',
  'middle_name',
  'username',
  'user_login',
  'login',
])
const CI_ISSUERS = [
  /^https:\/\/token\.actions\.githubusercontent\.com(\/|$)/,
  /^https:\/\/gitlab\.com\/?$/,
  /^https:\/\/oidc\.circleci\.com\//,
  /^https:\/\/vstoken\.actions\.githubusercontent\.com/,
]

/** A provisioner for machines: a known CI issuer, or one with no client id (nobody signs in interactively). */
export function isCiProvisioner(p: Pick<ProvisionerConfig, 'issuer' | 'clientId'>): boolean {
  return CI_ISSUERS.some((re) => re.test(p.issuer)) || p.clientId === undefined
}

/**
 * A condition pins a value unless it is a glob that leaves the owner open: one whose literal text
 * before its first wildcard names no owner followed by "/". A wildcard in or before the owner admits
 * owners anyone can create (acme-evil, mallory). A glob without a wildcard is a value.
 */
function pins(c: MatchCondition): boolean {
  if (typeof c !== 'object' || !('glob' in c)) return true
  const wildcard = c.glob.search(/[*?]/)
  return wildcard === -1 || /[^/]\//.test(c.glob.slice(0, wildcard))
}

/** Two enabled rules of one provisioner that one token could match both of: a certain denial. */
function overlapWarnings(p: ProvisionerConfig, at: string): string[] {
  const out: string[] = []
  const rules = p.rules.filter((r) => !r.disabled)
  // Stryker disable next-line EqualityOperator: with i = rules.length the inner loop does not run
  for (let i = 0; i < rules.length; i++) {
    for (let j = i + 1; j < rules.length; j++) {
      const a = rules[i]!
      const b = rules[j]!
      const shared = Object.keys(a.match).filter((k) => k in b.match)
      if (shared.every((k) => mayOverlap(a.match[k]!, b.match[k]!))) {
        out.push(
          `${at} (${p.name}): rules "${a.name}" and "${b.name}" can match the same token, and a token matching two rules is denied; make them exclusive`,
        )
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
  // Stryker disable next-line ArrayDeclaration: [] destructures to the same two undefineds
  const [vals, other] = va ? [va, b] : vb ? [vb, a] : [undefined, undefined]
  // here one side is values and the other an object condition (two value lists returned above):
  // Stryker disable next-line ConditionalExpression,LogicalOperator: the type tests only narrow for the compiler
  if (vals && other && typeof other === 'object' && !Array.isArray(other)) {
    if ('domain' in other)
      return vals.some((v) => typeof v === 'string' && v.toLowerCase().endsWith(`@${other.domain.toLowerCase()}`))
    if ('glob' in other) return vals.some((v) => typeof v === 'string' && compileGlob(other.glob).test(v))
    return false // {contains} needs an array claim; a scalar claim can never satisfy both
  }
  // both are object conditions here: the type tests only narrow for the compiler
  // Stryker disable ConditionalExpression,LogicalOperator: see above
  if (
    typeof a === 'object' &&
    typeof b === 'object' &&
    !Array.isArray(a) &&
    !Array.isArray(b) &&
    'domain' in a &&
    'domain' in b
  ) {
    // Stryker restore ConditionalExpression,LogicalOperator
    return a.domain.toLowerCase() === b.domain.toLowerCase()
  }
  return true
}
