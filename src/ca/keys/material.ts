/**
 * The CA's keys and certificates, opened once at start-up and kept (the SSH CA keys as signers:
 * in memory for sealed files, in the token for PKCS#11). The SSH CA keys come in sets: the active
 * key signs, every published key (next, active, previous) is trusted and listed.
 */
import {createPublicKey, X509Certificate, type KeyObject} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {SshcaError} from '../../errors.ts'
import {PublicKey} from '../../ssh/keys.ts'
import type {Signer} from '../../ssh/signature.ts'
import {writeFileAtomic} from '../../util/fs.ts'
import {sameNames} from '../config/config.ts'
import type {Kms} from '../config/kms.ts'
import {caPaths} from '../config/layout.ts'
import {activeEntry, publishedEntries, readKeyring, type CaKeyKind, type CaKeyState, type Keyring} from './keyring.ts'
import {readSealedKey, writeSealedKey} from './keystore.ts'
import {createTlsCert, parseCert, subjectAltNames} from './pki.ts'
import {chainTail, loadRoots, type PublishedRoot} from './roots.ts'
import {SignerRegistry} from './signers.ts'

/** A key clients and hosts trust, with its place in the rotation. */
export interface PublishedKey {
  id: string
  publicKey: PublicKey
  state: Exclude<CaKeyState, 'retired'>
  createdAt: string
  activatedAt?: string | undefined
  deactivatedAt?: string | undefined
}

/** One CA's SSH keys: the one that signs, and every one that is trusted (the active one first). */
export interface CaKeySet {
  active: Signer
  activeId: string
  published: PublishedKey[]
  /**
   * The retired keys: trusted no more, but the KRL keeps a section for each, so a revocation does not
   * lapse when its key retires for an sshd that still trusts the key (a TrustedUserCAKeys written by
   * hand, or read before the retirement).
   */
  retired?: PublicKey[]
}

export interface CaMaterial {
  rootPem: string
  rootFingerprint: string
  intermediatePem: string
  /** Every published root (active first; next and previous during a root rotation). */
  roots: PublishedRoot[]
  /** The old root's certificates of the new one, during a root rotation. */
  crossPems: string[]
  /** Signs step's X.509 identity certificates (and renews the TLS certificate); the new one after a root activation. */
  intermediateKey: KeyObject
  tls: {certPem: string; keyPem: string; notAfter: Date}
  userCa: CaKeySet
  hostCa: CaKeySet
  enrollmentKey: KeyObject
}

/** A set of one key, active since `createdAt` (in-memory CAs: tests, the demo). */
export function soleKeySet(active: Signer, id = 'k1', createdAt = new Date(0).toISOString()): CaKeySet {
  return {
    active,
    activeId: id,
    published: [{id, publicKey: active.publicKey, state: 'active', createdAt, activatedAt: createdAt}],
  }
}

/** The public keys of a set, for checkers and KRL sections. */
export const publishedKeys = (set: CaKeySet): PublicKey[] => set.published.map((p) => p.publicKey)

/** Every key of a set that has signed: the published ones, then the retired (the KRL's sections). */
export const everyKey = (set: CaKeySet): PublicKey[] => [...publishedKeys(set), ...(set.retired ?? [])]

/**
 * The key sets the manifest describes, opening only the active keys; `previous` sets are reused
 * when their active key did not change (a reload after `rotate prepare` opens nothing).
 */
export async function loadKeySets(
  keyring: Keyring,
  registry: SignerRegistry,
  previous?: {userCa: CaKeySet; hostCa: CaKeySet},
): Promise<{userCa: CaKeySet; hostCa: CaKeySet}> {
  const set = async (kind: CaKeyKind): Promise<CaKeySet> => {
    const a = activeEntry(keyring, kind)
    const prior = previous?.[kind === 'user' ? 'userCa' : 'hostCa']
    const active = prior?.activeId === a.id ? prior.active : await registry.open(a.ref)
    const expected = PublicKey.parseLine(a.publicKey).key
    if (!active.publicKey.equals(expected)) {
      throw new SshcaError(
        'ERR_KEY_STORE',
        `the ${kind} CA key ${a.id} in the key store is not the key the manifest publishes (${expected.fingerprint()})`,
      )
    }
    const published = publishedEntries(keyring[kind]).map((e): PublishedKey => ({
      id: e.id,
      publicKey: PublicKey.parseLine(e.publicKey).key,
      state: e.state as PublishedKey['state'],
      createdAt: e.createdAt,
      activatedAt: e.activatedAt,
      deactivatedAt: e.deactivatedAt,
    }))
    const retired = keyring[kind].filter((e) => e.state === 'retired').map((e) => PublicKey.parseLine(e.publicKey).key)
    return {active, activeId: a.id, published, retired}
  }
  return {userCa: await set('user'), hostCa: await set('host')}
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new SshcaError('ERR_FILE_NOT_FOUND', `missing CA file ${path}`, {
        hint: 'is --config pointing at a directory made by `sshca ca init`?',
      })
    throw err
  }
}

