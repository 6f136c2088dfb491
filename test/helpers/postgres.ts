/**
 * A real PostgreSQL for tests and benchmarks, started like sshd: Debian's server binaries
 * (/usr/lib/postgresql/N/bin) run `initdb` and `pg_ctl` in a temporary directory this harness owns,
 * listening on 127.0.0.1 at a free port and on a socket in that directory, never the system cluster.
 * As root the server runs as the `postgres` user (`runuser`), since PostgreSQL refuses to run as root.
 *
 * The cluster has a superuser `postgres` (trust on the private socket only) and a role `sshca` with a
 * password (scram-sha-256 over TCP), owning the database `sshca`: the CA connects as an operator's
 * would, with its password from a file.
 */
import {execFileSync} from 'node:child_process'
import {chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import pgLib from 'pg'
import {onCleanup, run, type RunResult} from './proc.ts'

export interface TestPostgres {
  /** postgres://sshca@127.0.0.1:PORT/sshca (no password: it is in passwordFile). */
  url: string
  port: number
  password: string
  /** 0600, the role's password and a newline. */
  passwordFile: string
  /** ca.yaml's db block for this server. */
  db(over?: Record<string, unknown>): Record<string, unknown>
  /** Runs SQL as the superuser through psql on the private socket. */
  psql(sql: string, database?: string): Promise<string>
  /** A fresh empty database owned by sshca; returns its URL. */
  createDatabase(): Promise<string>
  /** `pg_ctl stop -m fast`: sessions are terminated, new connections refused. */
  stop(): Promise<void>
  /** Starts it again on the same port and directory. */
  start(): Promise<void>
  /** Stops it for good and removes its directory. */
  destroy(): Promise<void>
  /**
   * A session of the sshca role holding the advisory lock `key` (as a replica cut off from the network
   * keeps it: PostgreSQL holds its session for hours); `release()` ends that session.
   */
  holdLock(key: string): Promise<{release(): Promise<void>}>
}

/** Debian's server binaries, newest major first; undefined when the package is not installed. */
export function postgresBinDir(): string | undefined {
  const base = '/usr/lib/postgresql'
  if (!existsSync(base)) return undefined
  const majors = readdirSync(base)
    .filter((d) => /^\d+$/.test(d) && existsSync(join(base, d, 'bin', 'pg_ctl')))
    .sort((a, b) => Number(b) - Number(a))
  return majors.length ? join(base, majors[0]!, 'bin') : undefined
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const {port} = s.address() as {port: number}
      s.close(() => resolve(port))
    })
  })
}

const asRoot = process.getuid?.() === 0

/** A command as the server's owner: `runuser -u postgres --` when we are root. */
function owner(cmd: string, args: string[]): [string, string[]] {
  return asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]
}

let counter = 0

export interface PostgresOptions {
  /** fsync off makes tests independent of the disk (the default here); benchmarks keep it on. */
  fsync?: boolean
  /** Extra `-c name=value` server settings; `{dir}` in a value is the server's directory. */
  settings?: Record<string, string | number>
  /** Files written into the server's directory (0600, owned by the server's user) before it starts: TLS keys. */
  files?: Record<string, string>
}

