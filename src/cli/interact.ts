/** What a person sees while a command waits on them: the browser, a spinner, a choice. */
import {spawn} from 'node:child_process'
import {openSync} from 'node:fs'
import {WriteStream} from 'node:tty'
import {createInterface} from 'node:readline/promises'
import type {LoginEvent} from '../client/login/oidc.ts'
import {SshcaError} from '../errors.ts'
import {shortDuration} from './format.ts'
import {terminalText} from '../util/text.ts'

/** Where a browser can be opened: a display, not CI, not over SSH, not BROWSER=none. */
export function canOpenBrowser(env: NodeJS.ProcessEnv = process.env, platform = process.platform): boolean {
  if (env.BROWSER === 'none' || env.CI || env.SSH_CONNECTION || env.SSH_TTY) return false
  if (platform === 'linux' || platform === 'freebsd' || platform === 'openbsd')
    return Boolean(env.DISPLAY || env.WAYLAND_DISPLAY)
  return true
}

/**
 * Why a browser on this machine cannot complete a loopback sign-in, or undefined when one can: in an
 * SSH session the person's browser is on another machine (127.0.0.1 there is not here), and a
 * Linux/BSD machine without a display has none. $BROWSER set (even to none) means the person
 * handles the URL themselves.
 */
export function noLocalBrowser(env: NodeJS.ProcessEnv = process.env, platform = process.platform): string | undefined {
  if (env.BROWSER !== undefined) return undefined
  if (env.SSH_CONNECTION || env.SSH_TTY)
    return "this is an SSH session, so your browser cannot reach this machine's 127.0.0.1"
  if (
    (platform === 'linux' || platform === 'freebsd' || platform === 'openbsd') &&
    !env.DISPLAY &&
    !env.WAYLAND_DISPLAY
  )
    return 'this machine has no display for a browser'
  return undefined
}

/** Opens `url` with $BROWSER when set, else the system's opener (the `open` package). */
export async function openBrowser(url: string, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  if (!canOpenBrowser(env)) return false
  try {
    if (env.BROWSER) {
      const child = spawn(env.BROWSER, [url], {detached: true, stdio: 'ignore'})
      child.on('error', () => undefined)
      child.unref()
      return true
    }
    const {default: open} = await import('open')
    const child = await open(url, {wait: false})
    child.on('error', () => undefined)
    return true
  } catch {
    return false
  }
}

/** A one-line spinner with a countdown on a TTY; a single line otherwise. */
export function waitIndicator(
  stream: NodeJS.WriteStream,
  text: string,
  timeoutMs: number,
): {stop(final?: string): void} {
  const end = Date.now() + timeoutMs
  if (!stream.isTTY) {
    stream.write(`${text} (up to ${shortDuration(timeoutMs / 1000)}; Ctrl-C to cancel)\n`)
    return {stop: (final) => void (final && stream.write(`${final}\n`))}
  }
  const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏']
  let i = 0
  const draw = () =>
    stream.write(
      `\r\x1b[2K${frames[i++ % frames.length]} ${text} ${shortDuration(Math.max(0, (end - Date.now()) / 1000))} left, Ctrl-C to cancel`,
    )
  draw()
  const timer = setInterval(draw, 100)
  timer.unref()
  return {
    stop(final) {
      clearInterval(timer)
      stream.write(`\r\x1b[2K${final ? `${final}\n` : ''}`)
    },
  }
}

/**
 * Where a person sees the sign-in: stderr when it is a terminal; else the controlling terminal
 * (/dev/tty), as when ssh's Match exec or a ProxyCommand runs sshca with stderr sent elsewhere;
 * stderr when there is no terminal at all (CI).
 */
export function terminalStream(): {stream: NodeJS.WriteStream; terminal: boolean} {
  if (process.stderr.isTTY || process.platform === 'win32')
    return {stream: process.stderr, terminal: Boolean(process.stderr.isTTY)}
  try {
    const fd = openSync('/dev/tty', 'w')
    const s = new WriteStream(fd)
    s.on('error', () => undefined)
    return {stream: s as NodeJS.WriteStream, terminal: true}
  } catch {
    return {stream: process.stderr, terminal: false}
  }
}

