/**
 * A running CA: config, keys, store and audit log opened; the app listening over HTTPS, on worker
 * threads (src/ca/workers.ts) or on this one (`workers: 0`); SIGHUP reloading ca.yaml (an invalid
 * file is logged and the old policy kept); timers that purge spent token ids and renew the TLS
 * certificate. Stopped with close().
 */
import {availableParallelism} from 'node:os'
import {isSea} from 'node:sea'
import {setInterval} from 'node:timers'
import type {FastifyInstance} from 'fastify'
import type {Server as TlsServer} from 'node:tls'
import {SshcaError} from '../errors.ts'
import {parseHostPort} from '../util/net.ts'
import {Authority} from './authority/authority.ts'
import {buildApp, closeWithin, tlsContext} from './http/app.ts'
import {
  auditFailingWarning,
  auditLock,
  createAuditLog,
  stderrIsAuditDestination,
  type AuditEvent,
  type AuditLog,
} from './observe/audit.ts'
import {coalesceRefusals} from './observe/refusals.ts'
import {
  closeDeadlineSeconds,
  keyStoreOf,
  loadConfig,
  resolveInDir,
  startOnlyChanges,
  type CaConfig,
} from './config/config.ts'
import {readFile} from 'node:fs/promises'
import {keyringPath, readKeyring} from './keys/keyring.ts'
import {caPaths} from './config/layout.ts'
import {loadRoots} from './keys/roots.ts'
import {loadKeySets, loadMaterial, loadTls} from './keys/material.ts'
import {parseCert, subjectAltNames} from './keys/pki.ts'
import {TokenVerifier, type VerifierDeps} from './provisioner/oidc.ts'
import type {CaRuntime, SafetyState} from './authority/runtime.ts'
import type {Store} from './store/store.ts'
import {openStore} from './store/open.ts'
import {applyPendingRestore} from './restore-mark.ts'
import {startWorkers, type WorkerPool} from './workers.ts'

export interface StartOptions {
  configPath: string
  password: string
  /** Overrides ca.yaml's address (tests use 127.0.0.1:0). */
  address?: string
  /** Overrides ca.yaml's audit destination. */
  auditFile?: string
  /**
   * Worker threads serving the API (default: one per core); 0 serves it on this thread. `verifier`
   * and `clock` are functions, which cannot reach a worker: they need 0.
   */
  workers?: number
  verifier?: VerifierDeps
  clock?: () => number
  /** Install SIGHUP (reload) handling; `ca serve` does, in-process tests do not. */
  handleSignals?: boolean
  /** How often admin events (ca token, ca revoke …) are copied from the store to the audit sink (ms). */
  adminEventsIntervalMs?: number
  /** Overrides metrics.address (tests use 127.0.0.1:0). */
  metricsAddress?: string
  /** How often the key manifest (ssh/keys.json) is checked for a rotation step (ms); SIGHUP checks at once. */
  keysIntervalMs?: number
  /** How often the emergency stop and the restore mark are read from the store (ms; every replica does). */
  safetyIntervalMs?: number
  /** How often the API's TLS certificate is checked for renewal (ms; 12 h). */
  tlsRenewIntervalMs?: number
  /** Where policy warnings are reported besides the audit log (ca serve: stderr). */
  onWarnings?: (warnings: string[], reload: boolean) => void
}

export interface RunningCa {
  url: string
  port: number
  /** http://host:port/metrics when metrics.address is set. */
  metricsUrl?: string
  runtime: CaRuntime
  /** The app, when it is served on this thread (`workers: 0`). */
  app: FastifyInstance | undefined
  /** The worker threads, when there are (`workers` ≥ 1). */
  pool: WorkerPool | undefined
  /**
   * Re-reads ca.yaml (and the key manifest); true when the new policy is in force. Rejects
   * (ERR_STORE_UNAVAILABLE, its message saying which policy is in force) when its audit line cannot be written.
   */
  reload(): Promise<boolean>
  /** Re-reads the key manifest; true when the published or active keys changed. */
  reloadKeys(): Promise<boolean>
  close(): Promise<void>
}

/** How often spent token ids that have expired are deleted. */
export const PURGE_EVERY_MS = 60_000

/**
 * How long past its expiry a spent token's id is kept. Replicas sharing a store each purge by their
 * own clock: one running ahead would drop ids that a replica running behind still accepts tokens
 * for, and those tokens would sign again there for the length of the skew.
 */
export const PURGE_MARGIN_SECONDS = 3600