export async function startPostgres(o: PostgresOptions = {}): Promise<TestPostgres> {
  const bin = postgresBinDir()
  if (!bin) throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql: run npm run test:deps')
  const dir = mkdtempSync(join(tmpdir(), 'sshca-pg-'))
  const data = join(dir, 'data')
  const log = join(dir, 'server.log')
  const password = `pw-${process.pid}-${++counter}-${Math.random().toString(36).slice(2)}`
  const passwordFile = join(dir, 'sshca-password')
  writeFileSync(passwordFile, `${password}\n`, {mode: 0o600})
  if (asRoot) {
    chownSync(dir, uidOf('postgres'), gidOf('postgres'))
  }
  chmodSync(dir, 0o700)
  const pg = (cmd: string, args: string[], opts: {timeoutMs?: number} = {}): Promise<RunResult> => {
    const [c, a] = owner(join(bin, cmd), args)
    return run(c, a, {timeoutMs: opts.timeoutMs ?? 60_000, env: {...process.env, LC_ALL: 'C.UTF-8', PGTZ: 'UTC'}})
  }
  const ok = async (cmd: string, args: string[]): Promise<RunResult> => {
    const r = await pg(cmd, args)
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`)
    return r
  }
  await ok('initdb', [
    '-D',
    data,
    '-U',
    'postgres',
    '--auth-local=trust',
    '--auth-host=scram-sha-256',
    '-E',
    'UTF8',
    '--locale=C.UTF-8',
    '--no-sync',
  ])
  for (const [name, text] of Object.entries(o.files ?? {})) {
    writeFileSync(join(dir, name), text, {mode: 0o600})
    if (asRoot) chownSync(join(dir, name), uidOf('postgres'), gidOf('postgres'))
  }
  const settings: Record<string, string | number> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: dir,
    fsync: o.fsync === true ? 'on' : 'off',
    max_connections: 100,
    shared_buffers: '32MB',
    ...Object.fromEntries(
      Object.entries(o.settings ?? {}).map(([k, v]) => [k, typeof v === 'string' ? v.replaceAll('{dir}', dir) : v]),
    ),
  }
  let port = 0
  const start = async (): Promise<void> => {
    const opts = Object.entries({...settings, port})
      .map(([k, v]) => `-c ${k}=${v}`)
      .join(' ')
    await ok('pg_ctl', ['start', '-D', data, '-l', log, '-w', '-t', '60', '-o', opts])
  }
  // the port is free when we ask and taken by someone else a moment later only on a very busy box: retry
  for (let attempt = 0; ; attempt++) {
    port = await freePort()
    try {
      await start()
      break
    } catch (err) {
      if (attempt >= 3) throw err
    }
  }
  const psql = async (sql: string, database = 'postgres'): Promise<string> =>
    (
      await ok('psql', [
        '-h',
        dir,
        '-p',
        String(port),
        '-U',
        'postgres',
        '-d',
        database,
        '-v',
        'ON_ERROR_STOP=1',
        '-Atq',
        '-c',
        sql,
      ])
    ).stdout
  await psql(`CREATE ROLE sshca LOGIN PASSWORD '${password}'`)
  await psql('CREATE DATABASE sshca OWNER sshca')
  let stopped = false
  let dbs = 0
  const destroy = async (): Promise<void> => {
    if (!stopped) await pg('pg_ctl', ['stop', '-D', data, '-m', 'immediate', '-w'])
    stopped = true
    rmSync(dir, {recursive: true, force: true})
  }
  onCleanup(destroy)
  const url = `postgres://sshca@127.0.0.1:${port}/sshca`
  return {
    url,
    port,
    password,
    passwordFile,
    db: (over = {}) => ({type: 'postgresql', url, passwordFile, tls: {mode: 'disable'}, ...over}),
    psql,
    async createDatabase() {
      const name = `sshca_${++dbs}`
      await psql(`CREATE DATABASE ${name} OWNER sshca`)
      return `postgres://sshca@127.0.0.1:${port}/${name}`
    },
    async stop() {
      await ok('pg_ctl', ['stop', '-D', data, '-m', 'fast', '-w'])
    },
    start,
    destroy,
    async holdLock(key) {
      const c = new pgLib.Client({host: '127.0.0.1', port, user: 'sshca', database: 'sshca', password})
      await c.connect()
      await c.query('SELECT pg_advisory_lock($1)', [key])
      return {release: () => c.end()}
    },
  }
}

function idOf(flag: '-u' | '-g', name: string): number {
  return Number(execFileSync('id', [flag, name], {encoding: 'utf8'}).trim())
}
const uidOf = (n: string): number => idOf('-u', n)
const gidOf = (n: string): number => idOf('-g', n)
