/**
 * `sshca proxycommand USER HOST PORT` after parsing, shared by oclif and the fast path (it runs for
 * every connection ssh opens, so it skips oclif). stdout is ssh's transport: the login is quiet and
 * everything a person must read goes to the terminal.
 */
import {sshcaHome} from '../client/home/home.ts'
import {contextForHost, pipeToHost} from '../client/login/proxy.ts'
import {SshcaError} from '../errors.ts'
import {runLogin} from './login-run.ts'
import {terminalText} from '../util/text.ts'

export interface ProxyFlags {
  user: string
  host: string
  port: string
  context?: string | undefined
  identityTokenFile?: string | undefined
  timeout?: number
}

export async function runProxy(
  f: ProxyFlags,
): Promise<{result: {context: string; host: string; port: number; sent: number; received: number}; text: string}> {
  const port = Number(f.port)
  if (!/^\d+$/.test(f.port) || port < 1 || port > 65535)
    throw new SshcaError('ERR_USAGE', `"${f.port}" is not a port (1-65535)`)
  // standard input is ssh's stream: a token cannot come from there
  if (f.identityTokenFile === '-')
    throw new SshcaError(
      'ERR_USAGE',
      'proxycommand cannot read a token from standard input (it carries the SSH connection)',
      {hint: 'give a file: --identity-token-file FILE'},
    )
  const home = sshcaHome()
  const context = f.context ?? (await contextForHost(home, f.host))
  const {result} = await runLogin({
    context,
    identityTokenFile: f.identityTokenFile,
    kty: 'ed25519',
    timeout: f.timeout ?? 300,
    ensure: true,
    quiet: true,
  })
  if (f.user && !result.certificate.principals.includes(f.user)) {
    process.stderr.write(
      terminalText(
        `sshca: the certificate of "${result.context}" names ${result.certificate.principals.join(', ')}, not ${f.user}; the host will likely refuse ${f.user}\n`,
      ),
    )
  }
  const r = await pipeToHost(f.host, port, process.stdin, process.stdout)
  process.stdin.destroy()
  return {result: {context: result.context, host: f.host, port, ...r}, text: ''}
}
