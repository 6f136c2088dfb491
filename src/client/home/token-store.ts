/**
 * Where refresh tokens live: the OS keyring (Secret Service on Linux, Keychain, Credential Manager)
 * through @napi-rs/keyring, or a 0600 file under $SSHCA_HOME when no keyring is reachable (a server,
 * a container, an SSH session without D-Bus). keytar is archived and needs a native build.
 */
import {readdir, readFile, rm} from 'node:fs/promises'
import {join} from 'node:path'
import {SshcaError} from '../../errors.ts'
import {exists, privateDir, writeFileAtomic} from '../../util/fs.ts'

export interface StoredRefresh {
  refreshToken: string
  issuer: string
  clientId: string
  savedAt: string
}

export interface TokenStore {
  readonly kind: 'keyring' | 'file'
  get(key: string): Promise<StoredRefresh | undefined>
  /** Stores it; the file store returns the path of a file it created (so the person is told once). */
  set(key: string, value: StoredRefresh): Promise<void | {created: string}>
  delete(key: string): Promise<void>
  /** Keys stored under `prefix` (a context's, for logout). */
  keys(prefix: string): Promise<string[]>
}

const SERVICE = 'sshca'

export async function keyringStore(): Promise<TokenStore> {
  const {AsyncEntry, findCredentialsAsync} = await import('@napi-rs/keyring')
  const entry = (key: string) => new AsyncEntry(SERVICE, key, {linux: {store: 'secret-service'}})
  return {
    kind: 'keyring',
    async get(key) {
      const v = await entry(key).getPassword()
      return v ? (JSON.parse(v) as StoredRefresh) : undefined
    },
    async set(key, value) {
      await entry(key).setPassword(JSON.stringify(value))
    },
    async delete(key) {
      await entry(key).deletePassword()
    },
    async keys(prefix) {
      return (await findCredentialsAsync(SERVICE)).map((c) => c.account).filter((a) => a.startsWith(prefix))
    },
  }
}

export function fileStore(home: string): TokenStore {
  const dir = join(home, 'tokens')
  // "context/provisioner" → "context~provisioner.json" (both names are [A-Za-z0-9._-])
  const file = (key: string) => `${key.replace('/', '~').replace(/[^A-Za-z0-9._~-]/g, '_')}.json`
  const path = (key: string) => join(dir, file(key))
  return {
    kind: 'file',
    async get(key) {
      try {
        return JSON.parse(await readFile(path(key), 'utf8')) as StoredRefresh
      } catch {
        return undefined
      }
    },
    async set(key, value) {
      await privateDir(dir)
      const existed = await exists(path(key))
      await writeFileAtomic(path(key), `${JSON.stringify(value)}\n`, 0o600)
      return existed ? undefined : {created: path(key)}
    },
    async delete(key) {
      await rm(path(key), {force: true})
    },
    async keys(prefix) {
      const names = await readdir(dir).catch(() => [] as string[])
      return names
        .filter((n) => n.endsWith('.json'))
        .map((n) => n.slice(0, -5).replace('~', '/'))
        .filter((k) => k.startsWith(prefix))
    },
  }
}

/**
 * The keyring when it answers a probe, else the file. SSHCA_KEYRING=file|keyring forces one
 * (keyring then fails loudly instead of falling back).
 */
export async function defaultTokenStore(home: string, env: NodeJS.ProcessEnv = process.env): Promise<TokenStore> {
  if (env.SSHCA_KEYRING === 'file') return fileStore(home)
  try {
    const store = await keyringStore()
    await store.get('__probe__')
    return store
  } catch (err) {
    if (env.SSHCA_KEYRING === 'keyring') {
      throw new SshcaError(
        'ERR_KEYRING_UNAVAILABLE',
        `SSHCA_KEYRING=keyring, and the OS keyring cannot be used: ${(err as Error).message}`,
        {
          cause: err,
          hint: 'unset SSHCA_KEYRING to keep refresh tokens in 0600 files under $SSHCA_HOME/tokens, or start the keyring (a D-Bus session with the Secret Service on Linux)',
        },
      )
    }
    return fileStore(home)
  }
}

export const refreshKey = (context: string, provisioner: string): string => `${context}/${provisioner}`
