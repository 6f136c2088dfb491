/**
 * Offline root keys: a root key written to a file outside the CA directory, meant to leave the box
 * (`ca init --offline-root`, `ca rotate prepare --kind root --next-root-key`), and read back only for
 * the rare commands that need the root (`ca intermediate`, the next root rotation).
 */
import type {KeyObject} from 'node:crypto'
import {open, rm} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'
import {SshcaError} from '../../errors.ts'
import {exists, privateDir, refuseSymlink} from '../../util/fs.ts'
import {sealPrivateKey} from './keystore.ts'

/**
 * Where an offline key may go: outside the CA directory, never over a file or through a symlink.
 * Checked before anything is made; its directory is created (0700).
 */
export async function checkOfflineKeyPath(file: string, caDir: string, flag: string): Promise<string> {
  const path = resolve(file)
  const dir = resolve(caDir)
  if (path === dir || path.startsWith(`${dir}/`)) {
    throw new SshcaError(
      'ERR_USAGE',
      `${flag} ${path} is inside the CA directory; an offline root key must live apart from it`,
      {hint: 'write it to removable media or a directory you will move off this box, e.g. /media/usb/root_ca.key'},
    )
  }
  await refuseSymlink(path)
  if (await exists(path))
    throw new SshcaError('ERR_FILE_EXISTS', `${path} already exists; sshca never overwrites a key`, {
      hint: `give ${flag} a new file name`,
    })
  await privateDir(dirname(path))
  return path
}

/**
 * Writes the key sealed with the CA password, 0600, synced. 'wx': a file that appeared since the
 * check is never replaced. Returns a function that removes it again (for a step that fails after).
 */
export async function writeOfflineKey(path: string, key: KeyObject, password: string): Promise<() => Promise<void>> {
  const sealed = await sealPrivateKey(key, password)
  const fh = await open(path, 'wx', 0o600)
  const undo = () => rm(path, {force: true})
  try {
    try {
      await fh.writeFile(sealed)
      await fh.sync()
    } finally {
      await fh.close()
    }
  } catch (err) {
    await undo()
    throw err
  }
  return undo
}
