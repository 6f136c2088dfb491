/**
 * What the CA remembers: token ids until they expire (replay protection), every certificate it
 * issued, the newest certificate of each host key (renewal lineages), revocations, and the events of
 * admin commands (forwarded to the audit sink by the running server). An interface with versioned
 * migrations, so SQLite (one CA) and PostgreSQL (replicas) back it alike.
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
  /**
   * The claim values the certificate was issued for: those the provisioner's rules read, and the
   * audited ones (never the token). What a policy what-if replays. Absent for host certificates.
   */
  claims?: Record<string, unknown>
  /**
   * Read back, never written through `issue()`'s record (the store takes them from its lineage): how
   * a host certificate joined its key's lineage, and for a renewal or rekey the serial of the
   * certificate it was proven with. Absent for user certificates and for every certificate issued
   * before schema 7, whose parent was never recorded.
   */
  lineage?: Lineage['kind']
  parent?: bigint
}

export interface Revocation {
  /** Store-assigned; `ca unrevoke ID` names it. */
  id?: string
  serial: bigint | null
  keyId: string | null
  /** `SHA256:…` of a revoked public key: every certificate of that key. */
  keyFingerprint: string | null
  reason: string
  revokedAt: number
  /**
   * Set on a revocation the store wrote itself, by serial, for a certificate renewed or rekeyed (at
   * any depth) from one that a `revokeAll` revocation names by serial or by key: that revocation's id.
   */
  cascadeOf?: string
}

/** What unrevoke removed: the revocation, and the ones written for its descendants with it. */
export type Unrevoked = Revocation & {cascade: Revocation[]}

/**
 * Host certificates form lineages, one per host key: enrolment starts (or restarts) one, renewal
 * must present the lineage's newest certificate. The store swaps the newest serial atomically, so
 * two renewals of one certificate cannot both succeed. A rekey (step's /ssh/rekey) moves a lineage
 * to a new key: the parent must be the old key's newest certificate, the new key's lineage starts
 * at the new certificate and the old key's ends (its certificates can no longer be renewed or rekeyed).
 *
 * One step back is answered, not refused (SECURITY.md row 62): a renewal presenting the parent of its
 * key's newest certificate, when that newest was renewed from it, gets that newest again (`redelivered`),
 * as does a rekey presenting the parent of the newest certificate of the key it asks for, when that one
 * was rekeyed from it; only while that certificate is unexpired and unrevoked. That is the state a lost
 * answer leaves (the CA committed, the host never heard), and a re-delivery writes no lineage step, so
 * losses never leave the host further behind. Two steps back (a grandparent) stays `superseded`: the
 * certificate between was handed out and renewed by whoever held it.
 */
/**
 * How a host certificate joins its key's lineage. `keyBound`: the enrolment token names this key
 * (`ca token --host … --key`): the admin chose it, so it may take the key over from another host.
 */
export type Lineage =
  | {kind: 'enrol'; keyBound?: boolean}
  | {kind: 'renew'; parent: bigint}
  | {kind: 'rekey'; parent: bigint; parentKey: string}

export interface IssueRequest {
  /** The token's id (spent here), its expiry and its `iat` (held to the restore mark here), in seconds. */
  token: {id: string; expiresAt: number; issuedAt: number}
  record: IssuedRecord
  lineage?: Lineage
}

export type IssueOutcome =
  | {ok: true}
  /** The token was spent before, at `usedAt` (seconds), on certificate `serial`. */
  | {ok: false; reason: 'replayed'; usedAt: number | null; serial: string | null}
  /** The key ID, the key or (renewals, rekeys) the parent is revoked: by serial, or its key. */
  | {ok: false; reason: 'revoked'; revocation: Revocation}
  /** A renewal or rekey of a certificate that is no longer its lineage's newest. */
  | {ok: false; reason: 'superseded'; newest: string | null}
  /**
   * A renewal or rekey whose answer was lost, asked again: the lineage's newest certificate was renewed
   * (or rekeyed, onto the very key this request asks for) from the parent this request presents, and it
   * is unexpired and unrevoked. Nothing was recorded for the request's own certificate (no new serial,
   * the lineage as it was); the token is spent on `certificate`'s serial; `certificate` is the record
   * as it was written at its issuance, to be handed out again byte for byte. `ok: false` so that a
   * caller that knows nothing of it hands out nothing (the request's certificate was not recorded).
   */
  | {ok: false; reason: 'redelivered'; certificate: IssuedRecord}
  /**
   * A rekey onto a key that heads another lineage, or an enrolment not bound to the key onto one that
   * heads another host's (another key ID): it would take that lineage over, its renewals refused.
   */
  | {ok: false; reason: 'key_in_use'; newest: string}
  /** `ca stop-issuance` is in force (read in the issuance's own transaction). */
  | {ok: false; reason: 'stopped'; stop: IssuanceStop}
  /** The token was issued before the restore mark (plus RESTORE_LEEWAY): it may have been spent after the backup. */
  | {ok: false; reason: 'before_restore'; restoredAt: number}

