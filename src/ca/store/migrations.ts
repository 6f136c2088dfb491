/**
 * The store's schema as numbered migrations, one dialect per backend. A store records the last one
 * applied (SQLite: `PRAGMA user_version`; PostgreSQL: the `schema_migrations` table) and applies the
 * rest at open, inside one transaction (SQLite: a write transaction; PostgreSQL: under an advisory
 * lock), so two processes or replicas opening the same database cannot both migrate it. Never edit a
 * migration that has shipped: add the next one.
 */

export interface Migration {
  version: number
  name: string
  sqlite: string[]
  postgresql: string[]
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
    // the same tables: serials are decimal text (they reach 2^64−1, beyond BIGINT), times BIGINT seconds
    postgresql: [
      `CREATE TABLE used_tokens (
         token_id TEXT PRIMARY KEY,
         expires_at BIGINT NOT NULL
       )`,
      `CREATE INDEX used_tokens_expires_at ON used_tokens (expires_at)`,
      `CREATE TABLE certificates (
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
      `CREATE INDEX certificates_key_id ON certificates (key_id)`,
      `CREATE INDEX certificates_type_valid ON certificates (cert_type, valid_before)`,
      `CREATE TABLE revocations (
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
    postgresql: [
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
      `INSERT INTO host_lineages (key_fingerprint, serial, updated_at)
       SELECT DISTINCT ON (key_fingerprint) key_fingerprint, serial, issued_at FROM certificates
       WHERE cert_type = 'host' ORDER BY key_fingerprint, issued_at DESC, serial DESC`,
      `CREATE TABLE admin_events (
         id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         at BIGINT NOT NULL,
         event TEXT NOT NULL,
         fields TEXT NOT NULL
       )`,
      `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
      `INSERT INTO meta (key, value) VALUES ('audit_cursor', '0')`,
      `INSERT INTO meta (key, value) SELECT 'revocation_generation', CAST(COUNT(*) AS TEXT) FROM revocations`,
      // issue() in one statement, so a batch of issuances is one round trip and one transaction:
      // each item is decided in order and sees the ones before it, as in SqliteStore.issueOne.
      // Across replicas: the spent-token primary key decides a token raced to several (the loser waits
      // for the winner's commit, then finds it spent), and the lineage head is read FOR UPDATE, so two
      // renewals of one certificate serialize and the second finds itself superseded.
      `CREATE FUNCTION sshca_issue(batch jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
       DECLARE
         item jsonb;
         rec jsonb;
         out jsonb := '[]'::jsonb;
         rev revocations%ROWTYPE;
         head TEXT;
         parent TEXT;
         fp TEXT;
         spent_at BIGINT;
         spent_serial TEXT;
         n INT;
       BEGIN
         -- durability: a certificate is answered only after its record and its spent token are on disk
         IF current_setting('synchronous_commit') = 'off' THEN
           PERFORM set_config('synchronous_commit', 'on', true);
         END IF;
         FOR item IN SELECT e.value FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(value, i) ORDER BY e.i LOOP
           rec := item->'record';
           parent := item->>'parent';
           fp := rec->>'key_fingerprint';
           SELECT * INTO rev FROM revocations
             WHERE key_id = rec->>'key_id' OR key_fingerprint = fp OR serial = parent
             ORDER BY revoked_at, id COLLATE "C" LIMIT 1;
           IF FOUND THEN
             out := out || jsonb_build_array(jsonb_build_object('outcome', 'revoked', 'revocation', to_jsonb(rev)));
             CONTINUE;
           END IF;
           IF item->>'lineage' = 'renew' THEN
             head := NULL;
             SELECT serial INTO head FROM host_lineages WHERE key_fingerprint = fp FOR UPDATE;
             IF head IS DISTINCT FROM parent THEN
               out := out || jsonb_build_array(jsonb_build_object('outcome', 'superseded', 'newest', head));
               CONTINUE;
             END IF;
           END IF;
           INSERT INTO used_tokens (token_id, expires_at, used_at, serial)
             VALUES (item->>'token_id', (item->>'expires_at')::bigint, (rec->>'issued_at')::bigint, rec->>'serial')
             ON CONFLICT (token_id) DO NOTHING;
           GET DIAGNOSTICS n = ROW_COUNT;
           IF n <> 1 THEN
             SELECT used_at, serial INTO spent_at, spent_serial FROM used_tokens WHERE token_id = item->>'token_id';
             out := out || jsonb_build_array(jsonb_build_object('outcome', 'replayed', 'used_at', spent_at, 'serial', spent_serial));
             CONTINUE;
           END IF;
           INSERT INTO certificates (serial, cert_type, key_id, principals, valid_after, valid_before, provisioner, rule_name, subject, key_fingerprint, issued_at, request_id, certificate)
             VALUES (rec->>'serial', rec->>'cert_type', rec->>'key_id', rec->>'principals', (rec->>'valid_after')::bigint, (rec->>'valid_before')::bigint,
                     rec->>'provisioner', rec->>'rule_name', rec->>'subject', fp, (rec->>'issued_at')::bigint, rec->>'request_id', rec->>'certificate');
           IF item->>'lineage' IS NOT NULL THEN
             INSERT INTO host_lineages (key_fingerprint, serial, updated_at) VALUES (fp, rec->>'serial', (rec->>'issued_at')::bigint)
               ON CONFLICT (key_fingerprint) DO UPDATE SET serial = excluded.serial, updated_at = excluded.updated_at;
           END IF;
           out := out || '[{"outcome": "ok"}]'::jsonb;
         END LOOP;
         RETURN out;
       END
       $fn$`,
    ],
  },
  {
    version: 3,
    name: "rekey lineages (step's /ssh/rekey): the lineage moves to the new key, the old key's ends",
    // SQLite: nothing in the schema (SqliteStore.issueOne decides); PostgreSQL: sshca_issue learns it
    sqlite: [],
    postgresql: [
      `CREATE OR REPLACE FUNCTION sshca_issue(batch jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
       DECLARE
         item jsonb;
         rec jsonb;
         out jsonb := '[]'::jsonb;
         rev revocations%ROWTYPE;
         head TEXT;
         parent TEXT;
         fp TEXT;
         spent_at BIGINT;
         spent_serial TEXT;
         n INT;
       BEGIN
         -- durability: a certificate is answered only after its record and its spent token are on disk
         IF current_setting('synchronous_commit') = 'off' THEN
           PERFORM set_config('synchronous_commit', 'on', true);
         END IF;
         FOR item IN SELECT e.value FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(value, i) ORDER BY e.i LOOP
           rec := item->'record';
           parent := item->>'parent';
           fp := rec->>'key_fingerprint';
           SELECT * INTO rev FROM revocations
             WHERE key_id = rec->>'key_id' OR key_fingerprint = fp OR serial = parent
             ORDER BY revoked_at, id COLLATE "C" LIMIT 1;
           IF FOUND THEN
             out := out || jsonb_build_array(jsonb_build_object('outcome', 'revoked', 'revocation', to_jsonb(rev)));
             CONTINUE;
           END IF;
           IF item->>'lineage' IN ('renew', 'rekey') THEN
             head := NULL;
             -- a rekey's parent heads the old key's lineage; a renewal's, the same key's
             SELECT serial INTO head FROM host_lineages WHERE key_fingerprint = COALESCE(item->>'parent_key', fp) FOR UPDATE;
             IF head IS DISTINCT FROM parent THEN
               out := out || jsonb_build_array(jsonb_build_object('outcome', 'superseded', 'newest', head));
               CONTINUE;
             END IF;
           END IF;
           INSERT INTO used_tokens (token_id, expires_at, used_at, serial)
             VALUES (item->>'token_id', (item->>'expires_at')::bigint, (rec->>'issued_at')::bigint, rec->>'serial')
             ON CONFLICT (token_id) DO NOTHING;
           GET DIAGNOSTICS n = ROW_COUNT;
           IF n <> 1 THEN
             SELECT used_at, serial INTO spent_at, spent_serial FROM used_tokens WHERE token_id = item->>'token_id';
             out := out || jsonb_build_array(jsonb_build_object('outcome', 'replayed', 'used_at', spent_at, 'serial', spent_serial));
             CONTINUE;
           END IF;
           INSERT INTO certificates (serial, cert_type, key_id, principals, valid_after, valid_before, provisioner, rule_name, subject, key_fingerprint, issued_at, request_id, certificate)
             VALUES (rec->>'serial', rec->>'cert_type', rec->>'key_id', rec->>'principals', (rec->>'valid_after')::bigint, (rec->>'valid_before')::bigint,
                     rec->>'provisioner', rec->>'rule_name', rec->>'subject', fp, (rec->>'issued_at')::bigint, rec->>'request_id', rec->>'certificate');
           IF item->>'lineage' = 'rekey' AND item->>'parent_key' IS DISTINCT FROM fp THEN
             DELETE FROM host_lineages WHERE key_fingerprint = item->>'parent_key';
           END IF;
           IF item->>'lineage' IS NOT NULL THEN
             INSERT INTO host_lineages (key_fingerprint, serial, updated_at) VALUES (fp, rec->>'serial', (rec->>'issued_at')::bigint)
               ON CONFLICT (key_fingerprint) DO UPDATE SET serial = excluded.serial, updated_at = excluded.updated_at;
           END IF;
           out := out || '[{"outcome": "ok"}]'::jsonb;
         END LOOP;
         RETURN out;
       END
       $fn$`,
    ],
  },
  {
    version: 4,
    name: 'the claim values a user certificate was issued for (policy what-if)',
    // JSON of the claims the policy reads (match keys, template claims, principalsFrom) and the
    // audited ones: what `ca explain --since` replays through a new policy. Never the token.
    sqlite: [`ALTER TABLE certificates ADD COLUMN claims TEXT`],
    // the same column, and sshca_issue (as in migration 3) writing it
    postgresql: [
      `ALTER TABLE certificates ADD COLUMN claims TEXT`,
      `CREATE OR REPLACE FUNCTION sshca_issue(batch jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
       DECLARE
         item jsonb;
         rec jsonb;
         out jsonb := '[]'::jsonb;
         rev revocations%ROWTYPE;
         head TEXT;
         parent TEXT;
         fp TEXT;
         spent_at BIGINT;
         spent_serial TEXT;
         n INT;
       BEGIN
         -- durability: a certificate is answered only after its record and its spent token are on disk
         IF current_setting('synchronous_commit') = 'off' THEN
           PERFORM set_config('synchronous_commit', 'on', true);
         END IF;
         FOR item IN SELECT e.value FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(value, i) ORDER BY e.i LOOP
           rec := item->'record';
           parent := item->>'parent';
           fp := rec->>'key_fingerprint';
           SELECT * INTO rev FROM revocations
             WHERE key_id = rec->>'key_id' OR key_fingerprint = fp OR serial = parent
             ORDER BY revoked_at, id COLLATE "C" LIMIT 1;
           IF FOUND THEN
             out := out || jsonb_build_array(jsonb_build_object('outcome', 'revoked', 'revocation', to_jsonb(rev)));
             CONTINUE;
           END IF;
           IF item->>'lineage' IN ('renew', 'rekey') THEN
             head := NULL;
             -- a rekey's parent heads the old key's lineage; a renewal's, the same key's
             SELECT serial INTO head FROM host_lineages WHERE key_fingerprint = COALESCE(item->>'parent_key', fp) FOR UPDATE;
             IF head IS DISTINCT FROM parent THEN
               out := out || jsonb_build_array(jsonb_build_object('outcome', 'superseded', 'newest', head));
               CONTINUE;
             END IF;
           END IF;
           INSERT INTO used_tokens (token_id, expires_at, used_at, serial)
             VALUES (item->>'token_id', (item->>'expires_at')::bigint, (rec->>'issued_at')::bigint, rec->>'serial')
             ON CONFLICT (token_id) DO NOTHING;
           GET DIAGNOSTICS n = ROW_COUNT;
           IF n <> 1 THEN
             SELECT used_at, serial INTO spent_at, spent_serial FROM used_tokens WHERE token_id = item->>'token_id';
             out := out || jsonb_build_array(jsonb_build_object('outcome', 'replayed', 'used_at', spent_at, 'serial', spent_serial));
             CONTINUE;
           END IF;
           INSERT INTO certificates (serial, cert_type, key_id, principals, valid_after, valid_before, provisioner, rule_name, subject, key_fingerprint, issued_at, request_id, certificate, claims)
             VALUES (rec->>'serial', rec->>'cert_type', rec->>'key_id', rec->>'principals', (rec->>'valid_after')::bigint, (rec->>'valid_before')::bigint,
                     rec->>'provisioner', rec->>'rule_name', rec->>'subject', fp, (rec->>'issued_at')::bigint, rec->>'request_id', rec->>'certificate', rec->>'claims');
           IF item->>'lineage' = 'rekey' AND item->>'parent_key' IS DISTINCT FROM fp THEN
             DELETE FROM host_lineages WHERE key_fingerprint = item->>'parent_key';
           END IF;
           IF item->>'lineage' IS NOT NULL THEN
             INSERT INTO host_lineages (key_fingerprint, serial, updated_at) VALUES (fp, rec->>'serial', (rec->>'issued_at')::bigint)
               ON CONFLICT (key_fingerprint) DO UPDATE SET serial = excluded.serial, updated_at = excluded.updated_at;
           END IF;
           out := out || '[{"outcome": "ok"}]'::jsonb;
         END LOOP;
         RETURN out;
       END
       $fn$`,
    ],
  },
  {
    version: 5,
    name: "a host key heading one host's lineage cannot be taken over by another's rekey or unbound enrolment",
    // SQLite: nothing in the schema (SqliteStore.keyTaken decides; its writer is one at a time);
    // PostgreSQL: sshca_issue as in migration 4, one issuance per host key at a time (an advisory lock
    // per key, taken in key order), refusing such an issuance as key_in_use
    sqlite: [],
    postgresql: [
      `CREATE OR REPLACE FUNCTION sshca_issue(batch jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
       DECLARE
         item jsonb;
         rec jsonb;
         out jsonb := '[]'::jsonb;
         rev revocations%ROWTYPE;
         head TEXT;
         parent TEXT;
         fp TEXT;
         spent_at BIGINT;
         spent_serial TEXT;
         n INT;
         owner TEXT;
         owner_key_id TEXT;
         owner_valid_before BIGINT;
         lineage_key TEXT;
       BEGIN
         -- durability: a certificate is answered only after its record and its spent token are on disk
         IF current_setting('synchronous_commit') = 'off' THEN
           PERFORM set_config('synchronous_commit', 'on', true);
         END IF;
         FOR item IN SELECT e.value FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(value, i) ORDER BY e.i LOOP
           rec := item->'record';
           parent := item->>'parent';
           fp := rec->>'key_fingerprint';
           -- one issuance at a time per host key, across replicas: a lineage's head and its owner are read
           -- only once any other transaction on the same keys has committed (row locks alone let a renewal
           -- in flight hide the head from a takeover's join, or a first enrolment from another's check)
           IF item->>'lineage' IS NOT NULL THEN
             FOR lineage_key IN SELECT DISTINCT k FROM unnest(ARRAY[fp, item->>'parent_key']) AS k WHERE k IS NOT NULL ORDER BY k LOOP
               PERFORM pg_advisory_xact_lock(hashtextextended('sshca host lineage ' || lineage_key, 0));
             END LOOP;
           END IF;
           SELECT * INTO rev FROM revocations
             WHERE key_id = rec->>'key_id' OR key_fingerprint = fp OR serial = parent
             ORDER BY revoked_at, id COLLATE "C" LIMIT 1;
           IF FOUND THEN
             out := out || jsonb_build_array(jsonb_build_object('outcome', 'revoked', 'revocation', to_jsonb(rev)));
             CONTINUE;
           END IF;
           IF item->>'lineage' IN ('renew', 'rekey') THEN
             head := NULL;
             -- a rekey's parent heads the old key's lineage; a renewal's, the same key's
             SELECT serial INTO head FROM host_lineages WHERE key_fingerprint = COALESCE(item->>'parent_key', fp) FOR UPDATE;
             IF head IS DISTINCT FROM parent THEN
               out := out || jsonb_build_array(jsonb_build_object('outcome', 'superseded', 'newest', head));
               CONTINUE;
             END IF;
           END IF;
           -- a rekey onto a key heading another lineage, or an enrolment the admin did not bind to the key
           -- onto one heading another host's (another key ID), would take that lineage over; a head that
           -- expired or was revoked holds nothing (no one renews it)
           IF item->>'lineage' = 'rekey' OR (item->>'lineage' = 'enrol' AND NOT COALESCE((item->>'key_bound')::boolean, false)) THEN
             owner := NULL;
             owner_key_id := NULL;
             owner_valid_before := NULL;
             SELECT serial INTO owner FROM host_lineages WHERE key_fingerprint = fp;
             IF owner IS NOT NULL THEN
               SELECT key_id, valid_before INTO owner_key_id, owner_valid_before FROM certificates WHERE serial = owner;
               IF owner_valid_before <= (rec->>'issued_at')::bigint
                  OR EXISTS (SELECT 1 FROM revocations WHERE serial = owner OR key_id = owner_key_id) THEN
                 owner := NULL;
               END IF;
             END IF;
             IF owner IS NOT NULL AND ((item->>'lineage' = 'rekey' AND item->>'parent_key' IS DISTINCT FROM fp)
                                       OR (item->>'lineage' = 'enrol' AND owner_key_id IS DISTINCT FROM rec->>'key_id')) THEN
               out := out || jsonb_build_array(jsonb_build_object('outcome', 'key_in_use', 'newest', owner));
               CONTINUE;
             END IF;
           END IF;
           INSERT INTO used_tokens (token_id, expires_at, used_at, serial)
             VALUES (item->>'token_id', (item->>'expires_at')::bigint, (rec->>'issued_at')::bigint, rec->>'serial')
             ON CONFLICT (token_id) DO NOTHING;
           GET DIAGNOSTICS n = ROW_COUNT;
           IF n <> 1 THEN
             SELECT used_at, serial INTO spent_at, spent_serial FROM used_tokens WHERE token_id = item->>'token_id';
             out := out || jsonb_build_array(jsonb_build_object('outcome', 'replayed', 'used_at', spent_at, 'serial', spent_serial));
             CONTINUE;
           END IF;
           INSERT INTO certificates (serial, cert_type, key_id, principals, valid_after, valid_before, provisioner, rule_name, subject, key_fingerprint, issued_at, request_id, certificate, claims)
             VALUES (rec->>'serial', rec->>'cert_type', rec->>'key_id', rec->>'principals', (rec->>'valid_after')::bigint, (rec->>'valid_before')::bigint,
                     rec->>'provisioner', rec->>'rule_name', rec->>'subject', fp, (rec->>'issued_at')::bigint, rec->>'request_id', rec->>'certificate', rec->>'claims');
           IF item->>'lineage' = 'rekey' AND item->>'parent_key' IS DISTINCT FROM fp THEN
             DELETE FROM host_lineages WHERE key_fingerprint = item->>'parent_key';
           END IF;
           IF item->>'lineage' IS NOT NULL THEN
             INSERT INTO host_lineages (key_fingerprint, serial, updated_at) VALUES (fp, rec->>'serial', (rec->>'issued_at')::bigint)
               ON CONFLICT (key_fingerprint) DO UPDATE SET serial = excluded.serial, updated_at = excluded.updated_at;
           END IF;
           out := out || '[{"outcome": "ok"}]'::jsonb;
         END LOOP;
         RETURN out;
       END
       $fn$`,
    ],
  },
  {
    version: 6,
    name: 'the emergency stop and the restore mark are read inside the issuance transaction',
    // SQLite: nothing in the schema (SqliteStore.flush reads both under its write lock). PostgreSQL:
    // sshca_issue behind a gate: the shared advisory lock that `ca stop-issuance` and a restore mark
    // take exclusively (PostgresStore.setIssuanceStop, markRestored), then the stop (every item
    // refused) and the mark (items whose token was issued before it plus the leeway refused), then
    // sshca_issue for the rest, the answers in the batch's order
    sqlite: [],
    postgresql: [
      `CREATE FUNCTION sshca_issue_gated(batch jsonb, restore_leeway bigint) RETURNS jsonb LANGUAGE plpgsql AS $fn$
       DECLARE
         stop TEXT;
         mark BIGINT;
         item jsonb;
         admitted jsonb := '[]'::jsonb;
         issued jsonb;
         out jsonb := '[]'::jsonb;
         k INT := 0;
       BEGIN
         PERFORM pg_advisory_xact_lock_shared(hashtextextended('sshca issuance gate', 0));
         SELECT value INTO stop FROM meta WHERE key = 'issuance_stop';
         IF stop IS NOT NULL THEN
           SELECT COALESCE(jsonb_agg(jsonb_build_object('outcome', 'stopped', 'stop', stop)), '[]'::jsonb) INTO out
             FROM jsonb_array_elements(batch);
           RETURN out;
         END IF;
         SELECT value::bigint INTO mark FROM meta WHERE key = 'restored_at';
         FOR item IN SELECT e.value FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(value, i) ORDER BY e.i LOOP
           -- a token without an issue time is before any mark (fail closed)
           IF mark IS NULL OR COALESCE((item->>'token_issued_at')::bigint >= mark + restore_leeway, false) THEN
             admitted := admitted || jsonb_build_array(item);
           END IF;
         END LOOP;
         issued := sshca_issue(admitted);
         FOR item IN SELECT e.value FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(value, i) ORDER BY e.i LOOP
           IF mark IS NULL OR COALESCE((item->>'token_issued_at')::bigint >= mark + restore_leeway, false) THEN
             out := out || jsonb_build_array(issued->k);
             k := k + 1;
           ELSE
             out := out || jsonb_build_array(jsonb_build_object('outcome', 'before_restore', 'restored_at', mark::text));
           END IF;
         END LOOP;
         RETURN out;
       END
       $fn$`,
    ],
  },
  {
    version: 7,
    name: "each host certificate's parent: a revocation by serial or key follows what was renewed or rekeyed from it",
    // certificates.lineage: how a host certificate joined its key's lineage ('enrol', 'renew', 'rekey');
    // parent_serial: the certificate a renewal or rekey was proven with. Both NULL for user
    // certificates and for every certificate issued before this migration (its parent was never
    // recorded: a lineage is followed from the upgrade on). revocations.cascade_of: a revocation the
    // store wrote for a descendant of the certificate (or key) another revocation names, that one's id
    // (`ca unrevoke` of it removes them too). SQLite: SqliteStore.issueOne writes the columns;
    // PostgreSQL: sshca_issue as in migration 5 (migration 6's sshca_issue_gated calls it), writing
    // them, checking the parent's key as well, and taking the lineages' lock shared, after the gate
    // and before its per-key locks (PostgresStore.revokeIn explains the lock).
    sqlite: [
      `ALTER TABLE certificates ADD COLUMN lineage TEXT`,
      `ALTER TABLE certificates ADD COLUMN parent_serial TEXT`,
      `CREATE INDEX certificates_parent_serial ON certificates (parent_serial)`,
      `ALTER TABLE revocations ADD COLUMN cascade_of TEXT`,
      `CREATE INDEX revocations_cascade_of ON revocations (cascade_of)`,
    ],
    postgresql: [
      `ALTER TABLE certificates ADD COLUMN lineage TEXT`,
      `ALTER TABLE certificates ADD COLUMN parent_serial TEXT`,
      `CREATE INDEX certificates_parent_serial ON certificates (parent_serial)`,
      `ALTER TABLE revocations ADD COLUMN cascade_of TEXT`,
      `CREATE INDEX revocations_cascade_of ON revocations (cascade_of)`,
      `CREATE OR REPLACE FUNCTION sshca_issue(batch jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
       DECLARE
         item jsonb;
         rec jsonb;
         out jsonb := '[]'::jsonb;
         rev revocations%ROWTYPE;
         head TEXT;
         parent TEXT;
         fp TEXT;
         spent_at BIGINT;
         spent_serial TEXT;
         n INT;
         owner TEXT;
         owner_key_id TEXT;
         owner_valid_before BIGINT;
         lineage_key TEXT;
       BEGIN
         -- durability: a certificate is answered only after its record and its spent token are on disk
         IF current_setting('synchronous_commit') = 'off' THEN
           PERFORM set_config('synchronous_commit', 'on', true);
         END IF;
         FOR item IN SELECT e.value FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(value, i) ORDER BY e.i LOOP
           rec := item->'record';
           parent := item->>'parent';
           fp := rec->>'key_fingerprint';
           -- one issuance at a time per host key, across replicas: a lineage's head and its owner are read
           -- only once any other transaction on the same keys has committed (row locks alone let a renewal
           -- in flight hide the head from a takeover's join, or a first enrolment from another's check)
           IF item->>'lineage' IS NOT NULL THEN
             -- first, shared: a host revocation (ca revoke, following descendants) takes it exclusively
             PERFORM pg_advisory_xact_lock_shared(hashtextextended('sshca host lineages', 0));
             FOR lineage_key IN SELECT DISTINCT k FROM unnest(ARRAY[fp, item->>'parent_key']) AS k WHERE k IS NOT NULL ORDER BY k LOOP
               PERFORM pg_advisory_xact_lock(hashtextextended('sshca host lineage ' || lineage_key, 0));
             END LOOP;
           END IF;
           -- after the locks, so a statement of its own sees every revocation committed before them:
           -- the key ID, the new key, and (renewals, rekeys) the parent by serial or by its key
           SELECT * INTO rev FROM revocations
             WHERE key_id = rec->>'key_id' OR key_fingerprint = fp OR key_fingerprint = item->>'parent_key' OR serial = parent
             ORDER BY revoked_at, id COLLATE "C" LIMIT 1;
           IF FOUND THEN
             out := out || jsonb_build_array(jsonb_build_object('outcome', 'revoked', 'revocation', to_jsonb(rev)));
             CONTINUE;
           END IF;
           IF item->>'lineage' IN ('renew', 'rekey') THEN
             head := NULL;
             -- a rekey's parent heads the old key's lineage; a renewal's, the same key's
             SELECT serial INTO head FROM host_lineages WHERE key_fingerprint = COALESCE(item->>'parent_key', fp) FOR UPDATE;
             IF head IS DISTINCT FROM parent THEN
               out := out || jsonb_build_array(jsonb_build_object('outcome', 'superseded', 'newest', head));
               CONTINUE;
             END IF;
           END IF;
           -- a rekey onto a key heading another lineage, or an enrolment the admin did not bind to the key
           -- onto one heading another host's (another key ID), would take that lineage over; a head that
           -- expired or was revoked holds nothing (no one renews it)
           IF item->>'lineage' = 'rekey' OR (item->>'lineage' = 'enrol' AND NOT COALESCE((item->>'key_bound')::boolean, false)) THEN
             owner := NULL;
             owner_key_id := NULL;
             owner_valid_before := NULL;
             SELECT serial INTO owner FROM host_lineages WHERE key_fingerprint = fp;
             IF owner IS NOT NULL THEN
               SELECT key_id, valid_before INTO owner_key_id, owner_valid_before FROM certificates WHERE serial = owner;
               IF owner_valid_before <= (rec->>'issued_at')::bigint
                  OR EXISTS (SELECT 1 FROM revocations WHERE serial = owner OR key_id = owner_key_id) THEN
                 owner := NULL;
               END IF;
             END IF;
             IF owner IS NOT NULL AND ((item->>'lineage' = 'rekey' AND item->>'parent_key' IS DISTINCT FROM fp)
                                       OR (item->>'lineage' = 'enrol' AND owner_key_id IS DISTINCT FROM rec->>'key_id')) THEN
               out := out || jsonb_build_array(jsonb_build_object('outcome', 'key_in_use', 'newest', owner));
               CONTINUE;
             END IF;
           END IF;
           INSERT INTO used_tokens (token_id, expires_at, used_at, serial)
             VALUES (item->>'token_id', (item->>'expires_at')::bigint, (rec->>'issued_at')::bigint, rec->>'serial')
             ON CONFLICT (token_id) DO NOTHING;
           GET DIAGNOSTICS n = ROW_COUNT;
           IF n <> 1 THEN
             SELECT used_at, serial INTO spent_at, spent_serial FROM used_tokens WHERE token_id = item->>'token_id';
             out := out || jsonb_build_array(jsonb_build_object('outcome', 'replayed', 'used_at', spent_at, 'serial', spent_serial));
             CONTINUE;
           END IF;
           INSERT INTO certificates (serial, cert_type, key_id, principals, valid_after, valid_before, provisioner, rule_name, subject, key_fingerprint, issued_at, request_id, certificate, claims, lineage, parent_serial)
             VALUES (rec->>'serial', rec->>'cert_type', rec->>'key_id', rec->>'principals', (rec->>'valid_after')::bigint, (rec->>'valid_before')::bigint,
                     rec->>'provisioner', rec->>'rule_name', rec->>'subject', fp, (rec->>'issued_at')::bigint, rec->>'request_id', rec->>'certificate', rec->>'claims',
                     item->>'lineage', parent);
           IF item->>'lineage' = 'rekey' AND item->>'parent_key' IS DISTINCT FROM fp THEN
             DELETE FROM host_lineages WHERE key_fingerprint = item->>'parent_key';
           END IF;
           IF item->>'lineage' IS NOT NULL THEN
             INSERT INTO host_lineages (key_fingerprint, serial, updated_at) VALUES (fp, rec->>'serial', (rec->>'issued_at')::bigint)
               ON CONFLICT (key_fingerprint) DO UPDATE SET serial = excluded.serial, updated_at = excluded.updated_at;
           END IF;
           out := out || '[{"outcome": "ok"}]'::jsonb;
         END LOOP;
         RETURN out;
       END
       $fn$`,
    ],
  },
  {
    version: 8,
    name: 'an issuance at another isolation level than read committed is refused',
    // SQLite: nothing. PostgreSQL: sshca_issue_gated as in migration 6, refusing (SQLSTATE SC001, the
    // store answers 503) to run at another isolation level than read committed; the store checks the
    // default when it opens (requireReadCommitted), this catches a default changed after that
    sqlite: [],
    postgresql: [
      `CREATE OR REPLACE FUNCTION sshca_issue_gated(batch jsonb, restore_leeway bigint) RETURNS jsonb LANGUAGE plpgsql AS $fn$
       DECLARE
         stop TEXT;
         mark BIGINT;
         item jsonb;
         admitted jsonb := '[]'::jsonb;
         issued jsonb;
         out jsonb := '[]'::jsonb;
         k INT := 0;
       BEGIN
         -- every lock here and in sshca_issue is argued under read committed: a statement after a lock
         -- wait sees what committed meanwhile. At another level (a role's or database's default
         -- changed after the store opened) a stop, a mark or a revocation could go unseen: refuse
         IF current_setting('transaction_isolation') <> 'read committed' THEN
           RAISE EXCEPTION 'sshca issues only at isolation level read committed, not %', current_setting('transaction_isolation')
             USING ERRCODE = 'SC001';
         END IF;
         PERFORM pg_advisory_xact_lock_shared(hashtextextended('sshca issuance gate', 0));
         SELECT value INTO stop FROM meta WHERE key = 'issuance_stop';
         IF stop IS NOT NULL THEN
           SELECT COALESCE(jsonb_agg(jsonb_build_object('outcome', 'stopped', 'stop', stop)), '[]'::jsonb) INTO out
             FROM jsonb_array_elements(batch);
           RETURN out;
         END IF;
         SELECT value::bigint INTO mark FROM meta WHERE key = 'restored_at';
         FOR item IN SELECT e.value FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(value, i) ORDER BY e.i LOOP
           -- a token without an issue time is before any mark (fail closed)
           IF mark IS NULL OR COALESCE((item->>'token_issued_at')::bigint >= mark + restore_leeway, false) THEN
             admitted := admitted || jsonb_build_array(item);
           END IF;
         END LOOP;
         issued := sshca_issue(admitted);
         FOR item IN SELECT e.value FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(value, i) ORDER BY e.i LOOP
           IF mark IS NULL OR COALESCE((item->>'token_issued_at')::bigint >= mark + restore_leeway, false) THEN
             out := out || jsonb_build_array(issued->k);
             k := k + 1;
           ELSE
             out := out || jsonb_build_array(jsonb_build_object('outcome', 'before_restore', 'restored_at', mark::text));
           END IF;
         END LOOP;
         RETURN out;
       END
       $fn$`,
    ],
  },
  {
    version: 9,
    name: "a token asks a rule's webhook once",
    // each token id that reached a rule's authorizing webhook, until the token expires: no other
    // request presenting it asks again (a leaked token raced or repeated would prompt its person again
    // and again: push fatigue). Purged with the spent tokens
    sqlite: [
      `CREATE TABLE IF NOT EXISTS webhook_asks (
         token_id TEXT PRIMARY KEY,
         expires_at BIGINT NOT NULL,
         asked_at BIGINT NOT NULL
       )`,
      `CREATE INDEX IF NOT EXISTS webhook_asks_expires_at ON webhook_asks (expires_at)`,
    ],
    postgresql: [
      `CREATE TABLE webhook_asks (
         token_id TEXT PRIMARY KEY,
         expires_at BIGINT NOT NULL,
         asked_at BIGINT NOT NULL
       )`,
      `CREATE INDEX webhook_asks_expires_at ON webhook_asks (expires_at)`,
    ],
  },
  {
    version: 10,
    name: 'a renewal or rekey whose answer was lost, asked again, gets the certificate it made',
    // SQLite: nothing in the schema (SqliteStore.issueOne asks SUCCESSOR_SQL). PostgreSQL: sshca_issue
    // as in migration 7, except that a renewal or rekey whose parent is no longer its lineage's newest
    // gets that newest back ('redelivered', the token spent on its serial, nothing else written) when it
    // is what a step of this kind made from that parent and still stands (store.ts, Lineage)
    sqlite: [],
    postgresql: [
      `CREATE OR REPLACE FUNCTION sshca_issue(batch jsonb) RETURNS jsonb LANGUAGE plpgsql AS $fn$
       DECLARE
         item jsonb;
         rec jsonb;
         out jsonb := '[]'::jsonb;
         rev revocations%ROWTYPE;
         head TEXT;
         parent TEXT;
         fp TEXT;
         spent_at BIGINT;
         spent_serial TEXT;
         n INT;
         owner TEXT;
         owner_key_id TEXT;
         owner_valid_before BIGINT;
         lineage_key TEXT;
         again jsonb;
       BEGIN
         -- durability: a certificate is answered only after its record and its spent token are on disk
         IF current_setting('synchronous_commit') = 'off' THEN
           PERFORM set_config('synchronous_commit', 'on', true);
         END IF;
         FOR item IN SELECT e.value FROM jsonb_array_elements(batch) WITH ORDINALITY AS e(value, i) ORDER BY e.i LOOP
           rec := item->'record';
           parent := item->>'parent';
           fp := rec->>'key_fingerprint';
           -- one issuance at a time per host key, across replicas: a lineage's head and its owner are read
           -- only once any other transaction on the same keys has committed (row locks alone let a renewal
           -- in flight hide the head from a takeover's join, or a first enrolment from another's check)
           IF item->>'lineage' IS NOT NULL THEN
             -- first, shared: a host revocation (ca revoke, following descendants) takes it exclusively
             PERFORM pg_advisory_xact_lock_shared(hashtextextended('sshca host lineages', 0));
             FOR lineage_key IN SELECT DISTINCT k FROM unnest(ARRAY[fp, item->>'parent_key']) AS k WHERE k IS NOT NULL ORDER BY k LOOP
               PERFORM pg_advisory_xact_lock(hashtextextended('sshca host lineage ' || lineage_key, 0));
             END LOOP;
           END IF;
           -- after the locks, so a statement of its own sees every revocation committed before them:
           -- the key ID, the new key, and (renewals, rekeys) the parent by serial or by its key
           SELECT * INTO rev FROM revocations
             WHERE key_id = rec->>'key_id' OR key_fingerprint = fp OR key_fingerprint = item->>'parent_key' OR serial = parent
             ORDER BY revoked_at, id COLLATE "C" LIMIT 1;
           IF FOUND THEN
             out := out || jsonb_build_array(jsonb_build_object('outcome', 'revoked', 'revocation', to_jsonb(rev)));
             CONTINUE;
           END IF;
           IF item->>'lineage' IN ('renew', 'rekey') THEN
             head := NULL;
             -- a rekey's parent heads the old key's lineage; a renewal's, the same key's
             SELECT serial INTO head FROM host_lineages WHERE key_fingerprint = COALESCE(item->>'parent_key', fp) FOR UPDATE;
             IF head IS DISTINCT FROM parent THEN
               -- the answer to this very renewal (or rekey onto this key) may have been lost: the newest
               -- certificate of the key this request certifies (its lock is held), if it was made from this
               -- parent by this kind of step and stands (unexpired; unrevoked by serial, key ID or key),
               -- is given back as recorded (SqliteStore's SUCCESSOR_SQL asks the same). Times as text:
               -- jsonb numbers reach JavaScript as doubles
               again := NULL;
               SELECT to_jsonb(c) || jsonb_build_object('valid_after', c.valid_after::text,
                                                        'valid_before', c.valid_before::text,
                                                        'issued_at', c.issued_at::text)
                 INTO again
                 FROM host_lineages l JOIN certificates c ON c.serial = l.serial
                 WHERE l.key_fingerprint = fp AND c.key_fingerprint = fp AND c.parent_serial = parent
                   AND c.lineage = item->>'lineage' AND c.cert_type = 'host'
                   AND c.valid_before > (rec->>'issued_at')::bigint
                   AND NOT EXISTS (SELECT 1 FROM revocations r
                                   WHERE r.serial = c.serial OR r.key_id = c.key_id OR r.key_fingerprint = c.key_fingerprint);
               IF again IS NULL THEN
                 out := out || jsonb_build_array(jsonb_build_object('outcome', 'superseded', 'newest', head));
                 CONTINUE;
               END IF;
               -- no new serial and no lineage step; the token is spent, on the certificate given back
               INSERT INTO used_tokens (token_id, expires_at, used_at, serial)
                 VALUES (item->>'token_id', (item->>'expires_at')::bigint, (rec->>'issued_at')::bigint, again->>'serial')
                 ON CONFLICT (token_id) DO NOTHING;
               GET DIAGNOSTICS n = ROW_COUNT;
               IF n <> 1 THEN
                 SELECT used_at, serial INTO spent_at, spent_serial FROM used_tokens WHERE token_id = item->>'token_id';
                 out := out || jsonb_build_array(jsonb_build_object('outcome', 'replayed', 'used_at', spent_at, 'serial', spent_serial));
                 CONTINUE;
               END IF;
               out := out || jsonb_build_array(jsonb_build_object('outcome', 'redelivered', 'certificate', again));
               CONTINUE;
             END IF;
           END IF;
           -- a rekey onto a key heading another lineage, or an enrolment the admin did not bind to the key
           -- onto one heading another host's (another key ID), would take that lineage over; a head that
           -- expired or was revoked holds nothing (no one renews it)
           IF item->>'lineage' = 'rekey' OR (item->>'lineage' = 'enrol' AND NOT COALESCE((item->>'key_bound')::boolean, false)) THEN
             owner := NULL;
             owner_key_id := NULL;
             owner_valid_before := NULL;
             SELECT serial INTO owner FROM host_lineages WHERE key_fingerprint = fp;
             IF owner IS NOT NULL THEN
               SELECT key_id, valid_before INTO owner_key_id, owner_valid_before FROM certificates WHERE serial = owner;
               IF owner_valid_before <= (rec->>'issued_at')::bigint
                  OR EXISTS (SELECT 1 FROM revocations WHERE serial = owner OR key_id = owner_key_id) THEN
                 owner := NULL;
               END IF;
             END IF;
             IF owner IS NOT NULL AND ((item->>'lineage' = 'rekey' AND item->>'parent_key' IS DISTINCT FROM fp)
                                       OR (item->>'lineage' = 'enrol' AND owner_key_id IS DISTINCT FROM rec->>'key_id')) THEN
               out := out || jsonb_build_array(jsonb_build_object('outcome', 'key_in_use', 'newest', owner));
               CONTINUE;
             END IF;
           END IF;
           INSERT INTO used_tokens (token_id, expires_at, used_at, serial)
             VALUES (item->>'token_id', (item->>'expires_at')::bigint, (rec->>'issued_at')::bigint, rec->>'serial')
             ON CONFLICT (token_id) DO NOTHING;
           GET DIAGNOSTICS n = ROW_COUNT;
           IF n <> 1 THEN
             SELECT used_at, serial INTO spent_at, spent_serial FROM used_tokens WHERE token_id = item->>'token_id';
             out := out || jsonb_build_array(jsonb_build_object('outcome', 'replayed', 'used_at', spent_at, 'serial', spent_serial));
             CONTINUE;
           END IF;
           INSERT INTO certificates (serial, cert_type, key_id, principals, valid_after, valid_before, provisioner, rule_name, subject, key_fingerprint, issued_at, request_id, certificate, claims, lineage, parent_serial)
             VALUES (rec->>'serial', rec->>'cert_type', rec->>'key_id', rec->>'principals', (rec->>'valid_after')::bigint, (rec->>'valid_before')::bigint,
                     rec->>'provisioner', rec->>'rule_name', rec->>'subject', fp, (rec->>'issued_at')::bigint, rec->>'request_id', rec->>'certificate', rec->>'claims',
                     item->>'lineage', parent);
           IF item->>'lineage' = 'rekey' AND item->>'parent_key' IS DISTINCT FROM fp THEN
             DELETE FROM host_lineages WHERE key_fingerprint = item->>'parent_key';
           END IF;
           IF item->>'lineage' IS NOT NULL THEN
             INSERT INTO host_lineages (key_fingerprint, serial, updated_at) VALUES (fp, rec->>'serial', (rec->>'issued_at')::bigint)
               ON CONFLICT (key_fingerprint) DO UPDATE SET serial = excluded.serial, updated_at = excluded.updated_at;
           END IF;
           out := out || '[{"outcome": "ok"}]'::jsonb;
         END LOOP;
         RETURN out;
       END
       $fn$`,
    ],
  },
]

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version
