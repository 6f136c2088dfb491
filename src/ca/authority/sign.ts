/**
 * The signing pipeline (smallstep's SSHSign, in stages): check the subject key (400) → issuance on
 * (503) → verify the token (401) → the one matching rule (403) → build the certificate from the rule
 * alone (403) → sign → spend the token and record the certificate in one transaction (401 when the
 * token was already spent; the certificate is then discarded, never returned) → audit (201).
 * Each stage is small and the handler only strings them together; every stage adds what it learns
 * to the audit trace.
 */
import {SshcaError} from '../../errors.ts'
import {SUPERSEDED_MESSAGE} from '../../protocol/api.ts'
import {randomBytesPooled} from '../../util/random.ts'
import {parseCertificate, signCertificate, type Certificate} from '../../ssh/cert.ts'
import {checkCertificate} from '../../ssh/checker.ts'
import {bitLength, PublicKey} from '../../ssh/keys.ts'
import {weakKeyProblem} from '../../ssh/weak-keys.ts'
import {SshReader} from '../../ssh/wire.ts'
import {publishedKeys} from '../keys/material.ts'
import {selectedClaims} from '../observe/audit.ts'
import {buildCertificateSpec, policyClaims, selectRule, type CertificateSpec} from '../policy/policy.ts'
import {denial, reasonOf, type RuleConfig} from '../policy/types.ts'
import type {VerifiedToken} from '../provisioner/oidc.ts'
import type {AuditTrace, CaRuntime} from './runtime.ts'
import {authorize} from './webhook.ts'
import {
  beforeRestore,
  type IssuanceStop,
  type IssuedRecord,
  type IssueOutcome,
  type Lineage,
  type Revocation,
} from '../store/store.ts'
import {isoFromSeconds} from '../../util/iso-time.ts'

export const MIN_RSA_BITS = 3072

/** The subject key from a step-ca `publicKey` (base64 wire blob) or an authorized_keys line. */
export function parseSubjectKey(input: {blobBase64?: string; line?: string}): PublicKey {
  try {
    if (input.line !== undefined) return PublicKey.parseLine(input.line).key
    // Stryker disable next-line StringLiteral: any default that is not base64 is refused the same way
    const b64 = input.blobBase64 ?? ''
    // Stryker disable next-line StringLiteral: the catch below gives every parse failure ERR_SSH_FORMAT anyway
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new SshcaError('ERR_SSH_FORMAT', 'publicKey is not base64')
    return PublicKey.fromBlob(Buffer.from(b64, 'base64'))
  } catch (err) {
    // Stryker disable next-line ConditionalExpression: the key parsers throw only SshcaError (a property of test/fuzz/ssh-keys.test.ts)
    if (err instanceof SshcaError)
      throw denial(
        err.code === 'ERR_SSH_UNSUPPORTED' ? 'ERR_SSH_UNSUPPORTED' : 'ERR_SSH_FORMAT',
        'bad_request',
        `the public key is not acceptable: ${err.message}`,
      )
    throw err
  }
}

/** OpenSSH's own largest RSA modulus (OPENSSL_RSA_MAX_MODULUS_BITS in ssh-rsa.c). */
export const MAX_RSA_BITS = 16384
/** The largest RSA public exponent accepted, in bits: odd and below 2^32 (65537 in practice). */
export const MAX_RSA_EXPONENT_BITS = 32

/**
 * ed25519 and ECDSA keys; RSA from 3072 to 16384 bits with a small odd exponent. Every later proof of
 * possession (renew, rekey, revoke) is verified with this key: a huge exponent (or modulus) would make
 * each verification, spent token or not, cost the CA many times the CPU of a normal one. Never a key
 * anyone can sign with (src/ssh/weak-keys.ts): its certificate would be anyone's.
 */
export function checkSubjectKey(key: PublicKey): void {
  if (key.type === 'ssh-rsa') checkRsaCost(key)
  // after the RSA size: the modulus checks cost in proportion to it
  const weak = weakKeyProblem(key)
  if (weak !== undefined)
    throw denial(
      'ERR_SSH_UNSUPPORTED',
      'key_unsafe',
      `this public key must not be certified: ${weak}; generate a new key pair (ssh-keygen -t ed25519)`,
    )
}

