/**
 * `sshca ca intermediate`: a new X.509 intermediate under the same root, for when the old one nears
 * its end (or its key is in doubt). Clients pin the root's fingerprint, not the intermediate, so they
 * keep working without bootstrapping again; the API's TLS certificate is issued anew from the new
 * intermediate (its chain carries the intermediate to clients).
 *
 * The root key comes from --root-key (an offline root, brought back for this) or, when the CA keeps
 * it, from the CA directory. It must be the key of the CA's root certificate: any other is refused
 * before anything is written. It is held in memory only for the signature.
 */
import {readFile, rename, rm} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import {SshcaError} from '../errors.ts'
import {exists, writeFileAtomic} from '../util/fs.ts'
import {loadConfig} from './config/config.ts'
import {caPaths} from './config/layout.ts'
import {readSealedKey, writeSealedKey} from './keys/keystore.ts'
import {certFingerprint, createIntermediate, createTlsCert, keyMatchesCert, parseCert, pemToDer} from './keys/pki.ts'
import {withStore} from './store/open.ts'

export interface IntermediateResult {
  rootFingerprint: string
  rootKey: 'offline' | 'ca-directory'
  previous: {fingerprint: string; notAfter: string}
  intermediate: {fingerprint: string; notBefore: string; notAfter: string}
  tls: {notAfter: string; names: string[]}
  next: string[]
}

const MIN_DAYS = 30
const MAX_DAYS = 10 * 365

export async function issueIntermediate(o: {
  configPath: string
  password: string
  rootKeyFile?: string
  validDays?: number
  clock?: () => number
}): Promise<IntermediateResult> {
  const {config} = await loadConfig(o.configPath)
  const p = caPaths(config.dir)
  const days = o.validDays ?? MAX_DAYS - 1
  if (!Number.isInteger(days) || days < MIN_DAYS || days > MAX_DAYS)
    throw new SshcaError('ERR_USAGE', `--days must be between ${MIN_DAYS} and ${MAX_DAYS}`)
  const keyFile = o.rootKeyFile ?? p.rootKey
  if (o.rootKeyFile === undefined && !(await exists(p.rootKey))) {
    throw new SshcaError('ERR_USAGE', `this CA's root key is offline (no ${p.rootKey}): give --root-key FILE`, {
      hint: 'bring the offline root key file to this box for the command, then take it away again',
    })
  }
  // during a root rotation the TLS chain carries cross-certificates this command would drop, and the
  // next root has its own intermediate already: finish the rotation first
  if ((await exists(p.rootNextCert)) || (await exists(p.rootPreviousCert))) {
    throw new SshcaError(
      'ERR_ROTATION_STATE',
      'a root rotation is in progress: a new intermediate now would drop the chain that lets clients pinning either root connect',
      {hint: 'finish it first (sshca ca rotate activate / retire --kind root), then issue the intermediate'},
    )
  }
  const rootPem = await readFile(p.rootCert, 'utf8')
  const root = parseCert(rootPem)
  const rootKey = await readSealedKey(keyFile, o.password)
  if (!keyMatchesCert(rootKey, root)) {
    throw new SshcaError(
      'ERR_INPUT',
      `${keyFile} is not the key of this CA's root (${certFingerprint(pemToDer(rootPem))}); nothing was changed`,
      {hint: 'give the root key written by `sshca ca init --offline-root` for this CA'},
    )
  }
  const now = new Date((o.clock ?? Date.now)())
  if (root.notAfter.getTime() - now.getTime() < MIN_DAYS * 86_400_000) {
    throw new SshcaError(
      'ERR_INPUT',
      `the root itself expires ${root.notAfter.toISOString()}: an intermediate under it would not outlive it`,
      {hint: 'a new root means every client bootstraps again with its fingerprint'},
    )
  }
  const oldPem = await readFile(p.intermediateCert, 'utf8')
  const old = parseCert(oldPem)
  const fresh = await createIntermediate(config.name, {cert: root, key: rootKey}, now, days)
  const tls = await createTlsCert(config.dnsNames, fresh)
  // all four staged (written and synced) beside their places first, then renamed: a failure while
  // writing leaves the CA as it was; only a crash among the renames could pair a new key with an old
  // certificate, and running the command again repairs that
  const staged: [string, string][] = []
  const stage = async (path: string, write: (tmp: string) => Promise<void>) => {
    const tmp = join(dirname(path), `.${basename(path)}.new`)
    await write(tmp)
    staged.push([tmp, path])
  }
  try {
    await stage(p.intermediateKey, (t) => writeSealedKey(t, fresh.key, o.password))
    await stage(p.intermediateCert, (t) => writeFileAtomic(t, fresh.pem))
    await stage(p.tlsKey, (t) => writeSealedKey(t, tls.key, o.password))
    await stage(p.tlsCert, (t) => writeFileAtomic(t, tls.pem + fresh.pem))
  } catch (err) {
    await Promise.all(staged.map(([tmp]) => rm(tmp, {force: true})))
    throw err
  }
  for (const [tmp, path] of staged) await rename(tmp, path)
  const result: IntermediateResult = {
    rootFingerprint: certFingerprint(root.rawData),
    rootKey: o.rootKeyFile === undefined ? 'ca-directory' : 'offline',
    previous: {fingerprint: certFingerprint(old.rawData), notAfter: old.notAfter.toISOString()},
    intermediate: {
      fingerprint: certFingerprint(fresh.der),
      notBefore: fresh.cert.notBefore.toISOString(),
      notAfter: fresh.cert.notAfter.toISOString(),
    },
    tls: {notAfter: tls.cert.notAfter.toISOString(), names: [...config.dnsNames]},
    next: [
      'nothing to restart: a running CA (every replica sharing this directory) serves the new TLS chain within seconds, or at once on SIGHUP',
      ...(o.rootKeyFile === undefined ? [] : [`take ${o.rootKeyFile} off this box again`]),
    ],
  }
  await withStore(config, 'admin', (store) =>
    store.recordAdminEvent(
      'intermediate_issued',
      {
        root_fingerprint: result.rootFingerprint,
        root_key: result.rootKey,
        previous: result.previous,
        intermediate: result.intermediate,
      },
      Math.floor(now.getTime() / 1000),
    ),
  )
  return result
}
