/**
 * `sshca login` after its flags are parsed: shared by the oclif command and the start-up fast path
 * (bin/run.cjs → src/cli/fast.ts), so both behave and print alike. Interactive pieces (browser,
 * spinner, prompt) load only when a person is signing in.
 */
import {trustOnlyRoot} from '../client/ca-api/trust-only.ts'
import {retryNote, showRetryWaits} from '../client/ca-api/retry.ts'
import {sshcaHome} from '../client/home/home.ts'
import type {LoginDeps, LoginResult} from '../client/login/login-types.ts'
import type {LoginEvent} from '../client/login/oidc.ts'
import {SshcaError} from '../errors.ts'
import {readSecretInput, secretFileHint} from './io.ts'
import {assertOwnerOnlyFile} from '../util/fs.ts'
import {renderFallback, renderLogin} from './render.ts'
import {terminalText} from '../util/text.ts'

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
  /** Only when no valid certificate of the context is at hand (ssh's Match exec, proxycommand). */
  ensure?: boolean
  /** Nothing on stdout, no progress notes; the sign-in's URL, code and prompts still reach the terminal. */
  quiet?: boolean
}

/**
 * What the client's flows need to sign a person in from this process: browser, terminal, keyring; and
 * the identity token of --identity-token-file, read first. That read can block the only thread for
 * good (a FIFO nobody writes to): it comes before the session takes Ctrl-C over, so Node's own SIGINT
 * handling can still end the process.
 */
export async function loginSession(
  f: Pick<LoginFlags, 'identityTokenFile' | 'githubActions' | 'console' | 'timeout' | 'quiet' | 'ensure'>,
): Promise<{deps: LoginDeps; identityToken: string | undefined; done(final?: string): void}> {
  // a token file others can read is one they can spend first: refused (stdin, "-", stays allowed)
  const identityToken =
    f.identityTokenFile !== undefined
      ? await readSecretInput(f.identityTokenFile, 'ID token', '--identity-token-file')
      : undefined
  const home = sshcaHome()
  showRetryWaits(f.quiet ? undefined : (w, caUrl) => process.stderr.write(terminalText(retryNote(w, caUrl))))
  const interactive = f.identityTokenFile === undefined && !f.githubActions
  const ui = interactive ? await import('./interact.ts') : undefined
  // under ssh's Match exec stdout is /dev/null and stderr may be a log: a person must still see the URL
  const term = ui?.terminalStream()
  const notifier = ui && term ? ui.loginNotifier(term.stream, {quiet: Boolean(f.quiet)}) : undefined
  const abort = new AbortController()
  const onInt = (): void => abort.abort()
  process.once('SIGINT', onInt)
  const deps: LoginDeps = {
    home,
    env: process.env,
    agent: {},
    clock: Date.now,
    tokenStore: async () => (await import('../client/home/token-store.ts')).defaultTokenStore(home),
    // a token file: no identity provider to reach, only the CA
    ...(f.identityTokenFile !== undefined && !f.githubActions ? {trustOnly: trustOnlyRoot} : {}),
    interactive: {
      openBrowser: async (url) => (ui ? ui.openBrowser(url) : false),
      ...(ui && !f.console ? {noLocalBrowser: ui.noLocalBrowser()} : {}),
      notify: (e: LoginEvent) => notifier?.notify(e),
      signal: abort.signal,
      timeoutMs: f.timeout * 1000,
      // before an ssh connection, a sign-in nobody can see must fail now, not in five minutes
      ...(f.ensure && ui && term ? {canPrompt: term.terminal || ui.canOpenBrowser()} : {}),
    },
    ...(ui && process.stdin.isTTY && process.stderr.isTTY ? {choose: ui.chooseOnTty} : {}),
  }
  return {
    deps,
    identityToken,
    done(final) {
      notifier?.done(final)
      process.off('SIGINT', onInt)
    },
  }
}

export async function runLogin(f: LoginFlags): Promise<{result: LoginResult; text: string}> {
  if (f.audience && !f.githubActions) throw new SshcaError('ERR_USAGE', '--audience applies to --github-actions only')
  if (f.ensure) {
    // proxycommand and ssh's Match exec name a token file on every connection: one others can read is
    // refused even while a certificate is held and the file is not read
    if (f.identityTokenFile !== undefined && f.identityTokenFile !== '-')
      assertOwnerOnlyFile(f.identityTokenFile, 'ID token', secretFileHint(f.identityTokenFile, '--identity-token-file'))
    // before every ssh connection: answer from the agent alone, before the sign-in machinery loads
    const {heldCertificate} = await import('../client/login/ensure.ts')
    const {loadContext} = await import('../client/home/home.ts')
    const held = await heldCertificate(
      await loadContext(sshcaHome(), f.context),
      {...(f.identity ? {identity: f.identity} : {}), ...(f.out ? {out: f.out} : {})},
      {agent: {}, clock: Date.now},
    )
    if (held) return {result: held, text: f.quiet ? '' : renderLogin(held)}
  }
  const {login} = await import('../client/login/login.ts')
  const session = await loginSession(f)
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
        ...(session.identityToken !== undefined ? {identityToken: session.identityToken} : {}),
        githubActions: Boolean(f.githubActions),
        ...(f.audience ? {audience: f.audience} : {}),
        ensure: Boolean(f.ensure),
      },
      session.deps,
    )
    session.done(!f.quiet && (result.method === 'browser' || result.method === 'device') ? '✓ Signed in.' : undefined)
    // the login worked; that ssh may not learn of revoked hosts is worth a line, not a failure
    if (result.krl?.note && !f.quiet) process.stderr.write(terminalText(`Note: ${result.krl.note}\n`))
    if (result.krl?.enabledIn && !f.quiet)
      process.stderr.write(
        terminalText(
          `ssh now checks the revocation list of "${result.context}": its block in ${result.krl.enabledIn} names ${result.krl.file}.\n`,
        ),
      )
    // the certificate went to files: the person must know, quiet or not
    if (result.agent.fallback) process.stderr.write(terminalText(`Note: ${renderFallback(result)}\n`))
    return {result, text: f.quiet ? '' : renderLogin(result)}
  } finally {
    session.done()
  }
}
