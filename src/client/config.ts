/**
 * `sshca config`: the client's known_hosts block (so ssh verifies host certificates instead of
 * asking), and what a server needs: the user CA keys for TrustedUserCAKeys and the sshd snippet.
 */
import {chmod, copyFile, readFile, stat} from 'node:fs/promises'
import {homedir} from 'node:os'
import {dirname, join} from 'node:path'
import {SshcaError} from '../errors.ts'
import {SshRootsResponse} from '../protocol/api.ts'
import {parseKrl} from '../ssh/krl.ts'
import {PublicKey} from '../ssh/keys.ts'
import {exists, privateDir, writeFileAtomic} from '../util/fs.ts'
import {CaClient} from './ca-client.ts'
import {CONTEXT_FILE, loadContext, type Context, type ContextSettings} from './home.ts'
import {managedBlock, mergeKnownHosts} from './known-hosts.ts'

/** The CA's current SSH keys over pinned TLS; the context's cached copy is updated when they changed. */
export async function refreshSshRoots(ctx: Context): Promise<Context> {
  const ca = new CaClient(ctx.caUrl, ctx.rootPem)
  try {
    const roots = await ca.call('GET', '/ssh/roots', SshRootsResponse)
    const line = (b64: string, what: string) => PublicKey.fromBlob(Buffer.from(b64, 'base64')).toLine(`${ctx.name} ${what}`)
    const next: Context = {...ctx, userCaKeys: roots.userKey.map((k) => line(k, 'user CA')), hostCaKeys: roots.hostKey.map((k) => line(k, 'host CA')), hostPattern: roots.hostPattern ?? ctx.hostPattern}
    if (JSON.stringify([next.userCaKeys, next.hostCaKeys, next.hostPattern]) !== JSON.stringify([ctx.userCaKeys, ctx.hostCaKeys, ctx.hostPattern])) {
      const {rootPem: _r, dir: _d, ...settings} = next
      await writeFileAtomic(join(ctx.dir, CONTEXT_FILE), `${JSON.stringify(settings satisfies ContextSettings, null, 2)}\n`)
    }
    return next
  } finally {
    ca.close()
  }
}

export interface KnownHostsOptions {
  context?: string
  pattern?: string
  /** Default ~/.ssh/known_hosts. */
  file?: string
  dryRun?: boolean
}

export interface KnownHostsResult {
  context: string
  file: string
  pattern: string
  block: string
  changed: boolean
  written: boolean
  backup: string | null
}

export async function configureKnownHosts(home: string, o: KnownHostsOptions): Promise<KnownHostsResult> {
  const ctx = await refreshSshRoots(await loadContext(home, o.context))
  if (ctx.hostCaKeys.length === 0) throw new SshcaError('ERR_CA_BAD_RESPONSE', 'the CA publishes no host CA key')
  const file = o.file ?? join(homedir(), '.ssh', 'known_hosts')
  const pattern = o.pattern ?? ctx.hostPattern ?? '*'
  if (/\s/.test(pattern) || pattern === '') throw new SshcaError('ERR_USAGE', `--pattern "${pattern}" must be one known_hosts host pattern list (no spaces)`)
  const hostKeys = ctx.hostCaKeys.map((l) => PublicKey.parseLine(l).key.toLine(`${ctx.name} host CA`))
  const existed = await exists(file)
  const existing = existed ? await readFile(file, 'utf8') : ''
  const {text, changed} = mergeKnownHosts(existing, ctx.name, pattern, hostKeys)
  const result: KnownHostsResult = {context: ctx.name, file, pattern, block: managedBlock(ctx.name, pattern, hostKeys), changed, written: false, backup: null}
  if (o.dryRun || !changed) return result
  await privateDir(dirname(file))
  let mode = 0o644
  if (existed) {
    mode = (await stat(file)).mode & 0o777
    result.backup = `${file}.sshca-backup`
    await copyFile(file, result.backup)
    await chmod(result.backup, mode)
  }
  await writeFileAtomic(file, text, mode)
  result.written = true
  return result
}

export async function caKeys(home: string, o: {context?: string; host?: boolean}): Promise<{context: string; kind: 'user' | 'host'; keys: string[]}> {
  const ctx = await refreshSshRoots(await loadContext(home, o.context))
  return {context: ctx.name, kind: o.host ? 'host' : 'user', keys: o.host ? ctx.hostCaKeys : ctx.userCaKeys}
}