/** One purge of the spent-token ids, `PURGE_MARGIN_SECONDS` behind this replica's clock. */
export function purgeSpentTokens(store: Pick<Store, 'purgeExpiredTokens'>, nowMs: number): Promise<number> {
  return store.purgeExpiredTokens(Math.floor(nowMs / 1000) - PURGE_MARGIN_SECONDS)
}

/** The API's TLS certificate is renewed when it has fewer days left than this; looked at every 12 h. */
const TLS_RENEW_WITHIN_DAYS = 30
const TLS_RENEW_EVERY_MS = 12 * 3600_000

/**
 * The default number of worker threads: one per core the process may use, a token's CA as any other
 * (its keys sign in this thread's token process, for every worker: workers.ts); none in the single
 * executable, which has no module file to start a worker thread from (the CA serves on its main thread).
 */
export const defaultWorkers = (): number => (isSea() ? 0 : availableParallelism())

export async function startCa(opts: StartOptions): Promise<RunningCa> {
  // a test's clock or verifier lives in this thread only: such a CA serves here unless told otherwise
  const workers = opts.workers ?? (opts.verifier || opts.clock ? 0 : defaultWorkers())
  if (workers > 0 && isSea())
    throw new SshcaError(
      'ERR_USAGE',
      'the single executable serves the CA on one thread: it cannot start worker threads',
      {hint: 'use --workers 0, or install the npm package (npm install -g sshca) for one worker per core'},
    )
  if (!Number.isInteger(workers) || workers < 0) throw new TypeError(`workers must be 0 or more, not ${opts.workers}`)
  if (workers > 0 && (opts.verifier || opts.clock))
    throw new TypeError('verifier and clock cannot reach worker threads: use workers: 0')
  const {config, warnings} = await loadConfig(opts.configPath)
  const hp = parseHostPort(opts.address ?? config.address)
  if (!hp) throw new SshcaError('ERR_CA_CONFIG', `address "${opts.address ?? config.address}" is not host:port`)
  // metrics only when asked for: prom-client is loaded by no other path
  const meter = config.metrics ? new (await import('./observe/prometheus.ts')).PrometheusMeter() : undefined
  const store = await openStore(config, 'server', meter ? {onCommit: (n, s) => meter.commit(n, s)} : {})
  // replicas whose CA directory is one shared file system must not renew the TLS certificate at once
  // (key and certificate are two files): the store's lock orders them, the second finds it renewed
  const material = await store
    .exclusive('tls-renewal', () =>
      loadMaterial(config.dir, opts.password, config.dnsNames, 30, {kms: keyStoreOf(config.keys)}),
    )
    .catch(async (err: unknown) => {
      await store.close()
      throw err
    })
  const registry = material.registry
  const auditDest = opts.auditFile ?? (config.audit.file === '-' ? '-' : resolveInDir(config, config.audit.file))
  const clock = opts.clock ?? Date.now
  // the first start after `ca restore` closes the replay window at this moment (restore-mark.ts)
  let safety: SafetyState
  try {
    await applyPendingRestore(config.dir, store, Math.floor(clock() / 1000))
    safety = await readSafety(store)
  } catch (err) {
    await store.close()
    throw err
  }
  const lock = auditLock()
  // floods of refusals made before a token is read become a line a second per client (observe/refusals.ts)
  // its failing is said on stderr (by whichever thread found it so, or saw it end), unless stderr is the
  // audit log's own destination (2>&1, a journal's one stream): a warning written there, outside the
  // audit lock, could land inside a line cut part-way, and would not be read before the destination
  // takes lines again anyway. /ready says it either way (503, audit: failing)
  const onAuditFailing = stderrIsAuditDestination(auditDest)
    ? undefined
    : (why: string | undefined): void => opts.onWarnings?.([auditFailingWarning(why)], false)
  let audit: ReturnType<typeof coalesceRefusals>
  try {
    audit = coalesceRefusals(createAuditLog(auditDest, {lock, ...(onAuditFailing ? {onFailing: onAuditFailing} : {})}))
  } catch (err) {
    // a folder it may not write, a named pipe nothing reads
    await store.close()
    throw err
  }
  const verifierDeps = {
    ...opts.verifier,
    clock,
    ...(meter ? {onKeysFetch: (issuer: string, outcome: 'ok' | 'error') => meter.jwksFetch(issuer, outcome)} : {}),
  }
  const runtime: CaRuntime = {
    policy: {config, verifier: new TokenVerifier(config.provisioners, verifierDeps)},
    material,
    store,
    audit,
    clock,
    ...(meter ? {meter} : {}),
    safety,
  }
  meter?.setFacts(() => ({
    certificates: [
      {name: 'tls', notAfter: material.tls.notAfter},
      {name: 'intermediate', notAfter: parseCert(material.intermediatePem).notAfter},
      {name: 'root', notAfter: parseCert(material.rootPem).notAfter},
    ],
    sshKeys: (['user', 'host'] as const).flatMap((kind) =>
      material[kind === 'user' ? 'userCa' : 'hostCa'].published.map((k) => ({
        kind,
        id: k.id,
        state: k.state,
        since: new Date(k.activatedAt ?? k.createdAt),
      })),
    ),
  }))
  if (material.tlsRenewed)
    audit.write('tls_certificate_renewed', {not_after: material.tls.notAfter.toISOString(), names: config.dnsNames})
  let app: FastifyInstance | undefined
  let pool: WorkerPool | undefined
  let port: number
  try {
    if (workers === 0) {
      app = buildApp(new Authority(runtime), {key: material.tls.keyPem, cert: material.tls.certPem})
      await app.listen({host: hp.host, port: hp.port})
      port = (app.server.address() as {port: number}).port
    } else {
      pool = await startWorkers({
        count: workers,
        host: hp.host,
        port: hp.port,
        config,
        material,
        store,
        audit,
        auditDest,
        auditLock: lock,
        ...(onAuditFailing ? {onAuditFailing} : {}),
        safety,
        ...(meter ? {meter} : {}),
      })
      port = pool.port
    }
  } catch (err) {
    await app?.close().catch(() => undefined)
    await store.close()
    await audit.close()
    await registry.close()
    throw listenError(err, `${hp.host}:${hp.port}`)
  }
  const host = hp.host.includes(':') ? `[${hp.host}]` : hp.host
  const url = `https://${host}:${port}`
  let metrics: {url: string; close(): Promise<void>} | undefined
  if (meter && config.metrics) {
    const mhp = parseHostPort(opts.metricsAddress ?? config.metrics.address)!
    try {
      metrics = await (await import('./observe/prometheus.ts')).serveMetrics(meter, mhp.host, mhp.port)
    } catch (err) {
      await app?.close().catch(() => undefined)
      await pool?.close().catch(() => undefined)
      await store.close()
      await audit.close()
      await registry.close()
      throw listenError(err, `${mhp.host}:${mhp.port}`)
    }
  }

  const policyFields = (c: CaConfig) => ({
    provisioners: c.provisioners.map((p) => ({
      name: p.name,
      issuer: p.issuer,
      audience: p.audience,
      rules: p.rules.map((r) => r.name),
    })),
    disabled: c.disabled,
  })
  audit.write('policy_loaded', {config: config.path, ...policyFields(config), warnings})
  if (warnings.length) opts.onWarnings?.(warnings, false)
  audit.write('server_started', {
    url,
    root_fingerprint: material.rootFingerprint,
    user_ca: material.userCa.active.publicKey.fingerprint(),
    host_ca: material.hostCa.active.publicKey.fingerprint(),
    pid: process.pid,
    workers,
    ...(metrics ? {metrics: metrics.url} : {}),
    ...(safety.stop
      ? {issuance_stopped_at: new Date(safety.stop.at * 1000).toISOString(), stop_reason: safety.stop.reason}
      : {}),
    ...(safety.restoredAt !== null ? {restored_at: new Date(safety.restoredAt * 1000).toISOString()} : {}),
  })

  // a rotation step (`ca rotate …`) rewrites ssh/keys.json or the root files; the server follows
  // without a restart: new signers, new published keys, new roots and TLS chain
  const paths = caPaths(config.dir)
  const rootFiles = [
    paths.rootCert,
    paths.rootNextCert,
    paths.rootPreviousCert,
    paths.rootCrossCert,
    paths.intermediateTwinCert,
    paths.tlsCert,
  ]
  const snapshot = async (): Promise<{keys: string; roots: string}> => ({
    keys: await readFile(keyringPath(config.dir), 'utf8').catch(() => ''),
    roots: (await Promise.all(rootFiles.map((f) => readFile(f, 'utf8').catch(() => '')))).join('\0'),
  })
  let seen = await snapshot()
  /** The store's lock for a TLS reissue when picking up roots, as at the start and at renewal. */
  const tlsLock = <T>(fn: () => Promise<T>): Promise<T> => store.exclusive('tls-renewal', fn)
  /** The roots were left to the next look because the store did not answer (said once in the audit log). */
  let rootsWaiting = false
  /** The manifest whose keys were left to the next look because the key store did not open them (said once). */
  let keysWaiting: string | undefined
  let keysLoading: Promise<boolean> = Promise.resolve(false)
  /**
   * The look queued behind the one running, not started yet: a caller meanwhile shares it (it reads
   * the files when it starts, after that caller came). One look may wait out the store's lock (6 x
   * db.timeout) while the timer asks every 5 s: one queued per tick, they piled up without a bound, and
   * a SIGHUP's policy reload (after the keys) or an emergency stop's waited behind all of them.
   */
  let keysQueued: Promise<boolean> | null = null
  const reloadKeys = (): Promise<boolean> => {
    if (keysQueued) return keysQueued
    const look = async (): Promise<boolean> => {
      keysQueued = null
      const now = await snapshot()
      let changed = false
      let keysSeen = now.keys
      if (now.keys !== seen.keys) {
        try {
          const sets = await loadKeySets(await readKeyring(config.dir), registry, material)
          material.userCa = sets.userCa
          material.hostCa = sets.hostCa
          const view = (set: typeof sets.userCa) =>
            set.published.map((p) => ({id: p.id, state: p.state, fingerprint: p.publicKey.fingerprint()}))
          pool?.setMaterial(material)
          audit.write('ca_keys_loaded', {user: view(sets.userCa), host: view(sets.hostCa)})
          changed = true
          keysWaiting = undefined
        } catch (err) {
          // the keys in force stay: a manifest that does not open must not stop issuance. A key store
          // that did not answer (a PKCS#11 token hung, busy past keys.timeout, its session lost) is
          // asked again at the next look: the manifest was not read into force, and marking it seen
          // left the CA signing with the key a rotation step deactivated until the next restart
          const keyStore = err instanceof SshcaError && err.code === 'ERR_KEY_STORE'
          if (keyStore) keysSeen = seen.keys
          if (!keyStore || keysWaiting !== now.keys)
            audit.write('ca_keys_reload_failed', {
              error: (err as Error).message,
              kept: 'previous keys',
              ...(keyStore ? {retry: 'when the key store answers'} : {}),
            })
          keysWaiting = keyStore ? now.keys : undefined
        }
      }
      let rootsSeen = now.roots
      if (now.roots !== seen.roots) {
        try {
          // the certificate as written (by a rotation step, `ca intermediate`, another replica): reissued
          // here when it is stale or expires soon, never for names (dnsNames wait for its next issue),
          // under the store's lock as at the start and at renewal
          const [roots, tls] = await Promise.all([
            loadRoots(config.dir),
            loadTls(config.dir, opts.password, runtime.policy.config.dnsNames, TLS_RENEW_WITHIN_DAYS, {
              keepNames: true,
              lock: tlsLock,
            }),
          ])
          Object.assign(material, roots, {tls: tls.tls, intermediateKey: tls.intermediateKey})
          if (app)
            (app.server as unknown as TlsServer).setSecureContext(
              tlsContext({key: tls.tls.keyPem, cert: tls.tls.certPem}),
            )
          pool?.setMaterial(material)
          audit.write('ca_roots_loaded', {
            roots: roots.roots.map((r) => ({fingerprint: r.fingerprint, state: r.state})),
            cross_signed: roots.crossPems.length > 0,
            tls_reissued: tls.renewed,
          })
          changed = true
          rootsWaiting = false
        } catch (err) {
          // the certificate to reissue and the store's lock not to be had (PostgreSQL down, or another
          // process holding it): looked at again at the next tick, not reissued without the lock (two
          // replicas writing key and certificate at once) nor given up until the files change again.
          // Meanwhile the CA serves what it has (it cannot issue without its store either)
          const storeDown = err instanceof SshcaError && err.code === 'ERR_STORE_UNAVAILABLE'
          if (storeDown) rootsSeen = seen.roots
          if (!storeDown || !rootsWaiting)
            audit.write('ca_keys_reload_failed', {
              error: (err as Error).message,
              kept: 'previous roots and TLS certificate',
              ...(storeDown ? {retry: 'when the store answers'} : {}),
            })
          rootsWaiting = storeDown
        }
      }
      seen = {keys: keysSeen, roots: rootsSeen}
      return changed
    }
    // after the one before, however it ended: a look that threw must not leave every later one skipped
    keysQueued = keysLoading = keysLoading.then(look, look)
    return keysQueued
  }

  const reload = async (): Promise<boolean> => {
    await reloadKeys()
    let next: Awaited<ReturnType<typeof loadConfig>>
    try {
      next = await loadConfig(opts.configPath)
      // read at start only (the server is built from them): say so rather than seem to apply them
      // (dnsNames: against the names of the TLS certificate in force, which an issue since the start changed)
      next.warnings.push(...startOnlyChanges(config, next.config, subjectAltNames(parseCert(material.tls.certPem))))
      runtime.policy = {
        config: next.config,
        verifier: new TokenVerifier(next.config.provisioners, verifierDeps, runtime.policy.verifier),
      }
      await pool?.setPolicy(next.config)
    } catch (err) {
      const e = err as SshcaError
      recordReload('ca.yaml was refused and the previous policy kept', 'policy_reload_failed', {
        config: opts.configPath,
        error: e.message,
        problems: e.details?.problems ?? [],
        kept: 'previous policy',
      })
      return false
    }
    // outside the try: a line that cannot be written is not a refused ca.yaml (the new policy is in force)
    recordReload('the new policy is in force', 'policy_loaded', {
      config: next.config.path,
      ...policyFields(next.config),
      warnings: next.warnings,
      reload: true,
    })
    if (next.warnings.length) opts.onWarnings?.(next.warnings, true)
    return true
  }
  /** A reload's audit line; when it cannot be written (a full disk), the error says what the reload did. */
  const recordReload = (outcome: string, event: AuditEvent, fields: Record<string, unknown>): void => {
    try {
      audit.write(event, fields)
    } catch (err) {
      throw new SshcaError('ERR_STORE_UNAVAILABLE', `${outcome}, unrecorded: ${(err as Error).message}`, {cause: err})
    }
  }

  // a reload whose outcome cannot be audited (a full disk, the CA stopping under it) is said on stderr:
  // a rejection nobody handles would end the process, and with it a CA that serves
  const onHup = (): void =>
    void reload().catch((err: unknown) => opts.onWarnings?.([`SIGHUP: ${(err as Error).message}`], true))
  if (opts.handleSignals) process.on('SIGHUP', onHup)
  // every minute: the spent-token table stays at about rate × token lifetime, and each purge is small
  const purge = setInterval(() => void purgeSpentTokens(store, clock()).catch(() => undefined), PURGE_EVERY_MS)
  purge.unref()
  const renewEveryMs = opts.tlsRenewIntervalMs ?? TLS_RENEW_EVERY_MS
  // one look at a time: a look waiting for the lock (another replica renewing) is not joined by the next
  let renewing = false
  const renew = setInterval(() => {
    if (renewing) return
    renewing = true
    void renewTls()
      .catch((err: unknown) => {
        // a look that ends after close(): the store and the audit log were closed under it, nothing to say
        if (closed) return
        // the certificate still serves: said, and tried again at the next look, while it has days left
        audit.write('tls_certificate_renewal_failed', {
          error: (err as Error).message.slice(0, 500),
          not_after: material.tls.notAfter.toISOString(),
          next_attempt_in_seconds: Math.round(renewEveryMs / 1000),
        })
      })
      // the audit log cannot be written (a full disk): the requests answer that with 503s, the process serves on
      .catch(() => undefined)
      .finally(() => (renewing = false))
  }, renewEveryMs)
  renew.unref()
  // admin commands write their events to the store; the server copies them to its audit sink
  let forwarding: Promise<unknown> = forwardAdminEvents(store, audit).catch(() => undefined)
  const forward = setInterval(() => {
    forwarding = forwarding.then(() => forwardAdminEvents(store, audit)).catch(() => undefined)
  }, opts.adminEventsIntervalMs ?? 1000)
  forward.unref()
  const keysTimer = setInterval(() => void reloadKeys().catch(() => undefined), opts.keysIntervalMs ?? 5000)
  keysTimer.unref()
  // the emergency stop reaches every replica through the store; ca.yaml changed with it, so re-read that too
  let watching: Promise<unknown> = Promise.resolve()
  const watch = setInterval(() => {
    watching = watching.then(() => refreshSafety()).catch(() => undefined)
  }, opts.safetyIntervalMs ?? 1000)
  watch.unref()
  async function refreshSafety(): Promise<void> {
    const next = await readSafety(store)
    const before = runtime.safety
    runtime.safety = next
    // the worker threads refuse on the same state (a stop, a restore mark moved by another replica)
    if (JSON.stringify(before) !== JSON.stringify(next)) pool?.setSafety(next)
    if (JSON.stringify(before?.stop ?? null) === JSON.stringify(next.stop)) return
    audit.write('issuance_state_applied', {
      issuing: next.stop === null,
      ...(next.stop ? {stopped_at: new Date(next.stop.at * 1000).toISOString(), reason: next.stop.reason} : {}),
      pid: process.pid,
    })
    await reload()
  }
  async function renewTls(): Promise<void> {
    if (material.tls.notAfter.getTime() - clock() > TLS_RENEW_WITHIN_DAYS * 86_400_000) return
    // under the lock: of N replicas sharing the directory one renews, the others load its certificate
    const fresh = await store.exclusive('tls-renewal', () =>
      // stopped while the look waited for the lock: a closed CA writes nothing to its directory
      closed
        ? Promise.reject(new Error('the CA stopped'))
        : loadTls(config.dir, opts.password, runtime.policy.config.dnsNames, TLS_RENEW_WITHIN_DAYS, {now: clock()}),
    )
    material.tls = fresh.tls
    if (app)
      (app.server as unknown as TlsServer).setSecureContext(
        tlsContext({key: fresh.tls.keyPem, cert: fresh.tls.certPem}),
      )
    pool?.setTls(fresh.tls)
    audit.write('tls_certificate_renewed', {
      not_after: fresh.tls.notAfter.toISOString(),
      by_this_replica: fresh.renewed,
    })
  }

  let closed = false
  return {
    url,
    port,
    ...(metrics ? {metricsUrl: metrics.url} : {}),
    runtime,
    app,
    pool,
    reload,
    reloadKeys,
    async close() {
      if (closed) return
      closed = true
      if (opts.handleSignals) process.off('SIGHUP', onHup)
      clearInterval(purge)
      clearInterval(renew)
      clearInterval(forward)
      clearInterval(keysTimer)
      clearInterval(watch)
      try {
        if (app) await closeWithin(app, closeDeadlineSeconds(config, runtime.policy.config) * 1000)
        await pool?.close()
        await metrics?.close()
        await watching
        await forwarding
        await forwardAdminEvents(store, audit).catch(() => undefined)
        // the refusals counted in the last second first: server_stopped is the last line
        audit.flush()
        audit.write('server_stopped', {url})
      } finally {
        // each closed whatever failed before it: a server that would not close keeps no audit line back
        await store
          .close()
          .finally(() => audit.close())
          .finally(() => keysLoading.catch(() => undefined))
          .finally(() => registry.close())
      }
    },
  }
}

