/**
 * `sshca ca rotate prepare|activate|retire|status`: phased rotation of the SSH user and host CA keys,
 * run on the CA box next to a running CA (which follows ssh/keys.json within seconds, or at once on
 * SIGHUP). No flag day: every machine picks up the published set by itself (login and config on
 * laptops, the KRL timer and renewal on servers), so
 *   prepare   a new key is made (in the configured key store) and published beside the active one:
 *             clients and hosts start trusting it before it signs anything;
 *   activate  it signs from now on; the old key stays published, so what it signed keeps working;
 *   retire    the old key is dropped from /ssh/roots, the KRL, known_hosts and TrustedUserCAKeys.
 *             Refused while a certificate it signed is unexpired and unrevoked (a user certificate, or
 *             a host certificate that is still its host's newest), unless --force (audited).
 * Each step is recorded as an admin event (the running CA writes it to its audit log).
 */
import {resolve} from 'node:path'
import {SshcaError} from '../errors.ts'
import {parseCertificate} from '../ssh/cert.ts'
import {PublicKey} from '../ssh/keys.ts'
import {keyStoreOf, loadConfig} from './config/config.ts'
import {
  CA_KEY_KINDS,
  nextKeyId,
  readKeyring,
  withActivated,
  withPrepared,
  withRetired,
  writeKeyring,
  type CaKeyKind,
  type KeyEntry,
  type KeyRef,
  type Keyring,
} from './keys/keyring.ts'
import {SignerRegistry} from './keys/signers.ts'
import {
  activateRoot,
  prepareRoot,
  retireRoot,
  rootStatus,
  type OfflineRootKeys,
  type RootRotation,
} from './keys/roots.ts'
import type {IssuedRecord, Store} from './store/store.ts'
import {withStore} from './store/open.ts'

export type RotateStep = 'prepare' | 'activate' | 'retire' | 'status'

export interface RotateOptions {
  configPath: string
  /** Needed by prepare with file keys (they are sealed with it) and by the key stores. */
  password?: string
  step: RotateStep
  /** Which CA keys: the SSH user and host keys by default; 'root' rotates the X.509 root on its own. */
  kinds?: readonly (CaKeyKind | 'root')[]
  /** retire: drop the old key even though certificates it signed are still valid. */
  force?: boolean
  /** prepare --kind root with an offline root: where its key is, and where the new root's goes. */
  offlineRoot?: OfflineRootKeys
  clock?: () => number
}

export interface KeyView {
  id: string
  state: KeyEntry['state']
  fingerprint: string
  store: 'file' | 'pkcs11'
  createdAt: string
  activatedAt?: string | undefined
  deactivatedAt?: string | undefined
  retiredAt?: string | undefined
  destroyedAt?: string | undefined
}

export interface RotateResult {
  step: RotateStep
  kinds: CaKeyKind[]
  /** What changed, per kind (empty for status). */
  changed: {kind: CaKeyKind; key: string; fingerprint: string; state: KeyEntry['state']}[]
  /** retire --force: the still-valid certificates of the retired keys, which now stop working. */
  stranded: {kind: CaKeyKind; certificates: number; lastExpiry: string | null}[]
  /**
   * retire: what became of each retired key's private half: destroyed (its sealed file removed, its
   * token objects destroyed), or kept because the key store refused (`error`: remove it yourself).
   */
  destroyed: {kind: CaKeyKind; key: string; store: 'file' | 'pkcs11'; destroyed: boolean; error?: string}[]
  keys: {user: KeyView[]; host: KeyView[]}
  /** The X.509 roots clients pin (--kind root rotates them). */
  roots: RootRotation['roots']
}

const viewOf = (e: KeyEntry): KeyView => ({
  id: e.id,
  state: e.state,
  fingerprint: PublicKey.parseLine(e.publicKey).key.fingerprint(),
  store: e.ref.type,
  createdAt: e.createdAt,
  ...(e.activatedAt ? {activatedAt: e.activatedAt} : {}),
  ...(e.deactivatedAt ? {deactivatedAt: e.deactivatedAt} : {}),
  ...(e.retiredAt ? {retiredAt: e.retiredAt} : {}),
  ...(e.destroyedAt ? {destroyedAt: e.destroyedAt} : {}),
})

const iso = (seconds: bigint | number): string => new Date(Number(seconds) * 1000).toISOString()

/**
 * The certificates a key signed that still let someone in: unexpired, unrevoked, and for hosts the
 * newest of their lineage (a renewed host's older certificate is superseded; the host presents the new one).
 */
