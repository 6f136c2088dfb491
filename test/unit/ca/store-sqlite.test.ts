import assert from 'node:assert/strict'
import {join} from 'node:path'
import {DatabaseSync} from 'node:sqlite'
import {SqliteStore} from '../../../src/ca/store/sqlite.ts'
import {SCHEMA_VERSION} from '../../../src/ca/store/migrations.ts'
import {record, storeContract} from '../../contract/store.ts'
import {tempDir} from '../../helpers/tmp.ts'

const paths = new WeakMap<object, string>()
storeContract(
  'SQLite',
  async () => {
    const path = join(tempDir('sshca-store-'), 'db.sqlite')
    const s = new SqliteStore(path, {background: false})
    paths.set(s, path)
    return s
  },
  // a second connection to the same file (as `ca revoke` next to `ca serve`)
  async (of) => new SqliteStore(paths.get(of)!, {background: false}),
)

describe('SQLite store migrations', () => {
  it('brings a version-1 database (the first release) forward, keeping its rows, and is idempotent', async () => {
    const path = join(tempDir('sshca-store-'), 'old.sqlite')
    const db = new DatabaseSync(path)
    db.exec(`CREATE TABLE used_tokens (token_id TEXT PRIMARY KEY, expires_at BIGINT NOT NULL);
      CREATE TABLE certificates (serial TEXT PRIMARY KEY, cert_type TEXT NOT NULL, key_id TEXT NOT NULL, principals TEXT NOT NULL, valid_after BIGINT NOT NULL, valid_before BIGINT NOT NULL, provisioner TEXT NOT NULL, rule_name TEXT, subject TEXT, key_fingerprint TEXT NOT NULL, issued_at BIGINT NOT NULL, request_id TEXT NOT NULL, certificate TEXT NOT NULL);
      CREATE TABLE revocations (id TEXT PRIMARY KEY, serial TEXT, key_id TEXT, reason TEXT NOT NULL, revoked_at BIGINT NOT NULL);
      INSERT INTO used_tokens VALUES ('old-token', 9999999999);
      INSERT INTO certificates VALUES ('7', 'host', 'host:web1', '["web1"]', 0, 9999999999, 'host-enrollment', NULL, 'web1', 'SHA256:web1', 5, 'r', 'blob');
      INSERT INTO certificates VALUES ('8', 'host', 'host:web1', '["web1"]', 0, 9999999999, 'host-renewal', NULL, 'web1', 'SHA256:web1', 6, 'r', 'blob');
      INSERT INTO revocations VALUES ('x', '3', NULL, 'old', 1);`)
    db.close()
    for (let i = 0; i < 2; i++) {
      const s = new SqliteStore(path, {background: false})
      // the old spent token is still spent; the newest host certificate heads its lineage; the KRL version kept its count
      assert.equal((await s.issue({token: {id: 'old-token', expiresAt: 1}, record: record()})).ok, false)
      assert.deepEqual((await s.currentHostCertificates(100)).map((c) => c.serial), [8n])
      assert.equal(await s.revocationGeneration(), 1)
      await s.close()
    }
    const check = new DatabaseSync(path)
    assert.equal((check.prepare('PRAGMA user_version').get() as {user_version: number}).user_version, SCHEMA_VERSION)
    check.close()
  })

  it('refuses a database from a newer sshca', () => {
    const path = join(tempDir('sshca-store-'), 'new.sqlite')
    const db = new DatabaseSync(path)
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`)
    db.close()
    assert.throws(() => new SqliteStore(path, {background: false}), (e: {code?: string}) => e.code === 'ERR_CA_CONFIG')
  })
})
