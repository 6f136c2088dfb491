/**
 * Policy what-if (`sshca ca explain --config NEW.yaml --since 7d | --replay AUDIT.log`): the claims
 * of recent requests (kept in the store with each certificate, or in the audit log's lines; never a
 * token) replayed through a new policy, and what would change for whom: principals, options,
 * extensions or lifetime gained or lost, and who would be denied (or newly let in). Pure: the
 * records come in, a report goes out; `--json` of it is what a CI job reviews on a policy PR.
 */
import {formatDuration} from '../../util/duration.ts'
import type {CaConfig} from '../config/config.ts'
import {CLOCK_SKEW_SECONDS} from '../policy/policy.ts'
import {explain} from './explain.ts'

/** What a request got (or why not), as recorded. */
export interface Grant {
  principals: string[]
  /** Seconds. */
  ttl: number
  criticalOptions: Record<string, string>
  extensions: string[]
  rule: string | null
}

export interface ReplayRecord {
  /** ISO time of the original decision. */
  at: string
  subject: string | null
  provisioner: string
  claims: Record<string, unknown>
  /** What was issued, or null when it was denied (by the policy). */
  issued: Grant | null
  /** The denial reason, when it was denied. */
  reason?: string | undefined
}

export type ChangeKind = 'unchanged' | 'changed' | 'newly_denied' | 'newly_allowed' | 'still_denied'

export interface Delta {
  principals: string[]
  extensions: string[]
  criticalOptions: string[]
}

export interface WhatIfEntry {
  subject: string | null
  provisioner: string
  /** When the replayed request was made (the newest of the group). */
  at: string
  /** How many recorded requests of this subject had this outcome before and would have this one after. */
  requests: number
  kind: ChangeKind
  before:
    | {
        issued: true
        rule: string | null
        principals: string[]
        ttl: string
        criticalOptions: Record<string, string>
        extensions: string[]
      }
    | {issued: false; reason: string}
  after:
    | {
        issued: true
        rule: string
        principals: string[]
        ttl: string
        ttlSeconds: number
        criticalOptions: Record<string, string>
        extensions: string[]
      }
    | {issued: false; reason: string; message: string}
  gained: Delta
  lost: Delta
  /** Lifetime after − before, seconds (0 when either side is a denial). */
  ttlChange: number
}

export interface WhatIfReport {
  config: string
  replayed: number
  /** Distinct (subject, provisioner, outcome before, outcome after). */
  distinct: number
  summary: Record<ChangeKind, number>
  /** Every entry whose outcome changed (unchanged ones are counted only). */
  changes: WhatIfEntry[]
}

/** Denials the policy made (and a new policy might not): not bad tokens, limits or outages. */
export const POLICY_REASONS = new Set([
  'no_rule_matched',
  'multiple_rules_matched',
  'claim_missing',
  'principal_invalid',
  'principal_reserved',
  'no_principals',
  'key_id_invalid',
  'cert_type_not_allowed',
  'webhook_denied',
])

const diff = (a: readonly string[], b: readonly string[]): string[] => a.filter((x) => !b.includes(x))
const optionsOf = (o: Record<string, unknown>): string[] =>
  Object.entries(o)
    .map(([k, v]) => (v === true || v === '' ? k : `${k}=${String(v)}`))
    .sort()

export function whatIf(config: CaConfig, records: readonly ReplayRecord[], nowSeconds: number): WhatIfReport {
  // one entry per person and outcome: requests of one subject that were granted the same and would
  // be granted the same are one line (their other claims, run ids and the like, differ)
  const groups = new Map<string, WhatIfEntry>()
  for (const r of records) {
    const e = replay(config, r, 1, nowSeconds)
    const key = JSON.stringify([e.provisioner, e.subject, e.before, e.after])
    const g = groups.get(key)
    if (!g) groups.set(key, e)
    else {
      g.requests++
      if (e.at > g.at) g.at = e.at
    }
  }
  const summary: Record<ChangeKind, number> = {
    unchanged: 0,
    changed: 0,
    newly_denied: 0,
    newly_allowed: 0,
    still_denied: 0,
  }
  const changes: WhatIfEntry[] = []
  for (const entry of groups.values()) {
    summary[entry.kind]++
    if (entry.kind !== 'unchanged' && entry.kind !== 'still_denied') changes.push(entry)
  }
  const order: Record<ChangeKind, number> = {
    newly_denied: 0,
    changed: 1,
    newly_allowed: 2,
    still_denied: 3,
    unchanged: 4,
  }
  changes.sort((a, b) => order[a.kind] - order[b.kind] || (a.subject ?? '').localeCompare(b.subject ?? ''))
  return {config: config.path, replayed: records.length, distinct: groups.size, summary, changes}
}