/**
 * The API's TLS key and certificate chain. When the certificate expires within `renewWithinDays`, no
 * longer covers `dnsNames`, or was not signed by the current intermediate for the TLS key, a new one
 * is issued from the intermediate and written back (atomically).
 *
 * `o.keepNames`: names that differ from `dnsNames` are no reason to issue one (a running CA reading
 * a certificate that a rotation step, `ca intermediate` or another replica wrote: the names its own
 * reload put in force wait for the restart or the renewal, or two replicas sharing the directory,
 * one reloaded and one not, would each reissue it under its names as soon as the other wrote it).
 * `o.lock`: a reissue runs under it, deciding again on what the files say then (replicas sharing the
 * directory: key and certificate are two files, and two writers at once could leave one's key with the
 * other's certificate; the second finds the first's certificate and takes it).
 */
export async function loadTls(
  dir: string,
  password: string,
  dnsNames: readonly string[],
  renewWithinDays = 30,
  /** `now`: the CA's clock (ms), when it is not the system's (tests). */
  o: {keepNames?: boolean; lock?: <T>(fn: () => Promise<T>) => Promise<T>; now?: number} = {},
): Promise<{tls: CaMaterial['tls']; renewed: boolean; intermediateKey: KeyObject}> {
  const p = caPaths(dir)
  const [intermediatePem, tlsPem, tlsKey, intermediateKey, tail] = await Promise.all([
    readText(p.intermediateCert),
    readText(p.tlsCert),
    readSealedKey(p.tlsKey, password),
    readSealedKey(p.intermediateKey, password),
    chainTail(dir),
  ])
  let tls = {certPem: tlsPem, key: tlsKey}
  let renewed = false
  const leaf = parseCert(tlsPem)
  const names = subjectAltNames(leaf)
  const expiresSoon = leaf.notAfter.getTime() - (o.now ?? Date.now()) < renewWithinDays * 86_400_000
  const namesChanged = !o.keepNames && !sameNames(dnsNames, names)
  // a leaf the current intermediate did not sign, or not of the TLS key (a root activation cut short
  // between its renames and the TLS key's writes): it verifies to no root a client pins, so reissued
  const x = new X509Certificate(tlsPem)
  const stale = !x.verify(createPublicKey(intermediateKey)) || !x.checkPrivateKey(tlsKey)
  if (expiresSoon || namesChanged || stale) {
    if (o.lock)
      return o.lock(() => loadTls(dir, password, dnsNames, renewWithinDays, {keepNames: o.keepNames, now: o.now}))
    const fresh = await createTlsCert(dnsNames, {cert: parseCert(intermediatePem), key: intermediateKey})
    await writeSealedKey(p.tlsKey, fresh.key, password)
    await writeFileAtomic(p.tlsCert, fresh.pem + tail)
    tls = {certPem: fresh.pem + tail, key: fresh.key}
    renewed = true
  }
  return {
    tls: {
      certPem: tls.certPem,
      keyPem: tls.key.export({type: 'pkcs8', format: 'pem'}) as string,
      notAfter: parseCert(tls.certPem).notAfter,
    },
    renewed,
    intermediateKey,
  }
}

/** Opens every key: the SSH CA keys through the signer registry (`o.kms`: where pkcs11 keys live). */
export async function loadMaterial(
  dir: string,
  password: string,
  dnsNames: readonly string[],
  renewWithinDays = 30,
  o: {kms?: Kms; registry?: SignerRegistry} = {},
): Promise<CaMaterial & {tlsRenewed: boolean; registry: SignerRegistry}> {
  const p = caPaths(dir)
  const rootSet = await loadRoots(dir)
  const registry = o.registry ?? new SignerRegistry({dir, password, kms: o.kms ?? {type: 'file'}})
  const [keys, enrollmentKey, tls] = await Promise.all([
    readKeyring(dir).then((k) => loadKeySets(k, registry)),
    readSealedKey(p.enrollmentKey, password),
    loadTls(dir, password, dnsNames, renewWithinDays),
  ])
  return {
    ...rootSet,
    tls: tls.tls,
    intermediateKey: tls.intermediateKey,
    userCa: keys.userCa,
    hostCa: keys.hostCa,
    enrollmentKey,
    tlsRenewed: tls.renewed,
    registry,
  }
}
