/** The CA's keys and certificates, opened with the password once at start-up and kept in memory. */
import type {KeyObject} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {SshcaError} from '../../errors.ts'
import {keySigner, type Signer} from '../../ssh/signature.ts'
import {writeFileAtomic} from '../../util/fs.ts'
import {caPaths} from '../config/layout.ts'
import {readSealedKey, writeSealedKey} from './keystore.ts'
import {certFingerprint, createTlsCert, parseCert, pemToDer, subjectAltNames} from './pki.ts'

export interface CaMaterial {
  rootPem: string
  rootFingerprint: string
  intermediatePem: string
  /** Signs step's X.509 identity certificates (and renews the TLS certificate). */
  intermediateKey: KeyObject
  tls: {certPem: string; keyPem: string; notAfter: Date}
  userCa: Signer
  hostCa: Signer
  enrollmentKey: KeyObject
  /**
   * The SSH CA keys behind userCa and hostCa when they are in memory (loadMaterial), handed to the
   * worker threads (src/ca/workers.ts), which sign with Signers of their own.
   */
  caKeys?: {user: KeyObject; host: KeyObject}
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new SshcaError('ERR_FILE_NOT_FOUND', `missing CA file ${path}`, {hint: 'is --config pointing at a directory made by `sshca ca init`?'})
    throw err
  }
}

/**
 * Opens every key. When the TLS certificate expires within `renewWithinDays` or no longer covers
 * `dnsNames`, a new one is issued from the intermediate and written back (atomically).
 */
export async function loadMaterial(dir: string, password: string, dnsNames: readonly string[], renewWithinDays = 30): Promise<CaMaterial & {tlsRenewed: boolean}> {
  const p = caPaths(dir)
  const [rootPem, intermediatePem, tlsPem] = await Promise.all([readText(p.rootCert), readText(p.intermediateCert), readText(p.tlsCert)])
  const [userKey, hostKey, enrollmentKey, tlsKey, intermediateKey] = await Promise.all([
    readSealedKey(p.userCaKey, password),
    readSealedKey(p.hostCaKey, password),
    readSealedKey(p.enrollmentKey, password),
    readSealedKey(p.tlsKey, password),
    readSealedKey(p.intermediateKey, password),
  ])
  let tls = {certPem: tlsPem, key: tlsKey}
  let tlsRenewed = false
  const leaf = parseCert(tlsPem)
  const names = subjectAltNames(leaf)
  const expiresSoon = leaf.notAfter.getTime() - Date.now() < renewWithinDays * 86_400_000
  const namesChanged = dnsNames.length !== names.length || dnsNames.some((n) => !names.includes(n))
  if (expiresSoon || namesChanged) {
    const fresh = await createTlsCert(dnsNames, {cert: parseCert(intermediatePem), key: intermediateKey})
    await writeSealedKey(p.tlsKey, fresh.key, password)
    await writeFileAtomic(p.tlsCert, fresh.pem + intermediatePem)
    tls = {certPem: fresh.pem + intermediatePem, key: fresh.key}
    tlsRenewed = true
  }
  return {
    rootPem,
    rootFingerprint: certFingerprint(pemToDer(rootPem)),
    intermediatePem,
    intermediateKey,
    tls: {certPem: tls.certPem, keyPem: tls.key.export({type: 'pkcs8', format: 'pem'}) as string, notAfter: parseCert(tls.certPem).notAfter},
    userCa: keySigner(userKey),
    hostCa: keySigner(hostKey),
    enrollmentKey,
    caKeys: {user: userKey, host: hostKey},
    tlsRenewed,
  }
}