function checkRsaCost(key: PublicKey): void {
  if (key.bits < MIN_RSA_BITS) {
    throw denial(
      'ERR_SSH_UNSUPPORTED',
      'bad_request',
      `RSA keys must have at least ${MIN_RSA_BITS} bits; this one has ${key.bits} (ed25519 is recommended)`,
    )
  }
  if (key.bits > MAX_RSA_BITS) {
    throw denial(
      'ERR_SSH_UNSUPPORTED',
      'bad_request',
      `RSA keys must have at most ${MAX_RSA_BITS} bits; this one has ${key.bits} (ed25519 is recommended)`,
    )
  }
  // the fields are e then n; parseSubjectKey read them already, so this cannot fail
  const e = new SshReader(key.fields).mpint('rsa e')
  if (bitLength(e) > MAX_RSA_EXPONENT_BITS || (e.at(-1)! & 1) === 0 || bitLength(e) < 2) {
    throw denial(
      'ERR_SSH_UNSUPPORTED',
      'bad_request',
      `RSA keys must have a small odd public exponent (3 to 2^32, 65537 in practice); this one's has ${bitLength(e)} bits`,
    )
  }
}

export function requireIssuanceEnabled(rt: CaRuntime): void {
  if (rt.policy.config.disabled)
    throw denial('ERR_ISSUANCE_DISABLED', 'policy_disabled', 'certificate issuance is disabled on this CA')
  const stop = rt.safety?.stop
  if (stop) throw stoppedDenial(stop)
}

/** 503 issuance_stopped: `ca stop-issuance` is in force. */
function stoppedDenial(stop: IssuanceStop): SshcaError {
  return denial('ERR_ISSUANCE_DISABLED', 'issuance_stopped', 'certificate issuance is disabled on this CA', {
    stopped_at: new Date(stop.at * 1000).toISOString(),
    stop_reason: stop.reason,
  })
}

/**
 * The restore window. A CA restored from a backup knows the tokens spent up to the snapshot, not
 * those spent between the snapshot and the restore: any token issued before the restore mark may be
 * one of them, so all are refused (every token path: OIDC, enrollment, proof of possession). Such
 * tokens expire within the longest token lifetime, so the rule stops mattering after that.
 * A token the store knows is spent is refused as a replay, which says more.
 */
export async function requireIssuedAfterRestore(rt: CaRuntime, token: {id: string; issuedAt: number}): Promise<void> {
  const mark = rt.safety?.restoredAt ?? null
  if (!beforeRestore(token.issuedAt, mark)) return
  const spent = await rt.store.spentToken(token.id)
  // Stryker disable next-line BooleanLiteral: outcomeDenial reads the reason and its fields; `ok: false` only tags the type
  if (spent) throw outcomeDenial({ok: false, reason: 'replayed', usedAt: spent.usedAt, serial: spent.serial}, undefined)
  throw beforeRestoreDenial(token.issuedAt, mark!)
}

/** 401 token_before_restore: a token issued before the restore mark (src/ca/restore-mark.ts). */
function beforeRestoreDenial(issuedAt: number, mark: number): SshcaError {
  const iso = (s: number) => new Date(s * 1000).toISOString()
  return denial(
    'ERR_TOKEN_INVALID',
    'token_before_restore',
    `the token was issued at ${iso(issuedAt)}, before this CA was restored from a backup (${iso(mark)}): it may have been spent after the backup was taken; get a new one`,
    {
      issued_at: iso(issuedAt),
      restored_at: iso(mark),
    },
  )
}

