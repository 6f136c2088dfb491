/**
 * Debian's HAProxy in front of CA replicas, as docs/deploy.md sets it up: TCP mode (TLS passes
 * through to the replicas, clients pin the CA's root, not the balancer's), round robin, and an HTTPS
 * health check on GET /ready that verifies the replica's certificate against the CA root. Started in
 * the foreground on 127.0.0.1 at a free port; its admin socket answers `show stat`.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {existsSync, writeFileSync} from 'node:fs'
import {connect} from 'node:net'
import {join} from 'node:path'
import {freePort} from './postgres.ts'
import {onCleanup, runOk, waitFor} from './proc.ts'
import {tempDir} from './tmp.ts'

export interface Haproxy {
  url: string
  port: number
  /** Each server's state as the balancer sees it: UP, DOWN, … */
  states(): Promise<Record<string, string>>
  stop(): Promise<void>
}

export function haproxyConfig(o: {
  port: number
  socket: string
  caFile: string
  servers: {name: string; port: number}[]
}): string {
  return `global
  maxconn 2000
  stats socket ${o.socket} mode 600 level admin

defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout check 2s
  # a replica that refuses the connection (killed, restarting): try another
  retries 3
  option redispatch

frontend sshca
  bind 127.0.0.1:${o.port}
  default_backend replicas

backend replicas
  balance roundrobin
  option httpchk
  http-check send meth GET uri /ready ver HTTP/1.1 hdr Host 127.0.0.1
  http-check expect status 200
  default-server check check-ssl verify required ca-file ${o.caFile} inter 500ms fall 2 rise 2
${o.servers.map((s) => `  server ${s.name} 127.0.0.1:${s.port}`).join('\n')}
`
}

export async function startHaproxy(o: {caFile: string; servers: {name: string; port: number}[]}): Promise<Haproxy> {
  const dir = tempDir('sshca-haproxy-')
  const cfg = join(dir, 'haproxy.cfg')
  const socket = join(dir, 'admin.sock')
  const bin = existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy'
  let child: ChildProcess | undefined
  let port: number
  for (let attempt = 0; ; attempt++) {
    port = await freePort()
    writeFileSync(cfg, haproxyConfig({port, socket, caFile: o.caFile, servers: o.servers}))
    await runOk(bin, ['-c', '-q', '-f', cfg])
    const c = spawn(bin, ['-db', '-f', cfg], {stdio: ['ignore', 'ignore', 'pipe']})
    let err = ''
    c.stderr!.on('data', (d: Buffer) => (err += d.toString()))
    try {
      await waitFor(
        'haproxy to answer on its admin socket',
        async () => {
          if (c.exitCode !== null) throw new Error(`haproxy exited ${c.exitCode}: ${err}`)
          return adminCommand(socket, 'show info').then(
            () => true,
            () => false,
          )
        },
        15_000,
      )
      child = c
      break
    } catch (e) {
      c.kill('SIGKILL')
      if (attempt >= 3) throw e
    }
  }
  const stop = async (): Promise<void> => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((r) => child!.once('exit', r))
    child.kill('SIGTERM')
    await exited
  }
  onCleanup(stop)
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    async states() {
      const csv = await adminCommand(socket, 'show stat')
      const lines = csv.split('\n').filter((l) => l && !l.startsWith('#'))
      const out: Record<string, string> = {}
      for (const l of lines) {
        const f = l.split(',')
        if (f[0] === 'replicas' && f[1] !== 'BACKEND') out[f[1]!] = f[17]!.split(' ')[0]!
      }
      return out
    },
    stop,
  }
}

/** One command on HAProxy's admin socket; resolves with its whole answer. */
export function adminCommand(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socket)
    let out = ''
    s.setTimeout(5_000, () => s.destroy(new Error('haproxy admin socket timed out')))
    s.on('connect', () => s.end(`${command}\n`))
    s.on('data', (d) => (out += d.toString()))
    s.on('error', reject)
    s.on('close', () => resolve(out))
  })
}
