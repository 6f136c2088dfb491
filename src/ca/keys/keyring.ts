/**
 * The SSH CA keys' manifest (`ssh/keys.json` in the CA directory): for the user CA and the host CA,
 * every key the CA has had, its state and dates, and where its private half lives (a sealed file, or
 * an object in a PKCS#11 token). Public facts only: no private bytes, no PIN.
 *
 * `ca rotate` moves a key through the states, one step per command, so no flag day is needed:
 *   next      prepared: published on /ssh/roots beside the active key, not signing yet
 *   active    signs every new certificate (exactly one per kind)
 *   previous  published, no longer signing, until what it signed has expired
 *   retired   neither published nor signing (kept in the manifest as history)
 * Clients and hosts trust every published key (next, active, previous), so a certificate from the
 * old key and one from the new key both work during the overlap.
 */
import {readFile, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {SshcaError} from '../../errors.ts'
import {PublicKey} from '../../ssh/keys.ts'
import {exists, writeFileAtomic} from '../../util/fs.ts'
import {caPaths} from '../config/layout.ts'

export type CaKeyKind = 'user' | 'host'
export const CA_KEY_KINDS: readonly CaKeyKind[] = ['user', 'host']
export type CaKeyState = 'next' | 'active' | 'previous' | 'retired'

/** Where a key's private half lives; the signer registry (signers.ts) opens each type. */
export type KeyRef = {type: 'file'; path: string} | {type: 'pkcs11'; label: string; id: string}

export interface KeyEntry {
  /** Stable name of this key (`user-2`), unique in the manifest. */
  id: string
  /** authorized_keys form, without a comment. */
  publicKey: string
  state: CaKeyState
  ref: KeyRef
  createdAt: string
  activatedAt?: string
  deactivatedAt?: string
  retiredAt?: string
  /** When `ca rotate retire` destroyed its private half (a retired key without it still has one somewhere). */
  destroyedAt?: string
}

export interface Keyring {
  version: 1
  user: KeyEntry[]
  host: KeyEntry[]
}

export const KEYRING_FILE = 'keys.json'
export const keyringPath = (dir: string): string => join(caPaths(dir).ssh, KEYRING_FILE)

/** Published keys (what /ssh/roots and the KRL carry), the active one first. */
export function publishedEntries(entries: readonly KeyEntry[]): KeyEntry[] {
  const order: Record<CaKeyState, number> = {active: 0, previous: 1, next: 2, retired: 3}
  return entries.filter((e) => e.state !== 'retired').sort((a, b) => order[a.state] - order[b.state])
}

export function activeEntry(k: Keyring, kind: CaKeyKind): KeyEntry {
  const a = k[kind].find((e) => e.state === 'active')
  if (!a) throw new SshcaError('ERR_CA_CONFIG', `the CA has no active ${kind} CA key`)
  return a
}

/** Problems in a manifest (for reading one written by hand or by another version); empty when sound. */
export function keyringProblems(k: Keyring): string[] {
  const problems: string[] = []
  if (k?.version !== 1) return [`${KEYRING_FILE}: version ${String(k?.version)} is not one this sshca reads`]
  const ids = new Set<string>()
  for (const kind of CA_KEY_KINDS) {
    const list = k[kind]
    if (!Array.isArray(list)) {
      problems.push(`${KEYRING_FILE}: ${kind} is not a list`)
      continue
    }
    const count = (s: CaKeyState) => list.filter((e) => e.state === s).length
    if (count('active') !== 1)
      problems.push(`${KEYRING_FILE}: ${kind} must have exactly one active key, not ${count('active')}`)
    if (count('next') > 1) problems.push(`${KEYRING_FILE}: ${kind} has ${count('next')} next keys`)
    if (count('previous') > 1) problems.push(`${KEYRING_FILE}: ${kind} has ${count('previous')} previous keys`)
    for (const e of list) {
      if (ids.has(e.id)) problems.push(`${KEYRING_FILE}: key id "${e.id}" is used twice`)
      ids.add(e.id)
      if (!['next', 'active', 'previous', 'retired'].includes(e.state))
        problems.push(`${KEYRING_FILE}: ${e.id} has an unknown state "${e.state}"`)
      try {
        PublicKey.parseLine(e.publicKey)
      } catch {
        problems.push(`${KEYRING_FILE}: ${e.id} has no valid public key`)
      }
      if (e.ref?.type !== 'file' && e.ref?.type !== 'pkcs11')
        problems.push(`${KEYRING_FILE}: ${e.id} names no key store it knows (file or pkcs11)`)
    }
  }
  return problems
}

/**
 * The manifest; a CA made before rotation existed has none: its two key files, each the active key.
 */
export async function readKeyring(dir: string): Promise<Keyring> {
  const path = keyringPath(dir)
  if (!(await exists(path))) return legacyKeyring(dir)
  let k: Keyring
  try {
    k = JSON.parse(await readFile(path, 'utf8')) as Keyring
  } catch (err) {
    throw new SshcaError('ERR_CA_CONFIG', `${path} is not JSON: ${(err as Error).message}`, {cause: err})
  }
  const problems = keyringProblems(k)
  if (problems.length)
    throw new SshcaError('ERR_CA_CONFIG', `${path} is invalid:\n${problems.map((p) => `  - ${p}`).join('\n')}`, {
      details: {problems},
    })
  return k
}

async function legacyKeyring(dir: string): Promise<Keyring> {
  const p = caPaths(dir)
  const entry = async (kind: CaKeyKind, pubPath: string, keyPath: string): Promise<KeyEntry> => {
    let line: string
    try {
      line = await readFile(pubPath, 'utf8')
    } catch (err) {
      throw new SshcaError('ERR_FILE_NOT_FOUND', `missing CA file ${pubPath}`, {
        cause: err,
        hint: 'is --config pointing at a directory made by `sshca ca init`?',
      })
    }
    const created = (await stat(pubPath)).mtime.toISOString()
    return {
      id: `${kind}-1`,
      publicKey: PublicKey.parseLine(line).key.toLine(),
      state: 'active',
      ref: {type: 'file', path: relativeToDir(dir, keyPath)},
      createdAt: created,
      activatedAt: created,
    }
  }
  return {
    version: 1,
    user: [await entry('user', p.userCaPub, p.userCaKey)],
    host: [await entry('host', p.hostCaPub, p.hostCaKey)],
  }
}

function relativeToDir(dir: string, path: string): string {
  return path.startsWith(`${dir}/`) ? path.slice(dir.length + 1) : path
}

/**
 * Writes the manifest atomically, and the published keys of each kind into ssh/ssh_user_ca.pub and
 * ssh/ssh_host_ca.pub (what an operator copies by hand, if anyone still does).
 */
export async function writeKeyring(dir: string, k: Keyring, name = 'sshca'): Promise<void> {
  const problems = keyringProblems(k)
  if (problems.length) throw new TypeError(`refusing to write an invalid key manifest: ${problems.join('; ')}`)
  const p = caPaths(dir)
  await writeFileAtomic(keyringPath(dir), `${JSON.stringify(k, null, 2)}\n`)
  const lines = (kind: CaKeyKind) =>
    publishedEntries(k[kind])
      .map((e) => `${PublicKey.parseLine(e.publicKey).key.toLine(`${name} ${kind} CA (${e.id}, ${e.state})`)}\n`)
      .join('')
  await writeFileAtomic(p.userCaPub, lines('user'))
  await writeFileAtomic(p.hostCaPub, lines('host'))
}

/** A fresh id for the next key of a kind: `user-3` after `user-2`. */
export function nextKeyId(k: Keyring, kind: CaKeyKind): string {
  const n = Math.max(0, ...k[kind].map((e) => Number(/-(\d+)$/.exec(e.id)?.[1] ?? 0))) + 1
  return `${kind}-${n}`
}

/** prepare: a new key becomes `next`. Refused while another is prepared. */
export function withPrepared(k: Keyring, kind: CaKeyKind, entry: Omit<KeyEntry, 'state'>): Keyring {
  if (k[kind].some((e) => e.state === 'next')) {
    throw new SshcaError('ERR_ROTATION_STATE', `a next ${kind} CA key is already prepared`, {
      hint: `activate it (sshca ca rotate activate --kind ${kind}) before preparing another`,
    })
  }
  return {...k, [kind]: [...k[kind], {...entry, state: 'next'}]}
}

/**
 * activate: the next key signs from now on; the active one becomes `previous`, still published.
 * Refused without a prepared key, and while a previous key is still published (retire it first:
 * three keys in every known_hosts and TrustedUserCAKeys would only widen what is trusted).
 */
export function withActivated(k: Keyring, kind: CaKeyKind, now: Date): Keyring {
  const next = k[kind].find((e) => e.state === 'next')
  if (!next)
    throw new SshcaError('ERR_ROTATION_STATE', `no next ${kind} CA key is prepared`, {
      hint: `prepare one first: sshca ca rotate prepare --kind ${kind}`,
    })
  const previous = k[kind].find((e) => e.state === 'previous')
  if (previous)
    throw new SshcaError('ERR_ROTATION_STATE', `the previous ${kind} CA key ${previous.id} is still published`, {
      hint: `retire it first: sshca ca rotate retire --kind ${kind}`,
    })
  const at = now.toISOString()
  return {
    ...k,
    [kind]: k[kind].map((e) =>
      e.state === 'active'
        ? {...e, state: 'previous', deactivatedAt: at}
        : e.state === 'next'
          ? {...e, state: 'active', activatedAt: at}
          : e,
    ),
  }
}

/** retire: the previous key is no longer published (the caller checks what it signed has expired). */
export function withRetired(k: Keyring, kind: CaKeyKind, now: Date): {keyring: Keyring; retired: KeyEntry} {
  const previous = k[kind].find((e) => e.state === 'previous')
  if (!previous)
    throw new SshcaError('ERR_ROTATION_STATE', `no previous ${kind} CA key to retire`, {
      hint: `activate a new key first: sshca ca rotate activate --kind ${kind}`,
    })
  const retired: KeyEntry = {...previous, state: 'retired', retiredAt: now.toISOString()}
  return {keyring: {...k, [kind]: k[kind].map((e) => (e.id === previous.id ? retired : e))}, retired}
}
