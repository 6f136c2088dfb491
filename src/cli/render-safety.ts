/** Text renderers for the operator's safety net: backup, restore, the emergency stop, status, host audit. Pure. */
import type {BackupResult, RestoreResult} from '../ca/backup.ts'
import type {IssuanceStatus, MarkRestoredResult, StopResult} from '../ca/safety.ts'
import type {HostAuditResult} from '../client/host/host-audit.ts'

const mib = (n: number): string => (n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`)

export function renderBackup(r: BackupResult): string {
  const m = r.manifest
  const store =
    m.store.type === 'sqlite'
      ? `SQLite snapshot at ${m.store.snapshotAt}: ${m.store.certificates} certificate(s), ${m.store.revocations} revocation(s), ${m.store.spentTokens} spent token id(s)`
      : `PostgreSQL ${m.store.database}: NOT in the archive (see below)`
  let out = `Wrote ${r.file} (${mib(r.size)}, sealed with the backup password)
  SHA-256           ${r.sha256}
  Root fingerprint  ${m.ca.rootFingerprint}
  User CA key       ${m.ca.userCaKey}
  Host CA key       ${m.ca.hostCaKey}
  Root key          ${m.ca.rootKeyIncluded ? 'included (sealed)' : 'not here (offline root)'}
  Store             ${store}
  Files             ${m.files.length}
`
  if (r.notes.length) out += `\n${r.notes.map((n) => `- ${n}`).join('\n')}\n`
  out += `\nCheck it (writes nothing): sshca ca restore ${r.file} --dir /tmp/sshca-drill --dry-run\n`
  return out
}

export function renderRestore(r: RestoreResult): string {
  const store =
    r.store.type === 'sqlite'
      ? `SQLite snapshot of ${r.store.snapshotAt} (${r.store.certificates} certificate(s), ${r.store.revocations} revocation(s))`
      : `PostgreSQL ${r.store.database} (restore it with pg_restore)`
  let out = r.dryRun
    ? `The archive verifies (authentic, every checksum, ${r.signature === 'verified' ? "the CA's signature, " : ''}the CA identity and ca.yaml); nothing was written.\n`
    : `Restored the CA into ${r.dir}\n`
  out += `  Archive of       ${r.createdAt}
  Root fingerprint  ${r.rootFingerprint}
  User CA key       ${r.userCaKey}
  Host CA key       ${r.hostCaKey}
  Store             ${store}
  Root key          ${r.rootKeyIncluded ? 'included (sealed)' : 'not included (offline root)'}
  Signature         ${r.signature === 'verified' ? 'verified with the CA password' : 'none (made before sshca signed archives; restored with --unverified)'}
`
  if (r.notes.length) out += `\n${r.notes.map((n) => `- ${n}`).join('\n')}\n`
  if (r.next.length) out += `\nNext:\n${r.next.map((n) => `  ${n}`).join('\n')}\n`
  return out
}

export function renderStatus(s: IssuanceStatus): string {
  const state = s.issuing
    ? 'ISSUING'
    : s.stop
      ? `STOPPED since ${s.stop.since} (${s.stop.reason})`
      : 'STOPPED by ca.yaml (disabled: true)'
  const promise =
    s.lastValidBefore === null
      ? 'it has never issued a certificate'
      : s.nothingValid
        ? `no certificate signed by this CA is valid any more (the last expired ${s.lastValidBefore})`
        : s.issuing
          ? `certificates it issued are valid until at least ${s.lastValidBefore}`
          : `after ${s.lastValidBefore} nothing signed by this CA works`
  const line = (v: {active: number; lastValidBefore: string | null}) =>
    `${v.active} valid now${v.lastValidBefore ? `; all expire by ${v.lastValidBefore}` : ''}`
  return `${s.ca.name}: ${state}
  ${promise}
  User certificates  ${line(s.certificates.user)}
  Host certificates  ${line(s.certificates.host)}
  Root fingerprint   ${s.ca.rootFingerprint}
  Root key           ${s.ca.rootKeyOnline ? 'on this box' : 'offline (not in the CA directory)'}
  Intermediate until ${s.ca.intermediateNotAfter}
${s.restoredAt ? `  Restored           ${s.restoredAt} (tokens issued before then are refused)\n` : ''}`
}

export function renderStop(r: StopResult): string {
  const head = r.changed
    ? `Issuance stopped at ${r.stop?.since}.`
    : `Issuance was already stopped (since ${r.stop?.since}: ${r.stop?.reason}); nothing changed.`
  return `${head}
Every CA serving from this store refuses to sign within a second of it (503 issuance_stopped); ca.yaml says disabled: true.
${r.lastValidBefore === null ? 'It never issued a certificate.' : r.nothingValid ? `No certificate it signed is valid any more.` : `After ${r.lastValidBefore} nothing signed by this CA works, counting what replicas issued before they applied the stop (revoke sooner with sshca ca revoke).`}
Resume with: sshca ca resume-issuance --reason "…"
`
}

export function renderMarkRestored(r: MarkRestoredResult): string {
  return (
    `The store is marked restored at ${r.restoredAt}: every CA serving from it refuses tokens issued before then ` +
    `(and within a minute after) from the next second on, so none spent after the restored copy was taken signs again.\n` +
    `The mark stops mattering ${Math.ceil(r.windowSeconds / 60)} min from now, when every such token has expired. ` +
    'Re-apply revocations made since the copy was taken (certificate_revoked in the audit log).\n'
  )
}

export function renderResume(r: StopResult): string {
  return r.changed
    ? 'Issuance resumed: CAs serving from this store sign again within a second.\n'
    : 'Issuance was not stopped; nothing changed.\n'
}

export function renderHostAudit(r: HostAuditResult): string {
  let out = `sshd ${r.sshd.config} (effective settings from ${r.sshd.binary} -T)\n`
  const loginAccounts = r.accounts.filter((a) => a.canLogin)
  out += `Accounts with a login shell: ${loginAccounts.length ? loginAccounts.map((a) => a.user).join(', ') : 'none'}\n`
  for (const a of r.accounts) {
    for (const f of a.authorizedKeys) {
      out += `  ${a.user}: ${f.path}${f.error ? ` (unreadable: ${f.error})` : `, ${f.keys.length} key(s)`}\n`
      for (const k of f.keys)
        out += `    line ${k.line}: ${k.certAuthority ? 'cert-authority ' : ''}${k.type} ${k.fingerprint}${k.comment ? ` ${k.comment}` : ''}${k.trustedCa ? ' (a CA sshd trusts: not counted)' : ''}${k.options && !k.certAuthority ? ` [${k.options}]` : ''}\n`
    }
  }
  for (const h of r.hostKeys) out += `Host key ${h.path}: ${h.problem ? h.problem : `certified (${h.certificate})`}\n`
  if (r.configHost) {
    if ('error' in r.configHost)
      out += `sshca config --host: cannot tell what it would change (${r.configHost.error})\n`
    else {
      const pending = r.configHost.files.filter((f) => f.state !== 'same')
      out +=
        pending.length === 0
          ? `sshca config --host (context ${r.configHost.context}): nothing to change\n`
          : `sshca config --host (context ${r.configHost.context}) would ${pending.map((f) => `${f.state} ${f.path}`).join(', ')}\n`
    }
  }
  out += r.clean
    ? '\nNo way in bypasses the CA.\n'
    : `\n${r.findings.length} way(s) in that do not go through the CA:\n${r.findings.map((f) => `- ${f.message}\n  → ${f.remedy}`).join('\n')}\n`
  if (r.notes.length) out += `\n${r.notes.map((n) => `Note: ${n}`).join('\n')}\n`
  return out
}