/**
 * Clock skew allowed around the restore mark: a token minted by an issuer whose clock runs ahead by up
 * to this may carry an iat after the mark though it was made (and perhaps spent) before it.
 */
export const RESTORE_LEEWAY = 60

/** Whether a token issued at `issuedAt` (seconds) falls in the restore window of `mark`: refused. */
export const beforeRestore = (issuedAt: number, mark: number | null): boolean =>
  mark !== null && !(issuedAt >= mark + RESTORE_LEEWAY)

export interface CertificateQuery {
  subject?: string
  keyId?: string
  keyFingerprint?: string
  provisioner?: string
  certType?: 'user' | 'host'
  /** Issued at or after (seconds). */
  since?: number
  /** Still valid at this time (seconds). */
  activeAt?: number
  limit?: number
}

/** The emergency stop (`ca stop-issuance`): every replica on this store refuses to issue while it is set. */
export interface IssuanceStop {
  /** Seconds since the epoch. */
  at: number
  reason: string
}

/** Per certificate type: how many are valid now, and the last moment any one ever issued is valid. */
export interface InventorySummary {
  user: {active: number; lastValidBefore: bigint | null}
  host: {active: number; lastValidBefore: bigint | null}
}

/** What an admin command did, kept in the store until the server writes it to its audit sink. */
export interface AdminEvent {
  id: number
  at: number
  event: string
  fields: Record<string, unknown>
}

/** An admin event to record with the write it tells of: its fields are made from that write's result. */
export interface AdminEventDraft<T> {
  event: string
  at: number
  fields(result: T): Record<string, unknown>
}

/** What askWebhook found: the first ask, or the token already asked (when, if known) or spent. */
export type WebhookAsk =
  {first: true} | {first: false; askedAt: number | null; spent?: {usedAt: number | null; serial: string | null}}

