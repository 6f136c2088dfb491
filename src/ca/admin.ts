/**
 * What an operator does on the CA box, next to a running CA: mint host enrollment tokens, revoke
 * certificates, list hosts. These open the same sealed keys and the same store as `ca serve` (SQLite
 * in WAL mode takes a second connection while the server runs).
 */
import {readFile} from 'node:fs/promises'
import {SshcaError} from '../errors.ts'
import {createAuditLog} from './audit.ts'
import {loadConfig, resolveInDir, type CaConfig} from './config.ts'
import {mintEnrollmentToken, type EnrollmentToken} from './host.ts'
import {readSealedKey} from './keystore.ts'
import {caPaths} from './layout.ts'
import {certFingerprint, pemToDer} from './pki.ts'
import {SqliteStore} from './store-sqlite.ts'

async function withStore<T>(config: CaConfig, fn: (store: SqliteStore) => Promise<T>): Promise<T> {
  const store = new SqliteStore(resolveInDir(config, config.db.path), {background: false, durability: config.db.durability})
  try {
    return await fn(store)
  } finally {
    await store.close()
  }
}

export async function hostToken(o: {configPath: string; password: string; hostname: string; principals?: string[]; ttlSeconds: number; clock?: () => number}): Promise<EnrollmentToken & {hostname: string}> {
  const {config} = await loadConfig(o.configPath)
  const p = caPaths(config.dir)
  const key = await readSealedKey(p.enrollmentKey, o.password)
  const rootFingerprint = certFingerprint(pemToDer(await readFile(p.rootCert, 'utf8')))
  try {
    const t = await mintEnrollmentToken(key, {rootFingerprint, hostname: o.hostname, ...(o.principals ? {principals: o.principals} : {}), ttlSeconds: o.ttlSeconds, now: Math.floor((o.clock ?? Date.now)() / 1000)})
    return {...t, hostname: o.hostname}
  } catch (err) {
    if (err instanceof TypeError) throw new SshcaError('ERR_USAGE', err.message, {hint: 'host names and principals use letters, digits and . _ @ : / -'})
    throw err
  }
}

export interface RevokeResult {
  serial: string | null
  keyId: string | null
  reason: string
  /** The certificate the serial names, when this CA issued it. */
  known: {keyId: string; principals: string[]; certType: string; validBefore: string} | null
}

export async function revoke(o: {configPath: string; serial?: string; keyId?: string; reason?: string; clock?: () => number}): Promise<RevokeResult> {
  if ((o.serial === undefined) === (o.keyId === undefined)) throw new SshcaError('ERR_USAGE', 'give exactly one of --serial and --key-id')
  if (o.serial !== undefined && !/^[1-9]\d{0,19}$/.test(o.serial)) throw new SshcaError('ERR_USAGE', `--serial "${o.serial}" is not a certificate serial (a positive decimal number)`)
  const serial = o.serial === undefined ? null : BigInt(o.serial)
  if (serial !== null && serial > 0xffff_ffff_ffff_ffffn) throw new SshcaError('ERR_USAGE', '--serial is larger than 64 bits')
  const {config} = await loadConfig(o.configPath)
  const reason = o.reason ?? 'unspecified'
  const now = Math.floor((o.clock ?? Date.now)() / 1000)
  return withStore(config, async (store) => {
    const rec = serial === null ? undefined : await store.findCertificate(serial)
    await store.revoke({serial, keyId: o.keyId ?? null, reason, revokedAt: now})
    const result: RevokeResult = {
      serial: serial?.toString() ?? null,
      keyId: o.keyId ?? null,
      reason,
      known: rec ? {keyId: rec.keyId, principals: rec.principals, certType: rec.certType, validBefore: new Date(Number(rec.validBefore) * 1000).toISOString()} : null,
    }
    if (config.audit.file !== '-') {
      const audit = createAuditLog(resolveInDir(config, config.audit.file))
      audit.write('certificate_revoked', {...result})
      await audit.close()
    }
    return result
  })
}

export async function hosts(o: {configPath: string; clock?: () => number}): Promise<{hosts: {principals: string[]; serial: string; keyId: string; validBefore: string; keyFingerprint: string}[]}> {
  const {config} = await loadConfig(o.configPath)
  const now = Math.floor((o.clock ?? Date.now)() / 1000)
  return withStore(config, async (store) => {
    const out = []
    for (const c of await store.currentHostCertificates(now)) {
      if (await store.isRevoked(c.serial, c.keyId)) continue
      out.push({principals: c.principals, serial: c.serial.toString(), keyId: c.keyId, validBefore: new Date(Number(c.validBefore) * 1000).toISOString(), keyFingerprint: c.keyFingerprint})
    }
    return {hosts: out}
  })
}
