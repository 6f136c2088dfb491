/**
 * Throwaway OpenSSH peers on loopback, for `sshca demo` and the tests: a private ssh-agent and an
 * sshd that trusts given user CA keys and presents a host certificate. Each runs in the foreground
 * (-D) so its pid is ours; stop() ends it and removes its directory.
 */
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {connect, createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

export const SSHD = '/usr/sbin/sshd'

export interface Daemon {
  pid: number
  dir: string
  log(): string
  stop(): Promise<void>
}

/** A foreground child; stop() ends it (SIGTERM, then SIGKILL) and removes `dir`. */
function daemon(cmd: string, args: string[], dir: string, env?: NodeJS.ProcessEnv): Daemon & {child: ChildProcess} {
  const child = spawn(cmd, args, {stdio: ['ignore', 'pipe', 'pipe'], ...(env ? {env} : {})})
  let out = ''
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  return {
    child,
    pid: child.pid!,
    dir,
    log: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        const t = setTimeout(() => child.kill('SIGKILL'), 3000)
        await exited
        clearTimeout(t)
      }
      rmSync(dir, {recursive: true, force: true})
    },
  }
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await check()) return
    await sleep(20)
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** True when something accepts connections on the unix socket (bind creates the file before listen). */
function accepting(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(socket)
    c.once('connect', () => {
      c.destroy()
      resolve(true)
    })
    c.once('error', () => resolve(false))
  })
}

export interface Agent extends Daemon {
  socket: string
}

/** A private ssh-agent; SSH_ASKPASS=/bin/false makes every confirmation a refusal. */
export async function startAgent(env: NodeJS.ProcessEnv = {}): Promise<Agent> {
  const dir = mkdtempSync(join(tmpdir(), 'sshca-agent-'))
  const socket = join(dir, 'agent.sock')
  const d = daemon('ssh-agent', ['-D', '-a', socket], dir, {
    ...process.env,
    SSH_ASKPASS: '/bin/false',
    DISPLAY: '',
    ...env,
  })
  await until('ssh-agent', async () => d.child.exitCode !== null || (existsSync(socket) && (await accepting(socket))))
  if (d.child.exitCode !== null) throw new Error(`ssh-agent did not start: ${d.log()}`)
  return {...d, socket}
}

/** A loopback port the OS picked a moment ago (sshd cannot bind port 0 and report it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const {port} = s.address() as {port: number}
      s.close(() => resolve(port))
    })
  })
}

export interface SshdOptions {
  /** authorized_keys-style lines of the user CA keys sshd trusts (TrustedUserCAKeys). */
  userCaKeys: string[]
  /** Instead: the TrustedUserCAKeys file to read (sshd reads it at each login; something else keeps it current). */
  userCaKeysFile?: string
  /** openssh-key-v1 text of the host key, and its public line; a fresh ed25519 key when omitted. */
  hostKey?: {privateText: string; publicLine: string}
  /** The host certificate line to present (HostCertificate). */
  hostCertificate?: string
  /** A KRL or key list for RevokedKeys. */
  revokedKeysFile?: string
  extraConfig?: string[]
}

export interface Sshd extends Daemon {
  port: number
  hostPublicLine: string
}

export async function startSshd(opts: SshdOptions): Promise<Sshd> {
  const dir = mkdtempSync(join(tmpdir(), 'sshca-sshd-'))
  const hostKeyPath = join(dir, 'ssh_host_ed25519_key')
  let hostPublicLine: string
  if (opts.hostKey) {
    writeFileSync(hostKeyPath, opts.hostKey.privateText, {mode: 0o600})
    hostPublicLine = opts.hostKey.publicLine
  } else {
    const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKeyPath])
    if (r.status !== 0) throw new Error(`ssh-keygen: ${r.stderr}`)
    hostPublicLine = readFileSync(`${hostKeyPath}.pub`, 'utf8').trim()
  }
  const caFile = opts.userCaKeysFile ?? join(dir, 'user_ca.pub')
  if (!opts.userCaKeysFile) writeFileSync(caFile, opts.userCaKeys.map((l) => `${l}\n`).join(''))
  const config = [
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKeyPath}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `TrustedUserCAKeys ${caFile}`,
    'AuthorizedKeysFile none',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'UsePAM no',
    'StrictModes no',
    'LogLevel VERBOSE',
    'MaxStartups 100',
  ]
  if (opts.hostCertificate) {
    writeFileSync(`${hostKeyPath}-cert.pub`, `${opts.hostCertificate}\n`)
    config.push(`HostCertificate ${hostKeyPath}-cert.pub`)
  }
  if (opts.revokedKeysFile) config.push(`RevokedKeys ${opts.revokedKeysFile}`)
  config.push(...(opts.extraConfig ?? []))
  const configPath = join(dir, 'sshd_config')
  writeFileSync(configPath, config.join('\n') + '\n')
  // the port is free when picked; another process may take it before sshd binds: then pick again
  for (let attempt = 0; ; attempt++) {
    const port = await freePort()
    const d = daemon(SSHD, ['-D', '-e', '-f', configPath, '-p', String(port)], dir)
    await until(
      `sshd on port ${port}`,
      () => d.log().includes(`Server listening on 127.0.0.1 port ${port}`) || d.child.exitCode !== null,
    )
    if (d.child.exitCode === null) return {...d, port, hostPublicLine}
    if (attempt >= 3 || !/Address already in use|Bind to port/.test(d.log())) {
      await d.stop()
      throw new Error(`sshd did not start:\n${d.log()}`)
    }
  }
}

export interface SshOptions {
  port: number
  user: string
  agentSocket: string
  /** With it, StrictHostKeyChecking=yes against this file only; without, host keys are not checked. */
  knownHostsFile?: string
  options?: string[]
  command?: string
}

/** Runs `ssh` non-interactively against a loopback sshd; never reads ~/.ssh/config. */
export function ssh(o: SshOptions): Promise<{code: number | null; stdout: string; stderr: string}> {
  const args = [
    '-F',
    '/dev/null',
    '-p',
    String(o.port),
    '-o',
    'BatchMode=yes',
    '-o',
    `UserKnownHostsFile=${o.knownHostsFile ?? '/dev/null'}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    `StrictHostKeyChecking=${o.knownHostsFile ? 'yes' : 'no'}`,
    '-o',
    'ConnectTimeout=10',
    '-o',
    'LogLevel=ERROR',
    '-o',
    `IdentityAgent=${o.agentSocket}`,
    ...(o.options ?? []).flatMap((x) => ['-o', x]),
    `${o.user}@127.0.0.1`,
    o.command ?? 'true',
  ]
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', args, {
      env: {...process.env, SSH_AUTH_SOCK: o.agentSocket},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const t = setTimeout(() => child.kill('SIGKILL'), 30_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(t)
      resolve({code, stdout, stderr})
    })
  })
}