export interface Store {
  /**
   * Checks the emergency stop, the restore mark, revocations and the lineage, spends the token and
   * records the certificate, in one transaction: the certificate exists only when this returns ok;
   * otherwise nothing is written, but for `redelivered` (a renewal or rekey asked again: the token is
   * spent on the certificate given back, and nothing else is written). The stop and the mark are read inside that transaction, and
   * setIssuanceStop and markRestored wait for the issuances in flight: once either returns, no
   * issuance it refuses can commit (a check before the transaction alone left a window in which one
   * could, after `ca stop-issuance` had counted what was valid).
   */
  issue(req: IssueRequest): Promise<IssueOutcome>
  findCertificate(serial: bigint): Promise<IssuedRecord | undefined>
  /** Host certificates still valid at `now` (seconds), newest first, one per host key (its lineage's newest). */
  currentHostCertificates(now: number): Promise<IssuedRecord[]>
  certificates(q: CertificateQuery): Promise<IssuedRecord[]>
  /** Records a revocation; returns it with its id. */
  revoke(r: Revocation): Promise<Revocation>
  /** Removes a revocation by id, and those written for its descendants (`cascadeOf`); undefined when there is none. */
  unrevoke(id: string): Promise<Unrevoked | undefined>
  /**
   * Records revocations (one, or every certificate of an identity) and the admin event that tells of
   * them in one transaction: a crash keeps both or neither, never a revocation the audit log does not
   * hear of. `event.fields` gets the revocations with their ids; if it throws, nothing is written.
   *
   * A revocation by serial or by key also covers every certificate renewed or rekeyed from the
   * certificates it names, at any depth (a stolen host key must not live on in what it renewed or
   * rekeyed to): in the same transaction the store writes a revocation by serial for each, `cascadeOf`
   * the one it follows from, and returns them after the revocations asked for. Rows, not a rule
   * applied when reading: the KRL, the checks at issuance and every replica read them as they read
   * any revocation, so one generation is one set of revocations everywhere. No certificate can join
   * such a lineage afterwards (its parent is revoked), nor while this commits (PostgresStore.revokeAll).
   * `revoke()` writes the one revocation it is given: a host revoking its own certificate
   * (`/ssh/revoke`, perhaps the old key's after a rekey) ends nothing it rekeyed to.
   */
  revokeAll(rs: Revocation[], event: AdminEventDraft<Revocation[]>): Promise<Revocation[]>
  /** unrevoke() and its admin event in one transaction; undefined, and no event, when there is none. */
  unrevokeWith(id: string, event: AdminEventDraft<Unrevoked>): Promise<Unrevoked | undefined>
  revocations(): Promise<Revocation[]>
  /** A number that moves forward on every revoke and unrevoke: the KRL's version. */
  revocationGeneration(): Promise<number>
  /**
   * The revocations and their generation read together (one snapshot), so every replica renders the
   * same KRL bytes for a version: never version N+1 without the revocation that made it N+1.
   */
  revocationSnapshot(): Promise<{generation: number; revocations: Revocation[]}>
  /** The revocation that covers a certificate with this serial, key ID or key, if any. */
  revocationFor(c: {serial?: bigint; keyId?: string; keyFingerprint?: string}): Promise<Revocation | undefined>
  /** Drops token ids that expired before `now` (seconds). */
  purgeExpiredTokens(now: number): Promise<number>
  /** Appends an admin event (ca token, ca revoke …). */
  recordAdminEvent(event: string, fields: Record<string, unknown>, at: number): Promise<AdminEvent>
  /** The id of the last admin event written to the audit sink (0: none). */
  auditCursor(): Promise<number>
  /** Admin events after `cursor`, oldest first. */
  adminEventsAfter(cursor: number, limit: number): Promise<AdminEvent[]>
  /**
   * Moves the cursor from `from` to `to` if no one else moved it (several replicas share one store):
   * events are written at least once, and usually exactly once.
   */
  advanceAuditCursor(from: number, to: number): Promise<boolean>
  /** When and on which certificate a token was spent, while its id is kept (until it expires). */
  spentToken(id: string): Promise<{usedAt: number | null; serial: string | null} | undefined>
  /**
   * A token about to be presented to a rule's authorizing webhook, at `at` (seconds): recorded, and
   * `first` when no request presented it before (and it is not spent); otherwise what it already did.
   * Kept until the token expires, purged with the spent tokens.
   */
  askWebhook(token: {id: string; expiresAt: number}, at: number): Promise<WebhookAsk>
  /** Forgets the ask of a token whose webhook was never reached (nothing was sent): it may ask again. */
  forgetWebhookAsk(id: string): Promise<void>
  /** Certificates valid at `now` (seconds) and the latest validBefore of all issued, per type; revoked ones count too. */
  inventorySummary(now: number): Promise<InventorySummary>
  /**
   * The restore mark (seconds): this store was restored from a backup then, so tokens issued before it
   * may have been spent after the snapshot and are refused. null when it never was.
   */
  restoredAt(): Promise<number | null>
  /**
   * Moves the restore mark to `at` unless it is already later (it never moves back); returns the mark
   * once no issuance that read the old one can still commit.
   */
  markRestored(at: number): Promise<number>
  /** The emergency stop in force, or null. */
  issuanceStop(): Promise<IssuanceStop | null>
  /** Sets (or with null, lifts) the emergency stop; returns once no issuance that read the old state can still commit. */
  setIssuanceStop(stop: IssuanceStop | null): Promise<void>
  /** Resolves when the database answers now; throws ERR_STORE_UNAVAILABLE when it does not (GET /ready). */
  ping(): Promise<void>
  /**
   * Runs `fn` holding the lock `name` across every process on this store (PostgreSQL: an advisory
   * lock, so N replicas never renew shared files at once; SQLite: one serving process, a lock in it).
   */
  exclusive<T>(name: string, fn: () => Promise<T>): Promise<T>
  close(): Promise<void>
}
