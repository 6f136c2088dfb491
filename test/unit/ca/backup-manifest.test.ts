/**
 * The manifest inside a backup archive, as `ca restore` checks it before it writes a byte: only the
 * files a CA directory holds (no path out of it, no hidden name, nothing twice), every file a CA needs
 * to start, sizes and checksums in shape, a store this sshca can open.
 */
import assert from 'node:assert/strict'
import {checkManifest, SNAPSHOT_PATH, type BackupManifest} from '../../../src/ca/backup.ts'
import {SCHEMA_VERSION} from '../../../src/ca/store/migrations.ts'

const H = 'a'.repeat(64)
const REQUIRED = [
  'ca.yaml',
  'certs/root_ca.crt',
  'certs/intermediate_ca.crt',
  'certs/tls.crt',
  'secrets/intermediate_ca.key',
  'secrets/tls.key',
  'secrets/ssh_user_ca.key',
  'secrets/ssh_host_ca.key',
  'secrets/enrollment.key',
  'ssh/ssh_user_ca.pub',
  'ssh/ssh_host_ca.pub',
]

function manifest(
  over: Partial<BackupManifest> = {},
  extra: {path: string; size?: number; sha256?: string}[] = [],
): BackupManifest {
  return {
    format: 'sshca-backup-manifest',
    version: 1,
    createdAt: new Date().toISOString(),
    ca: {
      name: 't',
      rootFingerprint: H,
      userCaKey: 'SHA256:x',
      hostCaKey: 'SHA256:y',
      intermediateNotAfter: new Date().toISOString(),
      rootKeyIncluded: true,
    },
    store: {
      type: 'sqlite',
      file: SNAPSHOT_PATH,
      snapshotAt: new Date().toISOString(),
      method: 'sqlite3_backup',
      schemaVersion: SCHEMA_VERSION,
      certificates: 0,
      revocations: 0,
      spentTokens: 0,
    },
    external: [],
    files: [...REQUIRED, SNAPSHOT_PATH]
      .map((path) => ({path, size: 10, sha256: H}))
      .concat(extra.map((e) => ({size: 1, sha256: H, ...e}))),
    ...over,
  }
}

describe('backup manifest: what a restore accepts', () => {
  it('accepts what ca backup writes, with extra keys a rotation added', () => {
    assert.doesNotThrow(() =>
      checkManifest(manifest({}, [{path: 'secrets/ssh_user_ca.next.key'}, {path: 'secrets/root_ca.key'}])),
    )
  })

  for (const path of [
    '../ca.yaml',
    '/etc/passwd',
    'certs/../../x',
    'certs/..',
    'secrets/.hidden',
    'secrets/a/b',
    'db/other.sqlite',
    'audit.log',
    'certs/',
    'ssh/ key',
    'secrets\\x',
  ]) {
    it(`refuses a file at ${JSON.stringify(path)}`, () => {
      assert.throws(() => checkManifest(manifest({}, [{path}])), /outside what a CA directory holds/)
    })
  }

  it('refuses a file listed twice, a missing key, a bad checksum or size, an oversized key file', () => {
    assert.throws(() => checkManifest(manifest({}, [{path: 'ca.yaml'}])), /twice/)
    const m = manifest()
    m.files = m.files.filter((f) => f.path !== 'secrets/ssh_host_ca.key')
    assert.throws(() => checkManifest(m), /lacks secrets\/ssh_host_ca.key/)
    assert.throws(() => checkManifest(manifest({}, [{path: 'certs/x.crt', sha256: 'zz'}])), /checksum/)
    assert.throws(() => checkManifest(manifest({}, [{path: 'certs/x.crt', size: -1}])), /size/)
    assert.throws(() => checkManifest(manifest({}, [{path: 'certs/x.crt', size: 2 << 20}])), /too large/)
  })

  it('refuses another format, a newer version, a store schema newer than this sshca, a snapshot missing or misplaced', () => {
    assert.throws(() => checkManifest({...manifest(), format: 'other'}), /not an sshca backup manifest/)
    assert.throws(() => checkManifest({...manifest(), version: 2}), /newer sshca/)
    const newer = manifest()
    ;(newer.store as {schemaVersion: number}).schemaVersion = SCHEMA_VERSION + 1
    assert.throws(() => checkManifest(newer), /newer than this sshca understands/)
    const noSnap = manifest()
    noSnap.files = noSnap.files.filter((f) => f.path !== SNAPSHOT_PATH)
    assert.throws(() => checkManifest(noSnap), /without its snapshot/)
    assert.throws(
      () => checkManifest(manifest({store: {type: 'postgresql', included: false, database: 'postgresql://h/db'}})),
      /PostgreSQL store with a SQLite snapshot/,
    )
    assert.throws(
      () => checkManifest({...manifest(), store: {type: 'mysql'}} as unknown as BackupManifest),
      /unknown store type/,
    )
  })
})
