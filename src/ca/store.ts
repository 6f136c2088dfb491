/**
 * What the CA remembers: token ids until they expire (replay protection), every certificate it
 * issued, and revocations. An interface with one SQL schema, so SQLite (one CA) and PostgreSQL
 * (replicas) back it alike.
 */

export interface IssuedRecord {
  serial: bigint
  certType: 'user' | 'host'
  keyId: string
  principals: string[]
  validAfter: bigint
  validBefore: bigint
  provisioner: string
  rule: string | null
  subject: string | null
  keyFingerprint: string
  issuedAt: number
  requestId: string
  /** base64 of the certificate's wire blob */
  certificate: string
}

export interface Revocation {
  serial: bigint | null
  keyId: string | null
  reason: string
  revokedAt: number
}

export interface Store {
  recordCertificate(r: IssuedRecord): Promise<void>
  /**
   * Spends the token and records the certificate in one transaction: false (and nothing recorded)
   * when the token was already spent. The certificate exists only if this returns true.
   */
  issue(tokenId: string, tokenExpiresAt: number, r: IssuedRecord): Promise<boolean>
  findCertificate(serial: bigint): Promise<IssuedRecord | undefined>
  /** Host certificates still valid at `now` (seconds), newest first. */
  currentHostCertificates(now: number): Promise<IssuedRecord[]>
  revoke(r: Revocation): Promise<void>
  revocations(): Promise<Revocation[]>
  /** True when the serial or the key ID is revoked. */
  isRevoked(serial: bigint, keyId: string): Promise<boolean>
  /** Drops token ids that expired before `now` (seconds). */
  purgeExpiredTokens(now: number): Promise<number>
  close(): Promise<void>
}

/** The schema, written in the SQL both SQLite and PostgreSQL accept. Serials are decimal text (uint64). */
export const SCHEMA = [
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
]
