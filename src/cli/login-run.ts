/**
 * `sshca login` after its flags are parsed: shared by the oclif command and the start-up fast path
 * (bin/run.js → src/cli/fast.ts), so both behave and print alike. Interactive pieces (browser,
 * spinner, prompt) load only when a person is signing in.
 */
import {sshcaHome} from '../client/home.ts'
import {login, type LoginResult} from '../client/login.ts'
import type {LoginEvent} from '../client/oidc.ts'
import {SshcaError} from '../errors.ts'
import {readInput} from './io.ts'
import {renderLogin} from './render.ts'

export interface LoginFlags {
  context?: string | undefined
  identity?: string | undefined
  provisioner?: string | undefined
  console?: boolean
  force?: boolean
  kty: 'ed25519' | 'ecdsa'
  out?: string | undefined
  identityTokenFile?: string | undefined
  githubActions?: boolean
  audience?: string | undefined
  /** Seconds. */
  timeout: number
}

export async function runLogin(f: LoginFlags): Promise<{result: LoginResult; text: string}> {
  if (f.audience && !f.githubActions) throw new SshcaError('ERR_USAGE', '--audience applies to --github-actions only')
  const home = sshcaHome()
  const interactive = f.identityTokenFile === undefined && !f.githubActions
  const ui = interactive ? await import('./interact.ts') : undefined
  const notifier = ui?.loginNotifier()
  const abort = new AbortController()
  const onInt = (): void => abort.abort()
  process.once('SIGINT', onInt)
  try {
    const result = await login(
      {
        ...(f.context ? {context: f.context} : {}),
        ...(f.identity ? {identity: f.identity} : {}),
        ...(f.provisioner ? {provisioner: f.provisioner} : {}),
        console: Boolean(f.console),
        force: Boolean(f.force),
        kty: f.kty,
        ...(f.out ? {out: f.out} : {}),
        ...(f.identityTokenFile !== undefined ? {identityToken: await readInput(f.identityTokenFile)} : {}),
        githubActions: Boolean(f.githubActions),
        ...(f.audience ? {audience: f.audience} : {}),
      },
      {
        home,
        env: process.env,
        agent: {},
        clock: Date.now,
        tokenStore: async () => (await import('../client/token-store.ts')).defaultTokenStore(home),
        interactive: {
          openBrowser: async (url) => (ui ? ui.openBrowser(url) : false),
          ...(ui && !f.console ? {noLocalBrowser: ui.noLocalBrowser()} : {}),
          notify: (e: LoginEvent) => notifier?.notify(e),
          signal: abort.signal,
          timeoutMs: f.timeout * 1000,
        },
        ...(ui && process.stdin.isTTY && process.stderr.isTTY ? {choose: ui.chooseOnTty} : {}),
      },
    )
    notifier?.done(result.method === 'browser' || result.method === 'device' ? '✓ Signed in.' : undefined)
    // the login worked; that ssh may not learn of revoked hosts is worth a line, not a failure
    if (result.krl.note) process.stderr.write(`Note: ${result.krl.note}\n`)
    return {result, text: renderLogin(result)}
  } finally {
    notifier?.done()
    process.off('SIGINT', onInt)
  }
}
