/**
 * `sshca --version`: the version and how this copy was installed, which decides how it is upgraded
 * and where refresh tokens go. Answered before oclif loads (bin/run.cjs → fast.ts), and by the single
 * executable, which has no package folder to look at.
 */
import {existsSync, readFileSync} from 'node:fs'
import {join, posix, win32} from 'node:path'
import {fileURLToPath} from 'node:url'

export type InstallKind = 'single-executable' | 'npm-global' | 'npx' | 'npm-local' | 'checkout' | 'unpacked'

export interface Installation {
  kind: InstallKind
  /** The package folder, or the executable itself. */
  path: string
  /** In words, for the text output. */
  how: string
  /** The command (or step) that upgrades this copy. */
  upgrade: string
}

export interface VersionInfo {
  version: string
  installed: Installation
  node: {version: string; path: string}
  platform: string
  refreshTokens: string
}

/**
 * What the single executable's entry point (scripts/sea/main.ts) leaves on globalThis under this
 * symbol: it has no package.json next to it.
 */
export const SEA_BUILD = Symbol.for('sshca.single-executable')
export interface SeaBuild {
  version: string
  node: string
}

/**
 * How the package at `root` was installed, from where it sits (pure: `exists` and the platform are
 * parameters). npm puts a global package at PREFIX/lib/node_modules/sshca (PREFIX\node_modules\sshca
 * with a sshca.cmd beside node_modules on Windows) and an npx run under its cache's _npx folder.
 */
export function installKind(
  root: string,
  opts: {platform?: NodeJS.Platform; exists?: (p: string) => boolean} = {},
): Installation {
  const exists = opts.exists ?? existsSync
  const windows = (opts.platform ?? process.platform) === 'win32'
  const {basename, dirname, join} = windows ? win32 : posix
  const parts = root.split(/[\\/]/)
  if (exists(join(root, '.git')) || exists(join(root, 'src', 'cli', 'version.ts'))) {
    return {
      kind: 'checkout',
      path: root,
      how: `a checkout at ${root}`,
      upgrade: `git -C ${root} pull && npm --prefix ${root} ci`,
    }
  }
  if (parts.includes('_npx')) {
    return {
      kind: 'npx',
      path: root,
      how: `npx, from its cache at ${root}`,
      upgrade: 'npx sshca@latest … (npx keeps each version it ran apart)',
    }
  }
  const parent = dirname(root)
  if (basename(parent) === 'node_modules') {
    const above = dirname(parent)
    if (!windows && basename(above) === 'lib') {
      const prefix = dirname(above)
      return {
        kind: 'npm-global',
        path: root,
        how: `the npm global package in ${prefix}`,
        upgrade: `npm install -g --prefix ${prefix} sshca@latest`,
      }
    }
    if (windows && exists(join(above, 'sshca.cmd'))) {
      return {
        kind: 'npm-global',
        path: root,
        how: `the npm global package in ${above}`,
        upgrade: `npm install -g --prefix ${above} sshca@latest`,
      }
    }
    return {
      kind: 'npm-local',
      path: root,
      how: `a dependency of the project in ${above}`,
      upgrade: `npm install --prefix ${above} sshca@latest`,
    }
  }
  return {kind: 'unpacked', path: root, how: `a package folder at ${root}`, upgrade: 'npm install -g sshca@latest'}
}

/** The package folder of this file: dist/cli/version.js (or src/cli/version.ts) → two levels up. */
const packageRoot = (): string => join(fileURLToPath(import.meta.url), '..', '..', '..')

export async function versionInfo(): Promise<VersionInfo> {
  const node = {version: process.version, path: process.execPath}
  const platform = `${process.platform}-${process.arch}`
  const sea = (globalThis as {[SEA_BUILD]?: SeaBuild})[SEA_BUILD]
  if (sea) {
    return {
      version: sea.version,
      installed: {
        kind: 'single-executable',
        path: process.execPath,
        how: `the single executable ${process.execPath} (Node.js ${sea.node} inside)`,
        upgrade: `replace ${process.execPath} with the new release's executable for ${platform}`,
      },
      node,
      platform,
      refreshTokens: '0600 files under $SSHCA_HOME/tokens (the single executable carries no OS keyring module)',
    }
  }
  const root = packageRoot()
  const {version} = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {version: string}
  let refreshTokens =
    'the OS keyring when one answers (Secret Service, Keychain, Credential Manager), else 0600 files under $SSHCA_HOME/tokens'
  try {
    await import('@napi-rs/keyring')
  } catch (err) {
    refreshTokens = `0600 files under $SSHCA_HOME/tokens (the keyring module does not load here: ${(err as Error).message.split('\n')[0]})`
  }
  return {version, installed: installKind(root), node, platform, refreshTokens}
}

export function renderVersion(v: VersionInfo): string {
  return [
    `sshca ${v.version}`,
    `  installed:      ${v.installed.how}`,
    `  node:           ${v.node.version} (${v.node.path}), ${v.platform}`,
    `  refresh tokens: ${v.refreshTokens}`,
    `  upgrade:        ${v.installed.upgrade}`,
    '',
  ].join('\n')
}
