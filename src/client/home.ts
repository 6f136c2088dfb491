/**
 * $SSHCA_HOME (default ~/.sshca, 0700): one folder per bootstrapped CA ("context") with its root and
 * settings, a `current` file naming the context in use, and the refresh-token file fallback.
 * Files 0600, folders 0700. Everything is written atomically.
 */
import {readFile, readdir} from 'node:fs/promises'
import {homedir} from 'node:os'
import {join} from 'node:path'
import {SshcaError} from '../errors.ts'

export function sshcaHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.SSHCA_HOME || join(homedir(), '.sshca')
}

export interface ContextSettings {
  name: string
  caUrl: string
  rootFingerprint: string
  /** authorized_keys lines of the CA's SSH user CA keys (from GET /ssh/roots). */
  userCaKeys: string[]
  hostCaKeys: string[]
  hostPattern: string
  bootstrappedAt: string
}

export interface Context extends ContextSettings {
  rootPem: string
  dir: string
}

export const contextDir = (home: string, name: string): string => join(home, 'contexts', name)
export const CONTEXT_FILE = 'context.json'
export const ROOT_FILE = 'root_ca.crt'

export function validContextName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(name)
}

export async function currentContextName(home: string): Promise<string | undefined> {
  try {
    return (await readFile(join(home, 'current'), 'utf8')).trim() || undefined
  } catch {
    return undefined
  }
}

export async function listContexts(home: string): Promise<string[]> {
  try {
    return (await readdir(join(home, 'contexts'))).filter(validContextName).sort()
  } catch {
    return []
  }
}

export async function readContext(home: string, name: string): Promise<Context | undefined> {
  const dir = contextDir(home, name)
  try {
    const settings = JSON.parse(await readFile(join(dir, CONTEXT_FILE), 'utf8')) as ContextSettings
    const rootPem = await readFile(join(dir, ROOT_FILE), 'utf8')
    return {...settings, rootPem, dir}
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new SshcaError('ERR_INPUT', `the context "${name}" in ${dir} is damaged: ${(err as Error).message}`, {hint: `bootstrap it again: sshca bootstrap --context ${name} --ca-url URL --fingerprint HEX --force`})
  }
}

/** The named context, or the current one; typed errors that say how to bootstrap. */
export async function loadContext(home: string, name?: string): Promise<Context> {
  const chosen = name ?? (await currentContextName(home))
  if (!chosen) {
    throw new SshcaError('ERR_NOT_BOOTSTRAPPED', 'no CA has been bootstrapped yet', {hint: 'run: sshca bootstrap --ca-url https://ca.example.com --fingerprint <root sha256>'})
  }
  const ctx = await readContext(home, chosen)
  if (!ctx) {
    const known = await listContexts(home)
    throw new SshcaError('ERR_CONTEXT_NOT_FOUND', `no context "${chosen}" in ${home}`, {hint: known.length ? `known contexts: ${known.join(', ')}` : 'run sshca bootstrap first'})
  }
  return ctx
}

/** Every bootstrapped context's user CA fingerprints → context name (for `sshca list`). */
export async function knownUserCas(home: string): Promise<Map<string, string>> {
  const {PublicKey} = await import('../ssh/keys.ts')
  const out = new Map<string, string>()
  for (const name of await listContexts(home)) {
    const ctx = await readContext(home, name).catch(() => undefined)
    for (const line of ctx?.userCaKeys ?? []) {
      try {
        out.set(PublicKey.parseLine(line).key.fingerprint(), name)
      } catch {
        // a damaged line names no CA
      }
    }
  }
  return out
}
