/** Text renderers for the operator's safety net: backup, restore, the emergency stop, status, host audit. Pure. */
import type {BackupResult, RestoreResult} from '../ca/backup.ts'

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
