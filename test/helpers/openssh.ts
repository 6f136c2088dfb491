/**
 * The real OpenSSH programs as test oracles and peers: ssh-keygen -L as the oracle, ssh-add, and the
 * ssh-agent/sshd/ssh launchers of src/demo/openssh.ts with their stop() registered for the root hook.
 */
import {userInfo} from 'node:os'
import * as peers from '../../src/demo/openssh.ts'
import {onCleanup, run, type RunResult} from './proc.ts'

export type {Agent, Sshd} from '../../src/demo/openssh.ts'

/** src/demo/openssh.ts's launchers, registered so the root hook stops what a failed test left. */
export async function startAgent(env: NodeJS.ProcessEnv = {}): Promise<peers.Agent> {
  const a = await peers.startAgent(env)
  onCleanup(a.stop)
  return a
}

export async function startSshd(o: peers.SshdOptions): Promise<peers.Sshd> {
  const d = await peers.startSshd(o)
  onCleanup(d.stop)
  return d
}

export function sshAdd(agent: {socket: string}, args: readonly string[]): Promise<RunResult> {
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
    return l
      .trimStart()
      .slice(name.length + 1)
      .trim()
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

/** The test's view of src/demo/openssh.ts: same launchers; ssh defaults to the current user. */
export function ssh(o: Omit<peers.SshOptions, 'user'> & {user?: string}): ReturnType<typeof peers.ssh> {
  return peers.ssh({...o, user: o.user ?? currentUser()})
}

export function currentUser(): string {
  return userInfo().username
}