export interface HostConfigOptions {
  context?: string
  /** Where sshd's files live (default /etc/ssh). */
  sshdDir?: string
  /** Where the systemd units go (default /etc/systemd/system). */
  systemdDir?: string
  /** The command the renewal service runs (default: this node and this sshca). */
  sshcaCommand?: string
  dryRun?: boolean
}

export interface HostConfigResult {
  context: string
  files: {path: string; content: string | Buffer; mode: number}[]
  written: boolean
  next: string[]
}

export const KRL_FILE = 'sshca_revoked_keys.krl'

/**
 * What a server needs: the user CA key file and the sshd snippet (TrustedUserCAKeys, HostCertificate
 * for each host key, RevokedKeys with a current KRL: sshd refuses every key when that file is
 * missing), and a daily systemd timer that renews the host certificates and refreshes the KRL.
 */
export async function configureHost(home: string, o: HostConfigOptions): Promise<HostConfigResult> {
  const ctx = await refreshSshRoots(await loadContext(home, o.context))
  const dir = o.sshdDir ?? '/etc/ssh'
  const unitDir = o.systemdDir ?? '/etc/systemd/system'
  const caFile = join(dir, 'sshca_user_ca.pub')
  const krlFile = join(dir, KRL_FILE)
  const present: string[] = []
  for (const k of ['ssh_host_ed25519_key', 'ssh_host_ecdsa_key', 'ssh_host_rsa_key']) if (await exists(join(dir, `${k}.pub`))) present.push(k)
  const ca = new CaClient(ctx.caUrl, ctx.rootPem)
  let krl: Buffer
  try {
    krl = await ca.bytes('/ssh/krl')
  } finally {
    ca.close()
  }
  parseKrl(krl)
  const snippet = [
    `# Managed by sshca (sshca config --host) for the CA "${ctx.name}" at ${ctx.caUrl}.`,
    '# Users log in with short-lived certificates from this CA; a principal must equal the login name.',
    `TrustedUserCAKeys ${caFile}`,
    '# Certificates the CA revoked (refreshed daily by sshca-renew.timer).',
    `RevokedKeys ${krlFile}`,
    '# Present host certificates (issue them with: sshca certificate --host --sign …).',
    ...present.map((k) => `HostCertificate ${join(dir, `${k}-cert.pub`)}`),
    '',
  ].join('\n')
  const sshca = o.sshcaCommand ?? `${process.execPath} ${process.argv[1] ?? 'sshca'}`
  const service = [
    '[Unit]',
    `Description=Renew this host's SSH certificates and the revocation list from the sshca CA "${ctx.name}"`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=oneshot',
    `Environment=SSHCA_HOME=${home}`,
    ...present.map((k) => `ExecStart=${sshca} renew --context ${ctx.name} ${join(dir, `${k}-cert.pub`)} ${join(dir, k)}`),
    `ExecStart=${sshca} krl --context ${ctx.name} --out ${krlFile}`,
    '# sshd rereads RevokedKeys itself; a reload makes it present the renewed certificates',
    'ExecStartPost=-/bin/systemctl try-reload-or-restart ssh.service sshd.service',
    '',
  ].join('\n')
  const timer = ['[Unit]', 'Description=Daily renewal of the SSH host certificates (sshca)', '', '[Timer]', 'OnCalendar=daily', 'RandomizedDelaySec=1h', 'Persistent=true', '', '[Install]', 'WantedBy=timers.target', ''].join('\n')
  const files = [
    {path: caFile, content: ctx.userCaKeys.map((l) => `${l}\n`).join(''), mode: 0o644},
    {path: krlFile, content: krl, mode: 0o644},
    {path: join(dir, 'sshd_config.d', '50-sshca.conf'), content: snippet, mode: 0o644},
    {path: join(unitDir, 'sshca-renew.service'), content: service, mode: 0o644},
    {path: join(unitDir, 'sshca-renew.timer'), content: timer, mode: 0o644},
  ]
  const next = [
    ...(present.length ? [] : [`sshca certificate --host --sign --token TOKEN $(hostname -f) ${join(dir, 'ssh_host_ed25519_key.pub')}   # then run sshca config --host again`]),
    'sshd -t && systemctl reload ssh          # check, then apply',
    'systemctl daemon-reload && systemctl enable --now sshca-renew.timer',
  ]
  if (o.dryRun) return {context: ctx.name, files, written: false, next}
  for (const f of files) {
    await privateDir(dirname(f.path))
    await writeFileAtomic(f.path, f.content, f.mode)
  }
  return {context: ctx.name, files, written: true, next}
}