/** A token verification, counted by outcome (valid, or the denial reason) and provisioner. */
export async function metered<T>(
  rt: CaRuntime,
  provisioner: string | undefined,
  verification: Promise<T>,
  nameOf?: (v: T) => string,
): Promise<T> {
  try {
    const v = await verification
    rt.meter?.tokenVerification({provisioner: nameOf?.(v) ?? provisioner, outcome: 'valid'})
    return v
  } catch (err) {
    const named = err instanceof SshcaError ? (err.details?.provisioner as string | undefined) : undefined
    rt.meter?.tokenVerification({
      provisioner: provisioner ?? named,
      outcome: (err instanceof SshcaError ? reasonOf(err) : undefined) ?? 'error',
    })
    throw err
  }
}

/** A random non-zero 64-bit serial: unique without coordination between replicas. */
export function randomSerial(): bigint {
  for (;;) {
    const s = randomBytesPooled(8).readBigUInt64BE(0)
    // Stryker disable next-line ConditionalExpression: a zero comes once in 2^64 draws
    if (s !== 0n) return s
  }
}

export function recordOf(cert: Certificate, trace: AuditTrace, issuedAt: number): IssuedRecord {
  return {
    serial: cert.serial,
    certType: cert.type,
    keyId: cert.keyId,
    principals: [...cert.principals],
    validAfter: cert.validAfter,
    validBefore: cert.validBefore,
    provisioner: trace.provisioner ?? '',
    rule: trace.rule ?? null,
    subject: trace.subject ?? null,
    keyFingerprint: cert.publicKey.fingerprint(),
    issuedAt,
    requestId: trace.request_id,
    certificate: cert.blob.toString('base64'),
    // Stryker disable next-line ConditionalExpression,LogicalOperator: only the user path fills trace.claims; the type test keeps any later host path from storing them
    ...(cert.type === 'user' && trace.claims ? {claims: trace.claims} : {}),
  }
}

export function issuedFields(cert: Certificate): Record<string, unknown> {
  return {
    serial: cert.serial.toString(),
    key_id: cert.keyId,
    principals: cert.principals,
    valid_after: isoFromSeconds(cert.validAfter),
    valid_before: isoFromSeconds(cert.validBefore),
    critical_options: cert.criticalOptions,
    extensions: Object.keys(cert.extensions),
  }
}

/**
 * Checks revocations (and, for renewals, the lineage), spends the token and records the
 * certificate atomically, then writes `certificate_issued`. Any other outcome drops the certificate:
 * a spent token is a 401 that says when it was spent, a revoked key ID or key a 403.
 */
export async function issue(
  rt: CaRuntime,
  cert: Certificate,
  token: {id: string; expiresAt: number; issuedAt: number},
  trace: AuditTrace,
  lineage?: Lineage,
  /** The policy the request was decided under: a reload since that changed what decided it (while it was signed, on a slow HSM) refuses it. */
  policy?: CaRuntime['policy'],
): Promise<Certificate> {
  // again just before the commit: a request past the first check may have waited seconds since (on
  // its webhook, the IdP's keys, a slow HSM), and a stop that landed meanwhile must still hold. The
  // store checks the stop and the restore mark once more inside the issuance's transaction, where a
  // stop or mark landing at this very moment is seen or waits for the commit
  requireIssuanceEnabled(rt)
  await requireIssuedAfterRestore(rt, token)
  if (policy !== undefined && !sameGrant(policy, rt.policy, trace.provisioner, cert.type === 'host'))
    throw policyReloaded()
  const issuedAt = Math.floor(rt.clock() / 1000)
  const outcome = await rt.store.issue({token, record: recordOf(cert, trace, issuedAt), ...(lineage ? {lineage} : {})})
  if (!outcome.ok) {
    if (outcome.reason === 'redelivered') return redeliver(rt, outcome.certificate, cert, trace)
    throw outcomeDenial(outcome, lineage, token)
  }
  rt.audit.write('certificate_issued', {...trace, ...issuedFields(cert)})
  rt.meter?.decision({outcome: 'issued', provisioner: trace.provisioner, rule: trace.rule, certType: cert.type})
  return cert
}

