/**
 * A running CA: config, keys, store and audit log opened; the app listening over HTTPS; SIGHUP
 * reloading ca.yaml (an invalid file is logged and the old policy kept); timers that purge spent
 * token ids and renew the TLS certificate. Stopped with close().
 */
import {setInterval} from 'node:timers'
import type {FastifyInstance} from 'fastify'
import type {Server as TlsServer} from 'node:tls'
import {SshcaError} from '../errors.ts'
import {dirname} from 'node:path'
import {privateDir} from '../util/fs.ts'
import {parseHostPort} from '../util/net.ts'
import {buildApp} from './app.ts'
import {createAuditLog, type AuditLog} from './audit.ts'
import {loadConfig, resolveInDir, type CaConfig} from './config.ts'
import {loadMaterial} from './material.ts'
import {TokenVerifier, type VerifierDeps} from './oidc.ts'
import type {CaRuntime} from './runtime.ts'
import type {Store} from './store.ts'
import {SqliteStore} from './store-sqlite.ts'

export interface StartOptions {
  configPath: string
  password: string
  /** Overrides ca.yaml's address (tests use 127.0.0.1:0). */
  address?: string
  /** Overrides ca.yaml's audit destination. */
  auditFile?: string
  verifier?: VerifierDeps
  clock?: () => number
  /** Install SIGHUP (reload) handling; `ca serve` does, in-process tests do not. */
  handleSignals?: boolean
}

export interface RunningCa {
  url: string
  port: number
  runtime: CaRuntime
  app: FastifyInstance
  /** Re-reads ca.yaml; true when the new policy is in force. */
  reload(): Promise<boolean>
  close(): Promise<void>
}

/** How often spent token ids that have expired are deleted. */
export const PURGE_EVERY_MS = 60_000

export function openStore(config: CaConfig): Store {
  return new SqliteStore(resolveInDir(config, config.db.path), {durability: config.db.durability})
}

export async function startCa(opts: StartOptions): Promise<RunningCa> {
  const {config, warnings} = await loadConfig(opts.configPath)
  const material = await loadMaterial(config.dir, opts.password, config.dnsNames)
  const auditDest = opts.auditFile ?? (config.audit.file === '-' ? '-' : resolveInDir(config, config.audit.file))
  const audit: AuditLog = createAuditLog(auditDest)
  await privateDir(dirname(resolveInDir(config, config.db.path)))
  const store = openStore(config)
  const clock = opts.clock ?? Date.now
  const runtime: CaRuntime = {
    policy: {config, verifier: new TokenVerifier(config.provisioners, {...opts.verifier, clock})},
    material,
    store,
    audit,
    clock,
  }
  if (material.tlsRenewed) audit.write('tls_certificate_renewed', {not_after: material.tls.notAfter.toISOString(), names: config.dnsNames})
  const app = buildApp(runtime, {key: material.tls.keyPem, cert: material.tls.certPem})
  const hp = parseHostPort(opts.address ?? config.address)
  if (!hp) throw new SshcaError('ERR_CA_CONFIG', `address "${opts.address ?? config.address}" is not host:port`)
  await app.listen({host: hp.host, port: hp.port})
  const port = (app.server.address() as {port: number}).port
  const host = hp.host.includes(':') ? `[${hp.host}]` : hp.host
  const url = `https://${host}:${port}`

  const policyFields = (c: CaConfig) => ({
    provisioners: c.provisioners.map((p) => ({name: p.name, issuer: p.issuer, audience: p.audience, rules: p.rules.map((r) => r.name)})),
    disabled: c.disabled,
  })
  audit.write('policy_loaded', {config: config.path, ...policyFields(config), warnings})
  audit.write('server_started', {url, root_fingerprint: material.rootFingerprint, user_ca: material.userCa.publicKey.fingerprint(), host_ca: material.hostCa.publicKey.fingerprint(), pid: process.pid})

  const reload = async (): Promise<boolean> => {
    try {
      const next = await loadConfig(opts.configPath)
      runtime.policy = {config: next.config, verifier: new TokenVerifier(next.config.provisioners, {...opts.verifier, clock}, runtime.policy.verifier)}
      audit.write('policy_loaded', {config: next.config.path, ...policyFields(next.config), warnings: next.warnings, reload: true})
      return true
    } catch (err) {
      const e = err as SshcaError
      audit.write('policy_reload_failed', {config: opts.configPath, error: e.message, problems: e.details?.problems ?? [], kept: 'previous policy'})
      return false
    }
  }

  const onHup = (): void => void reload()
  if (opts.handleSignals) process.on('SIGHUP', onHup)
  // every minute: the spent-token table stays at about rate × token lifetime, and each purge is small
  const purge = setInterval(() => void store.purgeExpiredTokens(Math.floor(clock() / 1000)).catch(() => undefined), PURGE_EVERY_MS)
  purge.unref()
  const renew = setInterval(() => void renewTls().catch(() => undefined), 12 * 3600_000)
  renew.unref()
  async function renewTls(): Promise<void> {
    if (material.tls.notAfter.getTime() - clock() > 30 * 86_400_000) return
    const fresh = await loadMaterial(config.dir, opts.password, runtime.policy.config.dnsNames)
    material.tls = fresh.tls
    ;(app.server as unknown as TlsServer).setSecureContext({key: fresh.tls.keyPem, cert: fresh.tls.certPem})
    audit.write('tls_certificate_renewed', {not_after: fresh.tls.notAfter.toISOString()})
  }

  let closed = false
  return {
    url,
    port,
    runtime,
    app,
    reload,
    async close() {
      if (closed) return
      closed = true
      if (opts.handleSignals) process.off('SIGHUP', onHup)
      clearInterval(purge)
      clearInterval(renew)
      await app.close()
      audit.write('server_stopped', {url})
      await store.close()
      await audit.close()
    },
  }
}
