/**
 * The X.509 root clients pin, rotated without breaking them (`ca rotate … --kind root`):
 *   prepare   a new root (subject "… Root CA 2"), a new intermediate under it, and a
 *             cross-certificate: the new root's subject and key signed by the old root. /roots lists
 *             both roots and the cross-certificate; /root/{fp} serves either. Clients learn the new
 *             root at their next refresh: vouched for by the root they pin.
 *   activate  the API's TLS certificate comes from the new intermediate's key. Until retirement the
 *             chain presented is [leaf, the new intermediate as issued by the OLD root, the old root
 *             as certified by the NEW root]: a client pinning only the old root verifies it (leaf →
 *             intermediate → old root: one CA below it, within the old root's path length of 1), and
 *             so does one pinning only the new root (→ old root's twin → new root, whose path length
 *             is 2). The old root's key is then deleted: nothing needs it any more.
 *   retire    the old root, its twins and the cross-certificate are dropped; the chain is [leaf, the
 *             new intermediate as issued by the new root], and only the new root is published.
 * Enrollment and proof-of-possession tokens name the CA by a root fingerprint; every published
 * root's is accepted, so hosts keep renewing across the rotation.
 */
import {readFile, rename, rm} from 'node:fs/promises'
import {SshcaError} from '../../errors.ts'
import {exists, writeFileAtomic} from '../../util/fs.ts'
import {caPaths} from '../config/layout.ts'
import {readSealedKey, writeSealedKey} from './keystore.ts'
import {checkOfflineKeyPath, writeOfflineKey} from './offline.ts'
import {
  certFingerprint,
  createIntermediate,
  createRoot,
  createTlsCert,
  crossCertify,
  keyMatchesCert,
  parseCert,
  pemToDer,
} from './pki.ts'

export type RootState = 'active' | 'next' | 'previous'

export interface PublishedRoot {
  pem: string
  fingerprint: string
  state: RootState
  subject: string
  notAfter: Date
}

export interface RootSet {
  /** The active root (what the TLS chain ends at, unless a cross-certificate extends it). */
  rootPem: string
  rootFingerprint: string
  intermediatePem: string
  /** Every published root, the active one first. */
  roots: PublishedRoot[]
  /** Certificates of a newer root issued by an older one (during a rotation). */
  crossPems: string[]
}

async function optional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

async function required(path: string): Promise<string> {
  const text = await optional(path)
  if (text === undefined)
    throw new SshcaError('ERR_FILE_NOT_FOUND', `missing CA file ${path}`, {
      hint: 'is --config pointing at a directory made by `sshca ca init`?',
    })
  return text
}

const published = (pem: string, state: RootState): PublishedRoot => {
  const c = parseCert(pem)
  return {pem, fingerprint: certFingerprint(pemToDer(pem)), state, subject: c.subject, notAfter: c.notAfter}
}

export async function loadRoots(dir: string): Promise<RootSet> {
  const p = caPaths(dir)
  const [rootPem, intermediatePem, next, previous, cross] = await Promise.all([
    required(p.rootCert),
    required(p.intermediateCert),
    optional(p.rootNextCert),
    optional(p.rootPreviousCert),
    optional(p.rootCrossCert),
  ])
  const roots = [
    published(rootPem, 'active'),
    ...(next ? [published(next, 'next')] : []),
    ...(previous ? [published(previous, 'previous')] : []),
  ]
  return {rootPem, rootFingerprint: roots[0]!.fingerprint, intermediatePem, roots, crossPems: cross ? [cross] : []}
}

/** What follows the TLS leaf in the chain the API presents: the intermediate, or during an overlap the twins that verify for either root. */
export async function chainTail(dir: string): Promise<string> {
  const p = caPaths(dir)
  const [intermediate, twin, reverse] = await Promise.all([
    required(p.intermediateCert),
    optional(p.intermediateTwinCert),
    optional(p.rootReverseCert),
  ])
  return twin && reverse && (await exists(p.rootPreviousCert)) ? twin + reverse : intermediate
}

export interface RootRotation {
  step: 'prepare' | 'activate' | 'retire'
  roots: {fingerprint: string; state: RootState; subject: string; notAfter: string}[]
}

const view = (s: RootSet): RootRotation['roots'] =>
  s.roots.map((r) => ({
    fingerprint: r.fingerprint,
    state: r.state,
    subject: r.subject,
    notAfter: r.notAfter.toISOString(),
  }))

export async function rootStatus(dir: string): Promise<RootRotation['roots']> {
  return view(await loadRoots(dir))
}

/**
 * An offline root (`ca init --offline-root`) stays offline across a rotation: the old root's key is
 * read from `rootKeyFile` and the new root's key is written to `nextRootKeyFile`, never into the CA
 * directory. Either may be given for an online root too (the new root then goes offline).
 */
export interface OfflineRootKeys {
  rootKeyFile?: string | undefined
  nextRootKeyFile?: string | undefined
}