export async function stillValidCertificates(
  store: Store,
  kind: CaKeyKind,
  key: PublicKey,
  now: number,
): Promise<IssuedRecord[]> {
  const candidates =
    kind === 'host'
      ? await store.currentHostCertificates(now)
      : await store.certificates({certType: 'user', activeAt: now, limit: 10_000_000})
  const out: IssuedRecord[] = []
  for (const c of candidates) {
    if (c.validBefore <= BigInt(now)) continue
    let signer: PublicKey
    try {
      signer = parseCertificate(Buffer.from(c.certificate, 'base64')).signatureKey
    } catch {
      continue
    }
    if (!signer.equals(key)) continue
    if (await store.revocationFor(c)) continue
    out.push(c)
  }
  return out
}

export async function rotate(o: RotateOptions): Promise<RotateResult> {
  const {config} = await loadConfig(o.configPath)
  const asked = o.kinds?.length ? o.kinds : CA_KEY_KINDS
  const now = new Date((o.clock ?? Date.now)())
  const nowSeconds = Math.floor(now.getTime() / 1000)
  let keyring: Keyring = await readKeyring(config.dir)
  const changed: RotateResult['changed'] = []
  const stranded: RotateResult['stranded'] = []
  const destroyed: RotateResult['destroyed'] = []
  const kinds = asked.filter((k): k is CaKeyKind => k !== 'root')
  const result = async (): Promise<RotateResult> => ({
    step: o.step,
    kinds,
    changed,
    stranded,
    destroyed,
    keys: {user: keyring.user.map(viewOf), host: keyring.host.map(viewOf)},
    roots: await rootStatus(config.dir),
  })
  if (o.step === 'status') return result()
  const rootKeyFiles = (o.offlineRoot?.rootKeyFile ?? o.offlineRoot?.nextRootKeyFile) !== undefined
  if (rootKeyFiles && !asked.includes('root'))
    throw new SshcaError(
      'ERR_USAGE',
      '--root-key and --next-root-key are for --kind root: the SSH CA keys are not the root',
    )
  if (asked.includes('root')) {
    if (kinds.length) throw new TypeError('the root rotates on its own: --kind root')
    if (o.step !== 'prepare' && rootKeyFiles) {
      throw new SshcaError(
        'ERR_USAGE',
        '--root-key and --next-root-key are for rotate prepare --kind root: activate and retire need no root key',
      )
    }
    if (o.step !== 'retire' && o.password === undefined)
      throw new TypeError(`rotate ${o.step} --kind root needs the CA password`)
    const r =
      o.step === 'prepare'
        ? await prepareRoot(config.dir, config.name, o.password!, now, o.offlineRoot)
        : o.step === 'activate'
          ? await activateRoot(config.dir, config.dnsNames, o.password!, now)
          : await retireRoot(config.dir)
    const event =
      o.step === 'prepare' ? 'ca_root_prepared' : o.step === 'activate' ? 'ca_root_activated' : 'ca_root_retired'
    await withStore(config, 'admin', (store) => store.recordAdminEvent(event, {roots: r.roots}, nowSeconds))
    return result()
  }

  if (o.step === 'prepare') {
    // every refusal before any key is made: a half-prepared rotation would leave keys nobody publishes
    for (const kind of kinds) {
      if (keyring[kind].some((e) => e.state === 'next')) withPrepared(keyring, kind, {} as KeyEntry)
    }
    if (o.password === undefined) throw new TypeError('rotate prepare needs the CA password')
    const registry = new SignerRegistry({dir: config.dir, password: o.password, kms: keyStoreOf(config.keys)})
    try {
      for (const kind of kinds) {
        const id = nextKeyId(keyring, kind)
        const made = await registry.create(kind, id)
        // a key that cannot sign is found now, not when it is activated
        const probe = await registry.open(made.ref)
        if (!probe.publicKey.equals(made.publicKey))
          throw new SshcaError('ERR_KEY_STORE', `the new ${kind} CA key does not open as itself`)
        keyring = withPrepared(keyring, kind, {
          id,
          publicKey: made.publicKey.toLine(),
          ref: made.ref,
          createdAt: now.toISOString(),
        })
        changed.push({kind, key: id, fingerprint: made.publicKey.fingerprint(), state: 'next'})
      }
    } finally {
      await registry.close()
    }
  } else if (o.step === 'activate') {
    for (const kind of kinds) {
      keyring = withActivated(keyring, kind, now)
      const active = keyring[kind].find((e) => e.state === 'active')!
      changed.push({
        kind,
        key: active.id,
        fingerprint: PublicKey.parseLine(active.publicKey).key.fingerprint(),
        state: 'active',
      })
    }
  } else {
    await withStore(config, 'admin', async (store) => {
      const blocked: string[] = []
      for (const kind of kinds) {
        const previous = keyring[kind].find((e) => e.state === 'previous')
        if (!previous) {
          // nothing to retire: a retire run again for a private half that outlived its retirement (the
          // key store refused then; a key retired before sshca destroyed them) destroys it below
          if (!leftovers(keyring, kind).length) withRetired(keyring, kind, now) // throws the state error
          continue
        }
        const valid = await stillValidCertificates(store, kind, PublicKey.parseLine(previous.publicKey).key, nowSeconds)
        const last = valid.reduce<bigint | null>((m, c) => (m === null || c.validBefore > m ? c.validBefore : m), null)
        if (valid.length > 0) {
          stranded.push({kind, certificates: valid.length, lastExpiry: last === null ? null : iso(last)})
          blocked.push(
            `${valid.length} ${kind} certificate(s) signed by ${previous.id} are still valid (the last until ${last === null ? '?' : iso(last)})`,
          )
        }
      }
      if (blocked.length > 0 && !o.force) {
        throw new SshcaError(
          'ERR_ROTATION_STATE',
          `retiring now would lock out what the old keys signed: ${blocked.join('; ')}`,
          {
            details: {stranded},
            hint: 'wait until they expire (host certificates move to the new key at their next renewal: sshca renew runs daily), revoke them, or retire with --force',
          },
        )
      }
    })
    for (const kind of kinds) {
      if (!keyring[kind].some((e) => e.state === 'previous')) continue
      const r = withRetired(keyring, kind, now)
      keyring = r.keyring
      changed.push({
        kind,
        key: r.retired.id,
        fingerprint: PublicKey.parseLine(r.retired.publicKey).key.fingerprint(),
        state: 'retired',
      })
    }
  }

  await writeKeyring(config.dir, keyring, config.name)
  // a retired key signs nothing and no one is told to trust it any more: its private half is destroyed
  // rather than kept where a thief of the CA directory and its password, or of the token's PIN, could
  // still sign with it for the servers and clients that never dropped it (once the manifest says
  // retired, so that a failure leaves a key nobody uses, never a published key without its private half)
  if (o.step === 'retire') {
    const registry = new SignerRegistry({dir: config.dir, password: o.password ?? '', kms: keyStoreOf(config.keys)})
    try {
      // the keys retired now, and those whose private half a retire before could not destroy
      const doomed = kinds.flatMap((kind) => leftovers(keyring, kind).map((e) => ({kind, key: e.id})))
      for (const c of doomed) {
        const ref = keyring[c.kind].find((e) => e.id === c.key)!.ref
        try {
          // a key another entry still names (the same file, the same CKA_ID: one key for both kinds, a
          // manifest edited by hand) is kept: destroying it would take the other one's private half too
          const sharing = CA_KEY_KINDS.flatMap((kind) => keyring[kind])
            .filter((e) => e.id !== c.key && e.state !== 'retired' && sameKeyRef(config.dir, e.ref, ref))
            .map((e) => `${e.id} (${e.state})`)
          if (sharing.length > 0) throw new SshcaError('ERR_KEY_STORE', `the key is also ${sharing.join(', ')}'s: kept`)
          await registry.destroy(ref)
          destroyed.push({kind: c.kind, key: c.key, store: ref.type, destroyed: true})
          const at = new Date((o.clock ?? Date.now)()).toISOString()
          keyring = {...keyring, [c.kind]: keyring[c.kind].map((e) => (e.id === c.key ? {...e, destroyedAt: at} : e))}
        } catch (err) {
          destroyed.push({kind: c.kind, key: c.key, store: ref.type, destroyed: false, error: (err as Error).message})
        }
      }
    } finally {
      await registry.close()
    }
    // which private halves are gone: a retire run again skips them
    if (destroyed.some((d) => d.destroyed)) await writeKeyring(config.dir, keyring, config.name)
  }
  const event = o.step === 'prepare' ? 'ca_key_prepared' : o.step === 'activate' ? 'ca_key_activated' : 'ca_key_retired'
  await withStore(config, 'admin', (store) =>
    store.recordAdminEvent(
      event,
      {
        keys: changed,
        ...(o.step === 'retire' ? {forced: Boolean(o.force) && stranded.length > 0, stranded, destroyed} : {}),
      },
      nowSeconds,
    ),
  )
  return result()
}

/** The retired keys of `kind` whose private half was not destroyed. */
const leftovers = (k: Keyring, kind: CaKeyKind): KeyEntry[] =>
  k[kind].filter((e) => e.state === 'retired' && e.destroyedAt === undefined)

/** Whether two references name the same private key: one file (its path resolved), or one CKA_ID (as the token is asked for it). */
function sameKeyRef(dir: string, a: KeyRef, b: KeyRef): boolean {
  if (a.type === 'file' && b.type === 'file') return resolve(dir, a.path) === resolve(dir, b.path)
  if (a.type === 'pkcs11' && b.type === 'pkcs11') return Buffer.from(a.id, 'hex').equals(Buffer.from(b.id, 'hex'))
  return false
}