/** Prints login progress on stderr (stdout stays for results and --json); quiet keeps only what the person must act on. */
export function loginNotifier(
  stream: NodeJS.WriteStream = process.stderr,
  o: {quiet?: boolean} = {},
): {notify(e: LoginEvent): void; done(final?: string): void} {
  let spinner: {stop(final?: string): void} | undefined
  let waitingFor = 'Waiting for you to sign in in the browser…'
  // the URL, the code and the reasons come from the CA and its identity provider: never raw to the terminal
  const say = (text: string): void => void stream.write(terminalText(text))
  return {
    notify(e) {
      if (o.quiet && (e.type === 'refreshing' || e.type === 'refresh_failed')) return
      switch (e.type) {
        case 'authorization_url':
          say(
            `${e.browserOpened ? 'A browser window was opened. If it did not appear, open this URL' : 'Open this URL in a browser'} to sign in:\n\n${e.url}\n\n`,
          )
          break
        case 'device_code':
          waitingFor = 'Waiting for the code to be confirmed…'
          say(
            `On any device, open ${e.verificationUri} and enter the code:\n\n    ${e.userCode}\n\n${e.verificationUriComplete ? `(or open ${e.verificationUriComplete})\n\n` : ''}`,
          )
          break
        case 'waiting':
          spinner = waitIndicator(stream, waitingFor, e.timeoutMs)
          break
        case 'refreshing':
          say('Renewing your sign-in with the identity provider (no browser needed)…\n')
          break
        case 'refresh_failed':
          say('The saved sign-in has expired; signing in again.\n')
          break
        case 'refresh_refused_by_ca':
          say(
            'The CA does not accept a renewed sign-in (step-ca refuses an ID token from a refresh); signing in again.\n',
          )
          break
        case 'no_local_browser':
          say(
            e.usingDevice
              ? `No browser here: ${e.reason}. Using a device code instead (what --console does).\n`
              : `No browser here: ${e.reason}, and the identity provider offers no device code (--console). Open the URL below in a browser on this machine, or forward its port first: ssh -L PORT:127.0.0.1:PORT (PORT from the URL's redirect_uri).\n`,
          )
          break
        case 'refresh_token_file':
          say(
            `No OS keyring here: your refresh token is kept in ${e.file} (0600), so the next sign-in needs no browser. sshca logout removes it.\n`,
          )
          break
        case 'callback_ignored':
          // on a new line: the spinner redraws its own
          stream.write(
            `${stream.isTTY ? '\r\x1b[2K' : ''}${
              e.why === 'user'
                ? 'Ignored a request to the sign-in listener that did not come from a program of yours (another user on this machine, who can read the sign-in URL?). Still waiting; if it was your own browser, press Ctrl-C and run sshca login --console.'
                : "Ignored a request to the sign-in listener that did not carry this sign-in's state (another program on this machine?). Still waiting."
            }\n`,
          )
          break
      }
    },
    done(final) {
      spinner?.stop(final)
      spinner = undefined
    },
  }
}

/** Asks which of `names` to use, on the terminal. */
export async function chooseOnTty(names: string[]): Promise<string> {
  const rl = createInterface({input: process.stdin, output: process.stderr})
  try {
    process.stderr.write('This CA has several sign-in methods:\n')
    names.forEach((n, i) => process.stderr.write(terminalText(`  ${i + 1}) ${n}\n`)))
    const answer = (await rl.question(`Which one? [1-${names.length}] `)).trim()
    const byNumber = names[Number(answer) - 1]
    const chosen = byNumber ?? names.find((n) => n === answer)
    if (!chosen)
      throw new SshcaError('ERR_USAGE', `"${answer}" is not one of the choices`, {hint: 'pass --provisioner NAME'})
    return chosen
  } finally {
    rl.close()
  }
}