async function readSafety(store: Store): Promise<SafetyState> {
  const [stop, restoredAt] = await Promise.all([store.issuanceStop(), store.restoredAt()])
  return {stop, restoredAt}
}

/** Copies the admin events the audit sink has not seen yet; several replicas share one cursor. */
export async function forwardAdminEvents(store: Store, audit: AuditLog): Promise<number> {
  let total = 0
  for (;;) {
    const cursor = await store.auditCursor()
    const events = await store.adminEventsAfter(cursor, 100)
    if (events.length === 0) return total
    for (const e of events)
      audit.write(e.event as AuditEvent, {
        ...e.fields,
        admin_event_id: e.id,
        recorded_at: new Date(e.at * 1000).toISOString(),
      })
    total += events.length
    // another replica moved the cursor first: it wrote these too (at least once), stop here
    if (!(await store.advanceAuditCursor(cursor, events[events.length - 1]!.id))) return total
  }
}

/** A listen failure a person can act on: which address, and what to do about it. */
export function listenError(err: unknown, address: string): unknown {
  const code = (err as NodeJS.ErrnoException).code
  const hint = 'choose another with --address HOST:PORT (or address: in ca.yaml)'
  if (code === 'EADDRINUSE')
    return new SshcaError(
      'ERR_LISTEN',
      `cannot listen on ${address}: another process is using it (another sshca ca serve?)`,
      {cause: err, hint: `stop that process (ss -ltnp 'sport = :${address.split(':').pop()}' shows it), or ${hint}`},
    )
  if (code === 'EACCES')
    return new SshcaError('ERR_LISTEN', `cannot listen on ${address}: ports below 1024 need privileges`, {
      cause: err,
      hint: `use a port above 1024 (the default is 9000), or ${hint}`,
    })
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND')
    return new SshcaError('ERR_LISTEN', `cannot listen on ${address}: this machine has no such address`, {
      cause: err,
      hint: `use one of its addresses, 0.0.0.0 for all, or ${hint}`,
    })
  return err
}