/**
 * A renewal or rekey whose answer was lost, asked again (store.ts, Lineage; SECURITY.md row 62): the
 * certificate the store gave back, as it was recorded at its issuance, byte for byte; `asked`, the one
 * this request signed, is dropped (never recorded). Checked once more against what the request asked
 * (the type, key, key ID and names) and against the host CA keys published now; anything else is
 * refused as superseded. Audited as `certificate_redelivered` with the serial it was issued under and
 * when: not an issuance (no new serial, nothing new valid).
 */
function redeliver(rt: CaRuntime, rec: IssuedRecord, asked: Certificate, trace: AuditTrace): Certificate {
  let cert: Certificate | undefined
  try {
    cert = parseCertificate(Buffer.from(rec.certificate, 'base64'))
  } catch {
    cert = undefined
  }
  const fits =
    cert !== undefined &&
    cert.serial === rec.serial &&
    cert.keyId === asked.keyId &&
    JSON.stringify(cert.principals) === JSON.stringify(asked.principals) &&
    checkCertificate(cert, {
      type: asked.type,
      publicKey: asked.publicKey,
      caKeys: publishedKeys(rt.material.hostCa),
      at: BigInt(Math.floor(rt.clock() / 1000)),
    }).length === 0
  if (!fits) throw supersededBy(rec.serial.toString())
  rt.audit.write('certificate_redelivered', {
    ...trace,
    ...issuedFields(cert!),
    lineage: rec.lineage,
    parent_serial: rec.parent?.toString(),
    issued_at: new Date(rec.issuedAt * 1000).toISOString(),
    issued_request_id: rec.requestId,
  })
  rt.meter?.decision({outcome: 'redelivered', provisioner: trace.provisioner, certType: cert!.type})
  return cert!
}

/** 403 superseded, in words the caller may read (http/errors.ts): what to do next. */
function supersededBy(newest: string | null): SshcaError {
  return denial(
    'ERR_POLICY_DENIED',
    'superseded',
    `${SUPERSEDED_MESSAGE}: a newer certificate of this host key exists, and it was not made from this one or is no longer valid; enrol the host again with a new enrollment token`,
    {newest_serial: newest},
  )
}

/** A 403 for a revocation that applies: the renewed certificate's own (certificate_revoked), else its key or key ID's. */
export function revokedDenial(r: Revocation, lineage?: Lineage): SshcaError {
  const parentRevoked = lineage?.kind === 'renew' && r.serial === lineage.parent
  // Stryker disable ConditionalExpression,EqualityOperator,StringLiteral: message text only (the reason and details follow)
  const what = parentRevoked
    ? 'the certificate is revoked'
    : r.keyFingerprint !== null
      ? 'the key is revoked'
      : `key ID "${r.keyId}" is revoked`
  // Stryker restore ConditionalExpression,EqualityOperator,StringLiteral
  return denial('ERR_POLICY_DENIED', parentRevoked ? 'certificate_revoked' : 'revoked', what, {
    revocation_id: r.id,
    revoked_at: new Date(r.revokedAt * 1000).toISOString(),
  })
}

function outcomeDenial(
  outcome: Exclude<IssueOutcome, {ok: true} | {reason: 'redelivered'}>,
  lineage: Lineage | undefined,
  token?: {issuedAt: number},
): SshcaError {
  switch (outcome.reason) {
    case 'stopped':
      return stoppedDenial(outcome.stop)
    case 'before_restore':
      return beforeRestoreDenial(token?.issuedAt ?? 0, outcome.restoredAt)
    case 'replayed': {
      // Stryker disable next-line ConditionalExpression,ArithmeticOperator,StringLiteral: message text only (details below carry the time)
      const when = outcome.usedAt === null ? '' : ` at ${new Date(outcome.usedAt * 1000).toISOString()}`
      return denial(
        'ERR_TOKEN_REPLAYED',
        'token_replayed',
        `the token was already used${when}; each token gets one certificate`,
        {
          spent_at: outcome.usedAt === null ? null : new Date(outcome.usedAt * 1000).toISOString(),
          spent_on_serial: outcome.serial,
        },
      )
    }
    case 'revoked':
      return revokedDenial(outcome.revocation, lineage)
    case 'superseded':
      return supersededBy(outcome.newest)
    case 'key_in_use':
      return denial(
        'ERR_POLICY_DENIED',
        'key_in_use',
        "this host key heads another host's certificates; use a key of this host's own, or an enrollment token bound to this key (sshca ca token --host … --key)",
        {newest_serial: outcome.newest},
      )
  }
}

