/**
 * The store's schema as numbered migrations. A store records the last one applied (SQLite:
 * `PRAGMA user_version`) and applies the rest at open, inside one write transaction, so two
 * processes opening the same file cannot both migrate it. Never edit a migration that has shipped:
 * add the next one.
 */

export interface Migration {
  version: number
  name: string
  sqlite: string[]
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'tokens, certificates, revocations',
    sqlite: [
      `CREATE TABLE IF NOT EXISTS used_tokens (
         token_id TEXT PRIMARY KEY,
         expires_at BIGINT NOT NULL
       )`,
      `CREATE INDEX IF NOT EXISTS used_tokens_expires_at ON used_tokens (expires_at)`,
      `CREATE TABLE IF NOT EXISTS certificates (
         serial TEXT PRIMARY KEY,
         cert_type TEXT NOT NULL,
         key_id TEXT NOT NULL,
         principals TEXT NOT NULL,
         valid_after BIGINT NOT NULL,
         valid_before BIGINT NOT NULL,
         provisioner TEXT NOT NULL,
         rule_name TEXT,
         subject TEXT,
         key_fingerprint TEXT NOT NULL,
         issued_at BIGINT NOT NULL,
         request_id TEXT NOT NULL,
         certificate TEXT NOT NULL
       )`,
      `CREATE INDEX IF NOT EXISTS certificates_key_id ON certificates (key_id)`,
      `CREATE INDEX IF NOT EXISTS certificates_type_valid ON certificates (cert_type, valid_before)`,
      `CREATE TABLE IF NOT EXISTS revocations (
         id TEXT PRIMARY KEY,
         serial TEXT,
         key_id TEXT,
         reason TEXT NOT NULL,
         revoked_at BIGINT NOT NULL
       )`,
    ],
  },
  {
    version: 2,
    name: 'spent-token details, key revocations, host lineages, admin events',
    sqlite: [
      // when and on which certificate a token was spent: a second use says so
      `ALTER TABLE used_tokens ADD COLUMN used_at BIGINT`,
      `ALTER TABLE used_tokens ADD COLUMN serial TEXT`,
      `ALTER TABLE revocations ADD COLUMN key_fingerprint TEXT`,
      `CREATE INDEX revocations_serial ON revocations (serial)`,
      `CREATE INDEX revocations_key_id ON revocations (key_id)`,
      `CREATE INDEX revocations_key_fingerprint ON revocations (key_fingerprint)`,
      `CREATE INDEX certificates_subject ON certificates (subject)`,
      `CREATE INDEX certificates_key_fingerprint ON certificates (key_fingerprint)`,
      `CREATE INDEX certificates_issued_at ON certificates (issued_at)`,
      `CREATE TABLE host_lineages (
         key_fingerprint TEXT PRIMARY KEY,
         serial TEXT NOT NULL,
         updated_at BIGINT NOT NULL
       )`,
      // existing host certificates: the newest of each key heads its lineage
      `INSERT INTO host_lineages (key_fingerprint, serial, updated_at)
       SELECT c.key_fingerprint, c.serial, c.issued_at FROM certificates c
       WHERE c.cert_type = 'host' AND NOT EXISTS (
         SELECT 1 FROM certificates d WHERE d.cert_type = 'host' AND d.key_fingerprint = c.key_fingerprint
           AND (d.issued_at > c.issued_at OR (d.issued_at = c.issued_at AND d.rowid > c.rowid)))`,
      `CREATE TABLE admin_events (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         at BIGINT NOT NULL,
         event TEXT NOT NULL,
         fields TEXT NOT NULL
       )`,
      `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
      `INSERT INTO meta (key, value) VALUES ('audit_cursor', '0')`,
      // the KRL's version: moves forward on every revoke and unrevoke (it was the revocation count)
      `INSERT INTO meta (key, value) SELECT 'revocation_generation', CAST(COUNT(*) AS TEXT) FROM revocations`,
    ],
  },
  {
    version: 3,
    name: 'the claim values a user certificate was issued for (policy what-if)',
    sqlite: [
      // JSON of the claims the policy reads (match keys, template claims, principalsFrom) and the
      // audited ones: what `ca explain --since` replays through a new policy. Never the token.
      `ALTER TABLE certificates ADD COLUMN claims TEXT`,
    ],
  },
]

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version
