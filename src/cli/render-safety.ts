/** Text renderers for the operator's safety net: backup, restore, the emergency stop, status, host audit. Pure. */
import type {BackupResult, RestoreResult} from '../ca/backup.ts'
import type {IssuanceStatus, StopResult} from '../ca/safety.ts'

const mib = (n: number): string => (n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`)

export function renderBackup(r: BackupResult): string {
  const m = r.manifest
  const store = m.store.type === 'sqlite'
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
  const store = r.store.type === 'sqlite' ? `SQLite snapshot of ${r.store.snapshotAt} (${r.store.certificates} certificate(s), ${r.store.revocations} revocation(s))` : `PostgreSQL ${r.store.database} (restore it with pg_restore)`
  let out = r.dryRun ? 'The archive verifies (authentic, every checksum, the CA identity and ca.yaml); nothing was written.\n' : `Restored the CA into ${r.dir}\n`
  out += `  Archive of       ${r.createdAt}
  Root fingerprint  ${r.rootFingerprint}
  User CA key       ${r.userCaKey}
  Host CA key       ${r.hostCaKey}
  Store             ${store}
  Root key          ${r.rootKeyIncluded ? 'included (sealed)' : 'not included (offline root)'}
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
  const promise = s.lastValidBefore === null
    ? 'it has never issued a certificate'
    : s.nothingValid
      ? `no certificate signed by this CA is valid any more (the last expired ${s.lastValidBefore})`
      : s.issuing
        ? `certificates it issued are valid until at least ${s.lastValidBefore}`
        : `after ${s.lastValidBefore} nothing signed by this CA works`
  const line = (v: {active: number; lastValidBefore: string | null}) => `${v.active} valid now${v.lastValidBefore ? `; all expire by ${v.lastValidBefore}` : ''}`
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
  const head = r.changed ? `Issuance stopped at ${r.stop?.since}.` : `Issuance was already stopped (since ${r.stop?.since}: ${r.stop?.reason}); nothing changed.`
  return `${head}
Every CA serving from this store refuses to sign within a second of it (503 issuance_stopped); ca.yaml says disabled: true.
${r.lastValidBefore === null ? 'It never issued a certificate.' : r.nothingValid ? `No certificate it signed is valid any more.` : `After ${r.lastValidBefore} nothing signed by this CA works, counting what replicas issued before they applied the stop (revoke sooner with sshca ca revoke).`}
Resume with: sshca ca resume-issuance --reason "…"
`
}

export function renderResume(r: StopResult): string {
  return r.changed ? 'Issuance resumed: CAs serving from this store sign again within a second.\n' : 'Issuance was not stopped; nothing changed.\n'
}