/** 401: the token was presented to its rule's webhook before (by this request's client or another). */
function alreadyAsked(rule: string, askedAt: number | null): SshcaError {
  // Stryker disable next-line ConditionalExpression,StringLiteral: message text only (details below carry the time)
  const when = askedAt === null ? '' : ` at ${new Date(askedAt * 1000).toISOString()}`
  return denial(
    'ERR_TOKEN_REPLAYED',
    'webhook_already_asked',
    // the caller reads this message (ERR_TOKEN_REPLAYED's own: when its token was spent is theirs to
    // know), so it names no rule: which rule a token matched, and that it has a webhook, is the policy's
    // (the audit line names the rule)
    `the token was already presented to the CA's authorizing webhook${when}; each token asks once: get a new one`,
    {rule, ...(askedAt === null ? {} : {asked_at: new Date(askedAt * 1000).toISOString()})},
  )
}

/** A user certificate for `token`'s identity, shaped entirely by the one rule it matches. */
export async function signUserCertificate(
  rt: CaRuntime,
  publicKey: PublicKey,
  token: string,
  certType: 'user' | 'host',
  trace: AuditTrace,
): Promise<Certificate> {
  trace.key_fingerprint = publicKey.fingerprint()
  trace.key_type = publicKey.type
  trace.cert_type = certType
  checkSubjectKey(publicKey)
  requireIssuanceEnabled(rt)
  // the policy this request is decided under: a reload replaces rt.policy (server.ts, workers.ts)
  const policy = rt.policy
  const {verified, rule, spec} = await userGrant(rt, token, certType, trace)
  let notReached: (() => Promise<void>) | undefined
  if (rule.webhook) {
    // a token asks its rule's webhook once: a leaked one, sent again after a refusal or raced to many
    // requests at once, must not make the webhook count, or prompt its person, again and again (push
    // fatigue: one yes among the prompts signs the thief's key). A spent token is refused before it
    // too; issue() still decides a token raced to several requests
    const id = verified.tokenId
    const ask = await rt.store.askWebhook({id, expiresAt: verified.expiresAt}, Math.floor(rt.clock() / 1000))
    if (!ask.first) {
      if (ask.spent)
        throw outcomeDenial(
          {ok: false, reason: 'replayed', usedAt: ask.spent.usedAt, serial: ask.spent.serial},
          undefined,
        )
      throw alreadyAsked(rule.name, ask.askedAt)
    }
    // a call that never reached the webhook (it is down, the wait cap) prompted no one: the token may
    // ask again. Waited for before the answer: a client sending the token again once told would
    // otherwise race the forget, and be told the token asked already (get a new one)
    notReached = () => rt.store.forgetWebhookAsk(id).catch(() => undefined)
  }
  // the rule's authorizing webhook has the last word; no answer is a no
  await authorize(rt, verified.provisioner, rule, verified.claims, spec, trace, notReached)
  // a reload while the request waited (its webhook takes up to 30 s) may have removed or narrowed the
  // rule that granted it: never issue under a policy no longer in force. Nothing is spent; the client
  // sends the token again, and the policy in force decides it. A stop first: `ca stop-issuance` also
  // writes disabled: true to ca.yaml, and its refusal says more than the reload it causes
  requireIssuanceEnabled(rt)
  try {
    if (!sameGrant(policy, rt.policy, verified.provisioner.name)) throw policyReloaded()
    return await signAndIssue(rt, publicKey, spec, verified, trace, policy)
  } catch (err) {
    // policy_reloaded tells the client to send the token again for the policy in force to decide: its
    // ask is forgotten, or that policy's webhook would never be asked (401 webhook_already_asked). A
    // reload is the operator's, not a client's: no one can make a token prompt its person again at will
    if (rule.webhook && err instanceof SshcaError && reasonOf(err) === 'policy_reloaded')
      await rt.store.forgetWebhookAsk(verified.tokenId).catch(() => undefined)
    throw err
  }
}

