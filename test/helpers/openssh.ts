/**
 * The real OpenSSH programs as test oracles and peers: ssh-agent, ssh-keygen, sshd and ssh, each on
 * loopback in a private directory, background ones stopped by pid.
 */
import {chmodSync, readFileSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {userInfo} from 'node:os'
import {join} from 'node:path'
import {background, run, waitFor, waitForFile, type Background, type RunResult} from './proc.ts'
import {tempDir} from './tmp.ts'

export const SSHD = '/usr/sbin/sshd'

export interface Agent {
  socket: string
  pid: number
  stop(): Promise<void>
}

/** A private ssh-agent in the foreground (-D), so its pid is ours to stop. */
export async function startAgent(env: NodeJS.ProcessEnv = {}): Promise<Agent> {
  const dir = tempDir('sshca-agent-')
  const socket = join(dir, 'agent.sock')
  const bg = background('ssh-agent', ['-D', '-a', socket], {env: {...process.env, SSH_ASKPASS: '/bin/false', DISPLAY: '', ...env}})
  await waitForFile(socket)
  return {socket, pid: bg.pid, stop: () => bg.stop()}
}

export function sshAdd(agent: Agent, args: readonly string[]): Promise<RunResult> {
  return run('ssh-add', args, {env: {...process.env, SSH_AUTH_SOCK: agent.socket}})
}

/** Fields of one certificate as `ssh-keygen -L` prints them (TZ=UTC). */
export interface KeygenCert {
  type: string
  certType: 'user' | 'host'
  publicKey: string
  signingCa: string
  signingAlgorithm: string
  keyId: string
  serial: string
  valid: string
  principals: string[]
  criticalOptions: string[]
  extensions: string[]
}

export async function keygenShow(file: string): Promise<KeygenCert> {
  const r = await run('ssh-keygen', ['-L', '-f', file], {env: {...process.env, TZ: 'UTC'}})
  if (r.code !== 0) throw new Error(`ssh-keygen -L refused ${file}: ${r.stderr}`)
  return parseKeygenShow(r.stdout)
}

export function parseKeygenShow(text: string): KeygenCert {
  const lines = text.split('\n').slice(1)
  const field = (name: string): string => {
    const l = lines.find((x) => x.trimStart().startsWith(`${name}:`))
    if (l === undefined) throw new Error(`ssh-keygen -L output has no ${name}:\n${text}`)
    return l.trimStart().slice(name.length + 1).trim()
  }
  const list = (name: string): string[] => {
    const i = lines.findIndex((x) => x.trimStart().startsWith(`${name}:`))
    if (lines[i]!.includes('(none)')) return []
    const out: string[] = []
    for (const l of lines.slice(i + 1)) {
      if (!l.startsWith('                ')) break
      out.push(l.trim())
    }
    return out
  }
  const type = field('Type')
  const ca = /^(\S+) (\S+) \(using (\S+)\)$/.exec(field('Signing CA'))!
  return {
    type: type.split(' ')[0]!,
    certType: type.endsWith('host certificate') ? 'host' : 'user',
    publicKey: field('Public key'),
    signingCa: `${ca[1]} ${ca[2]}`,
    signingAlgorithm: ca[3]!,
    keyId: JSON.parse(field('Key ID')) as string,
    serial: field('Serial'),
    valid: field('Valid'),
    principals: list('Principals'),
    criticalOptions: list('Critical Options'),
    extensions: list('Extensions'),
  }
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
  /** openssh-key-v1 text of the host key; a fresh ed25519 key when omitted. */
  hostKey?: {privateText: string; publicLine: string}
  /** The host certificate line to present (HostCertificate). */
  hostCertificate?: string
  /** A KRL or key list for RevokedKeys. */
  revokedKeysFile?: string
  extraConfig?: string[]
}

export interface Sshd {
  port: number
  pid: number
  dir: string
  hostPublicLine: string
  log(): string
  stop(): Promise<void>
}

export async function startSshd(opts: SshdOptions): Promise<Sshd> {
  const dir = tempDir('sshca-sshd-')
  const hostKeyPath = join(dir, 'ssh_host_ed25519_key')
  let hostPublicLine: string
  if (opts.hostKey) {
    writeFileSync(hostKeyPath, opts.hostKey.privateText, {mode: 0o600})
    hostPublicLine = opts.hostKey.publicLine
  } else {
    const r = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKeyPath])
    if (r.code !== 0) throw new Error(r.stderr)
    hostPublicLine = readFileSync(`${hostKeyPath}.pub`, 'utf8').trim()
  }
  chmodSync(hostKeyPath, 0o600)
  const caFile = join(dir, 'user_ca.pub')
  writeFileSync(caFile, opts.userCaKeys.map((l) => `${l}\n`).join(''))
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
    const certPath = `${hostKeyPath}-cert.pub`
    writeFileSync(certPath, `${opts.hostCertificate}\n`)
    config.push(`HostCertificate ${certPath}`)
  }
  if (opts.revokedKeysFile) config.push(`RevokedKeys ${opts.revokedKeysFile}`)
  config.push(...(opts.extraConfig ?? []))
  const configPath = join(dir, 'sshd_config')
  writeFileSync(configPath, config.join('\n') + '\n')

  for (let attempt = 0; ; attempt++) {
    const port = await freePort()
    const bg: Background = background(SSHD, ['-D', '-e', '-f', configPath, '-p', String(port)])
    try {
      await waitFor(`sshd on port ${port}`, () => bg.output().includes(`Server listening on 127.0.0.1 port ${port}`) || bg.child.exitCode !== null, 10_000)
    } catch (err) {
      await bg.stop()
      throw err
    }
    if (bg.child.exitCode === null) {
      return {port, pid: bg.pid, dir, hostPublicLine, log: () => bg.output(), stop: () => bg.stop()}
    }
    if (attempt >= 3 || !/Address already in use|Bind to port/.test(bg.output())) throw new Error(`sshd did not start:\n${bg.output()}`)
  }
}

export interface SshOptions {
  port: number
  user?: string
  agentSocket: string
  knownHostsFile?: string
  /** Anything else for ssh -o. */
  options?: string[]
  command?: string
  identityFile?: string
}

/** Runs `ssh` non-interactively against a test sshd; never reads ~/.ssh. */
export function ssh(o: SshOptions): Promise<RunResult> {
  const known = o.knownHostsFile ?? '/dev/null'
  const args = [
    '-F', '/dev/null',
    '-p', String(o.port),
    '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${known}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', `StrictHostKeyChecking=${o.knownHostsFile ? 'yes' : 'no'}`,
    '-o', 'ConnectTimeout=10',
    '-o', 'LogLevel=ERROR',
    '-o', `IdentityAgent=${o.agentSocket}`,
    ...(o.identityFile ? ['-i', o.identityFile, '-o', 'IdentitiesOnly=yes'] : []),
    ...(o.options ?? []).flatMap((x) => ['-o', x]),
    `${o.user ?? currentUser()}@127.0.0.1`,
    o.command ?? 'true',
  ]
  return run('ssh', args, {env: {...process.env, SSH_AUTH_SOCK: o.agentSocket}, timeoutMs: 20_000})
}

export function currentUser(): string {
  return userInfo().username
}