function replay(config: CaConfig, rec: ReplayRecord, count: number, now: number): WhatIfEntry {
  const hasProvisioner = config.provisioners.some((p) => p.name === rec.provisioner)
  let after: WhatIfEntry['after']
  if (!hasProvisioner) {
    after = {
      issued: false,
      reason: 'provisioner_removed',
      message: `the new policy has no provisioner "${rec.provisioner}"`,
    }
  } else {
    const r = explain(config, rec.claims, rec.provisioner, now)
    after = r.decision.issued
      ? {
          issued: true,
          rule: r.decision.rule,
          principals: r.decision.certificate.principals,
          ttl: r.decision.certificate.ttl,
          ttlSeconds: r.decision.certificate.ttlSeconds,
          criticalOptions: r.decision.certificate.criticalOptions as Record<string, string>,
          extensions: [...r.decision.certificate.extensions].sort(),
        }
      : {issued: false, reason: r.decision.reason, message: r.decision.message}
  }
  const before: WhatIfEntry['before'] = rec.issued
    ? {
        issued: true,
        rule: rec.issued.rule,
        principals: rec.issued.principals,
        ttl: formatDuration(rec.issued.ttl),
        criticalOptions: rec.issued.criticalOptions,
        extensions: [...rec.issued.extensions].sort(),
      }
    : {issued: false, reason: rec.reason ?? 'denied'}
  const empty: Delta = {principals: [], extensions: [], criticalOptions: []}
  let gained = empty
  let lost = empty
  let ttlChange = 0
  let kind: ChangeKind
  if (before.issued && after.issued) {
    const bo = optionsOf(before.criticalOptions)
    const ao = optionsOf(after.criticalOptions)
    gained = {
      principals: diff(after.principals, before.principals),
      extensions: diff(after.extensions, before.extensions),
      criticalOptions: diff(ao, bo),
    }
    lost = {
      principals: diff(before.principals, after.principals),
      extensions: diff(before.extensions, after.extensions),
      criticalOptions: diff(bo, ao),
    }
    ttlChange = after.ttlSeconds - (rec.issued?.ttl ?? 0)
    const same =
      [gained, lost].every((d) => d.principals.length + d.extensions.length + d.criticalOptions.length === 0) &&
      ttlChange === 0
    kind = same ? 'unchanged' : 'changed'
  } else if (before.issued) {
    kind = 'newly_denied'
    lost = {
      principals: before.principals,
      extensions: before.extensions,
      criticalOptions: optionsOf(before.criticalOptions),
    }
  } else if (after.issued) {
    kind = 'newly_allowed'
    gained = {
      principals: after.principals,
      extensions: after.extensions,
      criticalOptions: optionsOf(after.criticalOptions),
    }
  } else {
    kind = 'still_denied'
  }
  return {
    subject: rec.subject,
    provisioner: rec.provisioner,
    at: rec.at,
    requests: count,
    kind,
    before,
    after,
    gained,
    lost,
    ttlChange,
  }
}

/** A recorded certificate's lifetime as the policy set it (validity starts CLOCK_SKEW_SECONDS back). */
export function grantedTtl(validAfter: bigint | number, validBefore: bigint | number): number {
  return Number(validBefore) - Number(validAfter) - CLOCK_SKEW_SECONDS
}

/**
 * Replay records from audit log lines: certificate_issued with its claims, and certificate_denied
 * for a policy reason (after the token was verified, so the claims are real). Lines without claims,
 * for hosts, or before `since` are skipped; the count of skipped lines is returned.
 */
export function recordsFromAudit(text: string, since?: number): {records: ReplayRecord[]; skipped: number} {
  const records: ReplayRecord[] = []
  let skipped = 0
  for (const line of text.split('\n')) {
    if (!line.trim()) continue
    let e: Record<string, unknown>
    try {
      e = JSON.parse(line) as Record<string, unknown>
    } catch {
      skipped++
      continue
    }
    if (e.event !== 'certificate_issued' && e.event !== 'certificate_denied') continue
    const at = typeof e.time === 'string' ? e.time : ''
    if (since !== undefined && Date.parse(at) / 1000 < since) continue
    const claims = e.claims as Record<string, unknown> | undefined
    if (!claims || typeof e.provisioner !== 'string' || e.cert_type === 'host' || e.provisioner.startsWith('host-')) {
      skipped++
      continue
    }
    const base = {at, subject: typeof e.subject === 'string' ? e.subject : null, provisioner: e.provisioner, claims}
    if (e.event === 'certificate_issued') {
      const va = Date.parse(String(e.valid_after)) / 1000
      const vb = Date.parse(String(e.valid_before)) / 1000
      records.push({
        ...base,
        issued: {
          principals: (e.principals as string[]) ?? [],
          ttl: grantedTtl(va, vb),
          criticalOptions: (e.critical_options as Record<string, string>) ?? {},
          extensions: (e.extensions as string[]) ?? [],
          rule: typeof e.rule === 'string' ? e.rule : null,
        },
      })
    } else if (POLICY_REASONS.has(String(e.reason))) {
      records.push({...base, issued: null, reason: String(e.reason)})
    } else {
      skipped++
    }
  }
  return {records, skipped}
}