/** Signs the certificate `spec` describes and issues it (the token spent), under the policy `policy`. */
async function signAndIssue(
  rt: CaRuntime,
  publicKey: PublicKey,
  spec: CertificateSpec,
  verified: VerifiedToken,
  trace: AuditTrace,
  policy: CaRuntime['policy'],
): Promise<Certificate> {
  const cert = await signCertificate(
    {
      type: 'user',
      publicKey,
      serial: randomSerial(),
      keyId: spec.keyId,
      principals: spec.principals,
      validAfter: spec.validAfter,
      validBefore: spec.validBefore,
      criticalOptions: spec.criticalOptions,
      extensions: spec.extensions,
    },
    rt.material.userCa.active,
  )
  return issue(
    rt,
    cert,
    {id: verified.tokenId, expiresAt: verified.expiresAt, issuedAt: verified.claims.iat as number},
    trace,
    undefined,
    policy,
  )
}

/**
 * Whether a reload left what decided a request as it was: its provisioner (its rules, webhooks and
 * limits) and the ssh settings (reserved principals, TTL ceilings); for a host certificate also
 * dnsNames, the audiences its SSHPOP token was checked against. A SIGHUP that changes nothing (a key
 * rotation's, ca.yaml unchanged) or only another provisioner refuses no request in flight.
 */
function sameGrant(
  before: CaRuntime['policy'],
  after: CaRuntime['policy'],
  provisioner: string | undefined,
  host = false,
): boolean {
  if (before === after) return true
  const grant = (c: CaRuntime['policy']['config']): string =>
    JSON.stringify([
      c.provisioners.find((p) => p.name === provisioner) ?? null,
      c.ssh,
      c.disabled,
      host ? c.dnsNames : null,
    ])
  return grant(before.config) === grant(after.config)
}

/** 503 policy_reloaded: a reload replaced the policy a request was decided under; sent again, the policy in force decides it. */
function policyReloaded(): SshcaError {
  return denial(
    'ERR_CA_OVERLOADED',
    'policy_reloaded',
    'the policy was reloaded while the request waited; send it again',
  )
}

/**
 * What `token` may have: verified, issued after a restore, its one rule and the certificate that rule
 * builds. Signing asks this, then the rule's webhook; the read routes ask this, then whether the key
 * ID is revoked (a reader is someone the CA would give a certificate to).
 */
export async function userGrant(
  rt: CaRuntime,
  token: string,
  certType: 'user' | 'host',
  trace: AuditTrace,
): Promise<{verified: VerifiedToken; rule: RuleConfig; spec: CertificateSpec}> {
  const policy = rt.policy
  const verified = await metered(rt, undefined, policy.verifier.verify(token), (v) => v.provisioner.name)
  const p = verified.provisioner
  trace.provisioner = p.name
  trace.token = {id: verified.tokenId, sha256: verified.tokenHash}
  trace.subject = typeof verified.claims.sub === 'string' ? verified.claims.sub : undefined
  // every claim this provisioner's rules read, not only the matched rule's: what a policy what-if
  // (`ca explain --since/--replay`) needs to replay this request through another rule set
  trace.claims = selectedClaims(verified.claims, policyClaims(p))
  await requireIssuedAfterRestore(rt, {id: verified.tokenId, issuedAt: verified.claims.iat as number})
  if (certType !== 'user')
    throw denial('ERR_POLICY_DENIED', 'cert_type_not_allowed', `provisioner "${p.name}" issues user certificates only`)
  const {rule} = selectRule(p, verified.claims)
  trace.rule = rule.name
  const spec = buildCertificateSpec(p, rule, verified.claims, policy.config.ssh, Math.floor(rt.clock() / 1000))
  return {verified, rule, spec}
}