/** prepare: the next root, its intermediate and the old root's cross-certificate of it. */
export async function prepareRoot(
  dir: string,
  name: string,
  password: string,
  now = new Date(),
  offline: OfflineRootKeys = {},
): Promise<RootRotation> {
  const p = caPaths(dir)
  if (await exists(p.rootNextCert))
    throw new SshcaError('ERR_ROTATION_STATE', 'a next root is already prepared', {
      hint: 'activate it: sshca ca rotate activate --kind root',
    })
  if (await exists(p.rootPreviousCert))
    throw new SshcaError('ERR_ROTATION_STATE', 'the previous root is still published', {
      hint: 'retire it first: sshca ca rotate retire --kind root',
    })
  const current = parseCert(await required(p.rootCert))
  const generation = Number(/ Root CA (\d+)$/.exec(current.subjectName.getField('CN')[0] ?? '')?.[1] ?? 1) + 1
  const online = await exists(p.rootKey)
  if (!online && offline.rootKeyFile === undefined) {
    throw new SshcaError('ERR_USAGE', `this CA's root key is offline (no ${p.rootKey}): give --root-key FILE`, {
      hint: 'bring the offline root key file to this box for the command, then take it away again',
    })
  }
  if (!online && offline.nextRootKeyFile === undefined) {
    throw new SshcaError(
      'ERR_USAGE',
      "this CA's root is offline, so the new root's key must be too: give --next-root-key FILE (a new file outside the CA directory)",
      {hint: 'write it to the removable media the current root key is on'},
    )
  }
  const keyFile = offline.rootKeyFile ?? p.rootKey
  const oldKey = await readSealedKey(keyFile, password)
  if (!keyMatchesCert(oldKey, current)) {
    throw new SshcaError(
      'ERR_INPUT',
      `${keyFile} is not the key of this CA's root (${certFingerprint(current.rawData)}); nothing was changed`,
      {hint: 'give the root key written by `sshca ca init --offline-root` (or the last root rotation) for this CA'},
    )
  }
  const nextKeyFile =
    offline.nextRootKeyFile === undefined
      ? undefined
      : await checkOfflineKeyPath(offline.nextRootKeyFile, dir, '--next-root-key')
  const root = await createRoot(name, now, generation)
  const intermediate = await createIntermediate(`${name} ${generation}`, root, now)
  // the old root vouches for the new one (what clients adopt), and issues the new intermediate's twin;
  // the new root certifies the old one: the overlap's TLS chain verifies for clients pinning either
  const cross = await crossCertify(root.cert, {cert: current, key: oldKey}, 2, now)
  const twin = await crossCertify(intermediate.cert, {cert: current, key: oldKey}, 0, now)
  const reverse = await crossCertify(current, {cert: root.cert, key: root.key}, 1, now)
  const undoOffline = nextKeyFile === undefined ? undefined : await writeOfflineKey(nextKeyFile, root.key, password)
  try {
    if (nextKeyFile === undefined) await writeSealedKey(p.rootNextKey, root.key, password)
    await writeSealedKey(p.intermediateNextKey, intermediate.key, password)
    await writeFileAtomic(p.intermediateNextCert, intermediate.pem)
    await writeFileAtomic(p.intermediateTwinCert, twin.pem)
    await writeFileAtomic(p.rootReverseCert, reverse.pem)
    await writeFileAtomic(p.rootCrossCert, cross.pem)
    // last: its presence is what "prepared" means
    await writeFileAtomic(p.rootNextCert, root.pem)
  } catch (err) {
    // not prepared: the offline key of a root nobody will see must not be kept as if it mattered
    await undoOffline?.()
    throw err
  }
  return {step: 'prepare', roots: view(await loadRoots(dir))}
}

/** activate: the new root and intermediate take over; the TLS certificate is reissued with the cross-certificate in its chain. */
export async function activateRoot(
  dir: string,
  dnsNames: readonly string[],
  password: string,
  now = new Date(),
): Promise<RootRotation> {
  const p = caPaths(dir)
  if (!(await exists(p.rootNextCert)))
    throw new SshcaError('ERR_ROTATION_STATE', 'no next root is prepared', {
      hint: 'prepare one first: sshca ca rotate prepare --kind root',
    })
  const intermediateKey = await readSealedKey(p.intermediateNextKey, password)
  const intermediatePem = await required(p.intermediateNextCert)
  const [twin, reverse] = await Promise.all([required(p.intermediateTwinCert), required(p.rootReverseCert)])
  const tls = await createTlsCert(dnsNames, {cert: parseCert(intermediatePem), key: intermediateKey}, 365, now)
  await rename(p.rootCert, p.rootPreviousCert)
  await rename(p.rootNextCert, p.rootCert)
  // the old root's key is gone: nothing needs it any more. An offline next root left no key here,
  // and an online old root's key is then deleted rather than kept beside an offline new one
  if (await exists(p.rootNextKey)) await rename(p.rootNextKey, p.rootKey)
  else await rm(p.rootKey, {force: true})
  await rename(p.intermediateNextCert, p.intermediateCert)
  await rename(p.intermediateNextKey, p.intermediateKey)
  await writeSealedKey(p.tlsKey, tls.key, password)
  await writeFileAtomic(p.tlsCert, tls.pem + twin + reverse)
  return {step: 'activate', roots: view(await loadRoots(dir))}
}

/** retire: the old root and the cross-certificate are no longer published or presented. */
export async function retireRoot(dir: string): Promise<RootRotation> {
  const p = caPaths(dir)
  if (!(await exists(p.rootPreviousCert)))
    throw new SshcaError('ERR_ROTATION_STATE', 'no previous root to retire', {
      hint: 'activate a new root first: sshca ca rotate activate --kind root',
    })
  const [tls, intermediate] = await Promise.all([required(p.tlsCert), required(p.intermediateCert)])
  const leaf = tls.slice(0, tls.indexOf('-----END CERTIFICATE-----') + '-----END CERTIFICATE-----'.length) + '\n'
  await writeFileAtomic(p.tlsCert, leaf + intermediate)
  for (const f of [p.rootPreviousCert, p.rootCrossCert, p.intermediateTwinCert, p.rootReverseCert])
    await rm(f, {force: true})
  return {step: 'retire', roots: view(await loadRoots(dir))}
}
