/**
 * `sshca host audit`: on an SSH server, every way in that does not go through the CA, so a fleet
 * script can track the migration off authorized_keys until nothing is left:
 *
 *   - sshd's effective settings (`sshd -T`): AuthorizedKeysFile, PasswordAuthentication,
 *     KbdInteractiveAuthentication (with PAM), AuthorizedKeysCommand, HostbasedAuthentication,
 *     GSSAPIAuthentication, and whether it trusts a user CA at all (TrustedUserCAKeys);
 *   - for each account in the passwd file, the authorized_keys files sshd would read and every key
 *     in them (a `cert-authority` line for a CA sshd already trusts is not counted);
 *   - host keys without a (current, host) certificate;
 *   - with a client context, what `sshca config --host` would write, file by file.
 *
 * sshd -T prints the configuration for a connection matched by no `Match` block: a Match block that
 * re-enables a method for some users or addresses is not seen (the result says so). Never writes.
 */
import {createPublicKey} from 'node:crypto'
import {closeSync, constants, fstatSync, openSync, readSync} from 'node:fs'
import {lstat, readFile} from 'node:fs/promises'
import {dirname, isAbsolute, join} from 'node:path'
import {SshcaError} from '../../errors.ts'
import {parseCertificateLine} from '../../ssh/cert.ts'
import {PublicKey, sha256Fingerprint, splitKeyLine} from '../../ssh/keys.ts'
import {formatError, SshReader} from '../../ssh/wire.ts'
import {configureHost} from '../setup/config.ts'
import {effectiveSshdConfig, sshdBinary, sshcaSettingsProblems, sshcaSnippetSettings} from '../local/sshd-effective.ts'
import {isoFromSeconds} from '../../util/iso-time.ts'

export interface AuditKey {
  line: number
  type: string
  fingerprint: string
  comment: string
  /** The options before the key (from=, command=, restrict …), verbatim; '' when none. */
  options: string
  /** A `cert-authority` line: it trusts a CA for this account, not a key. */
  certAuthority: boolean
  /** A cert-authority line for a CA sshd already trusts (TrustedUserCAKeys): not counted. */
  trustedCa: boolean
}

export interface AuthorizedKeysFile {
  path: string
  /** undefined when read; else why it could not be (which itself is a finding, unless it does not exist). */
  error?: string
  symlink: boolean
  keys: AuditKey[]
  /**
   * Lines that are neither comments nor keys this audit reads. sshd may still take them: a DSA key
   * where PubkeyAcceptedAlgorithms allows ssh-dss, a key type newer than sshca. A finding, not a pass.
   */
  unparsed: number
  /** Their line numbers. */
  unparsedLines: number[]
}

export interface AuditAccount {
  user: string
  uid: number
  home: string
  shell: string
  /** A login shell (not nologin/false): the account can run commands over SSH. */
  canLogin: boolean
  authorizedKeys: AuthorizedKeysFile[]
}

export interface AuditHostKey {
  path: string
  type: string | null
  fingerprint: string | null
  /** The HostCertificate that certifies this key, or null. */
  certificate: string | null
  /** Why it does not count as certified (no certificate, expired, not a host certificate). */
  problem?: string
}

export type FindingKind =
  | 'authorized_keys'
  | 'authorized_keys_unreadable'
  | 'authorized_keys_unparsed'
  | 'authorized_keys_file_setting'
  | 'password_authentication'
  | 'kbd_interactive_authentication'
  | 'authorized_keys_command'
  | 'hostbased_authentication'
  | 'gssapi_authentication'
  | 'no_trusted_user_ca'
  | 'host_key_without_certificate'
  | 'sshca_settings_not_in_effect'

export interface Finding {
  kind: FindingKind
  message: string
  remedy: string
  user?: string
  path?: string
}

export interface HostAuditResult {
  sshd: {binary: string; config: string; settings: Record<string, string[]>}
  accounts: AuditAccount[]
  hostKeys: AuditHostKey[]
  findings: Finding[]
  /** What `sshca config --host` would write (with a client context), or why that is unknown. */
  configHost:
    | {
        context: string
        files: {path: string; state: 'create' | 'change' | 'same'}[]
        certified: string[]
        skipped: {key: string; reason: string}[]
      }
    | {error: string}
    | null
  /** True when no finding remains: every way in goes through the CA. */
  clean: boolean
  notes: string[]
}

export interface HostAuditOptions {
  sshdConfig?: string
  /** The sshd binary (default: the first of /usr/sbin/sshd, /usr/local/sbin/sshd, /sbin/sshd). */
  sshd?: string
  passwd?: string
  /** With a client context: `config --host`'s directories, to compare what it would write. */
  home?: string
  context?: string
  sshdDir?: string
  systemdDir?: string
  clock?: () => number
}

const NO_LOGIN = /(^|\/)(nologin|false|sync|shutdown|halt)$/
/** The most of an authorized_keys file the audit reads; sshd reads all of it, so a larger one is a finding. */
const MAX_KEYS_FILE = 16 << 20
export interface PasswdEntry {
  user: string
  uid: number
  /** The primary group: the audit opens the account's files with it (sshd adds the account's other groups). */
  gid: number
  home: string
  shell: string
}

export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = []
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue
    const f = line.split(':')
    if (f.length < 7 || f[0] === '' || !/^\d+$/.test(f[2]!)) continue
    // a group that is no number: the user's own (sshd would not let the account in anyway)
    const gid = /^\d+$/.test(f[3]!) ? Number(f[3]) : Number(f[2])
    out.push({user: f[0]!, uid: Number(f[2]), gid, home: f[5]!, shell: f[6]!.trim()})
  }
  return out
}

/** sshd's AuthorizedKeysFile tokens (%% %h %u %U); a relative path is relative to the home directory. */
export function expandAuthorizedKeysPath(pattern: string, a: PasswdEntry): string {
  const expanded = pattern.replace(/%([%hUu])/g, (_m, t: string) =>
    t === '%' ? '%' : t === 'h' ? a.home : t === 'u' ? a.user : String(a.uid),
  )
  return isAbsolute(expanded) ? expanded : join(a.home, expanded)
}

/** The options in front of an authorized_keys line: up to the first whitespace outside double quotes. */
function optionsOf(line: string): string {
  if (/^(ssh-|ecdsa-sha2-|sk-|rsa-sha2-)/.test(line)) return ''
  let quoted = false
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (c === '\\' && quoted) i++
    else if (c === '"') quoted = !quoted
    else if (!quoted && (c === ' ' || c === '\t')) return line.slice(0, i)
  }
  return line
}

/** The FIDO key types sshd takes in authorized_keys (PROTOCOL.u2f), which sshca's key parser does not. */
const SECURITY_KEY_TYPES = new Set(['sk-ssh-ed25519@openssh.com', 'sk-ecdsa-sha2-nistp256@openssh.com'])

/** A security key's fingerprint, once its blob has PROTOCOL.u2f's fields (else ERR_SSH_FORMAT: not counted). */
function securityKeyFingerprint(blob: Buffer): string {
  const r = new SshReader(blob)
  const type = r.text('key type')
  if (type === 'sk-ecdsa-sha2-nistp256@openssh.com') {
    const point = r.text('curve') === 'nistp256' ? r.bytes('point') : Buffer.alloc(0)
    if (point.length !== 65 || point[0] !== 4) throw formatError('not a P-256 point')
    // on the curve, as sshd checks (node:crypto refuses a point that is not)
    const b64 = (b: Buffer): string => b.toString('base64url')
    const jwk = {kty: 'EC', crv: 'P-256', x: b64(point.subarray(1, 33)), y: b64(point.subarray(33))}
    try {
      createPublicKey({key: jwk, format: 'jwk'})
    } catch (err) {
      throw formatError('not a P-256 point', err)
    }
  } else if (r.bytes('public key').length !== 32) throw formatError('not an Ed25519 key')
  r.text('application')
  r.end('security key')
  return sha256Fingerprint(blob)
}

/** The keys of an authorized_keys file, with their options. */
export function parseAuthorizedKeys(
  text: string,
  trustedCas: ReadonlySet<string>,
): {keys: AuditKey[]; unparsed: number; unparsedLines: number[]} {
  const keys: AuditKey[] = []
  const unparsedLines: number[] = []
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    try {
      const {type, blob, comment} = splitKeyLine(line)
      // a security key (FIDO) logs in as well as any: sshca cannot use one, but the audit must count it
      const fingerprint = SECURITY_KEY_TYPES.has(type)
        ? securityKeyFingerprint(blob)
        : PublicKey.fromBlob(blob).fingerprint()
      const options = optionsOf(line)
      const certAuthority = /(^|,)\s*cert-authority\s*(,|$)/i.test(options)
      keys.push({
        line: i + 1,
        type,
        fingerprint,
        comment,
        options,
        certAuthority,
        trustedCa: certAuthority && trustedCas.has(fingerprint),
      })
    } catch {
      unparsedLines.push(i + 1)
    }
  })
  return {keys, unparsed: unparsedLines.length, unparsedLines}
}

async function readKeysFile(
  path: string,
  trustedCas: ReadonlySet<string>,
  account: PasswdEntry,
): Promise<AuthorizedKeysFile | undefined> {
  let symlink: boolean
  try {
    symlink = (await lstat(path)).isSymbolicLink()
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined
    return {path, error: code ?? (err as Error).message, symlink: false, keys: [], unparsed: 0, unparsedLines: []}
  }
  try {
    const buf = readRegularFile(path, MAX_KEYS_FILE, account)
    // what sshd does not read (a FIFO, a device, a folder) lets no one in: sshd logs it and goes on
    if (buf === undefined) return undefined
    if (buf.length > MAX_KEYS_FILE)
      return {
        path,
        error: `larger than ${MAX_KEYS_FILE >> 20} MiB, not read`,
        symlink,
        keys: [],
        unparsed: 0,
        unparsedLines: [],
      }
    return {path, symlink, ...parseAuthorizedKeys(buf.toString('utf8'), trustedCas)}
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined // a dangling symlink: sshd reads nothing either
    return {path, error: code ?? (err as Error).message, symlink, keys: [], unparsed: 0, unparsedLines: []}
  }
}

/**
 * A file as sshd opens authorized_keys (auth_openfile, as the account: temporarily_use_uid): without
 * blocking, so that a FIFO cannot hang the audit, and only when it is a regular file (undefined
 * otherwise: /dev/zero would never end); at most `max` + 1 bytes, so that the caller sees it was larger.
 * Opened with the account's uid and primary group when the audit runs as root: the path is the account's to
 * choose (a link from its home), and root must open nothing there that the account could not (a
 * root-only file, whose keys the audit would list; a device whose opening acts, as /dev/watchdog arms
 * a reboot). What the account cannot open, sshd cannot read either: EACCES, a finding.
 */
function readRegularFile(path: string, max: number, account: PasswdEntry): Buffer | undefined {
  const fd = asAccount(account, () => openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY))
  try {
    if (!fstatSync(fd).isFile()) return undefined
    const buf = Buffer.alloc(max + 1)
    let n = 0
    for (let r; n < buf.length && (r = readSync(fd, buf, n, buf.length - n, n)) > 0;) n += r
    return buf.subarray(0, n)
  } finally {
    closeSync(fd)
  }
}

/**
 * Runs `open` (synchronous: no other work of this process runs meanwhile) with the account's uid as
 * the effective one and its gid as the only group, as sshd does before it reads an account's
 * authorized_keys; root's again afterwards. As it is when the audit runs as another user than root
 * (it can open only what it may), or for root's own account.
 */
export function asAccount<T>(account: Pick<PasswdEntry, 'uid' | 'gid'>, open: () => T): T {
  const p = process
  if (p.geteuid?.() !== 0 || account.uid === 0 || !p.seteuid || !p.setegid || !p.setgroups || !p.getgroups)
    return open()
  const groups = p.getgroups()
  const egid = p.getegid!()
  try {
    // its primary group alone (sshd adds its other groups): a file only those could read is unreadable
    // here, a finding, never read with root's rights
    p.setgroups([account.gid])
    p.setegid(account.gid)
    p.seteuid(account.uid)
    return open()
  } finally {
    p.seteuid(0)
    p.setegid(egid)
    p.setgroups(groups)
  }
}

async function readKeyLines(path: string): Promise<string[]> {
  try {
    return (await readFile(path, 'utf8')).split('\n').filter((l) => l.trim() !== '' && !l.startsWith('#'))
  } catch {
    return []
  }
}

const yes = (v: string[] | undefined): boolean => v?.[0]?.toLowerCase() === 'yes'
const single = (v: string[] | undefined): string => v?.[0] ?? 'none'

export async function auditHost(o: HostAuditOptions = {}): Promise<HostAuditResult> {
  const config = o.sshdConfig ?? '/etc/ssh/sshd_config'
  const binary = await sshdBinary(o.sshd)
  if (!binary)
    throw new SshcaError(
      'ERR_FILE_NOT_FOUND',
      'no sshd binary found (/usr/sbin/sshd, /usr/local/sbin/sshd, /sbin/sshd)',
      {hint: 'give its path with --sshd'},
    )
  const s = await effectiveSshdConfig(binary, config)
  const now = BigInt(Math.floor((o.clock ?? Date.now)() / 1000))
  const findings: Finding[] = []
  const notes = [
    'sshd -T shows the settings for a connection no Match block applies to: check Match blocks by hand (sshd -T -C user=NAME,host=H,addr=A)',
  ]

  // the user CAs sshd trusts: cert-authority lines for them are the CA's way in, not another one
  const trustedFile = single(s.trustedusercakeys)
  const trustedCas = new Set<string>()
  if (trustedFile !== 'none') {
    for (const l of await readKeyLines(trustedFile)) {
      try {
        trustedCas.add(PublicKey.parseLine(l).key.fingerprint())
      } catch {
        // sshd skips it too
      }
    }
  }
  const pubkey = s.pubkeyauthentication === undefined ? true : yes(s.pubkeyauthentication)
  if (!pubkey) notes.push('PubkeyAuthentication is no: neither keys nor certificates log in')
  if (trustedFile === 'none' || trustedCas.size === 0) {
    findings.push({
      kind: 'no_trusted_user_ca',
      message:
        trustedFile === 'none'
          ? 'sshd trusts no user CA (TrustedUserCAKeys none): certificates from sshca cannot log in here'
          : `TrustedUserCAKeys ${trustedFile} holds no key sshd can use`,
      remedy: 'sshca config --host (writes TrustedUserCAKeys and its key file)',
      path: config,
    })
  }

  // sshca's snippet (config --host), when there is one: are its settings the ones sshd reads?
  const snippetPath = join(o.sshdDir ?? dirname(config), 'sshd_config.d', '50-sshca.conf')
  const snippet = sshcaSnippetSettings(await readFile(snippetPath, 'utf8').catch(() => ''))
  for (const problem of snippet ? sshcaSettingsProblems(s, snippet) : [])
    findings.push({
      kind: 'sshca_settings_not_in_effect',
      message: `${problem} (sshd keeps the first value it reads; sshd_config.d files are read in name order, where the Include stands)`,
      remedy: `remove or change the other setting (sshd -T shows what it reads), then: sshd -t && systemctl reload ssh`,
      path: snippetPath,
    })

  // authorized_keys: the setting, then every account's files
  const patterns = (s.authorizedkeysfile?.[0] ?? 'none')
    .split(/\s+/)
    .filter((p) => p !== '' && p.toLowerCase() !== 'none')
  if (pubkey && patterns.length > 0) {
    findings.push({
      kind: 'authorized_keys_file_setting',
      message: `AuthorizedKeysFile is "${patterns.join(' ')}": a key any account (or whoever can write to its home) adds there logs in without the CA`,
      remedy: 'once no account needs one, set "AuthorizedKeysFile none" in sshd_config',
      path: config,
    })
  }
  const passwdPath = o.passwd ?? '/etc/passwd'
  let passwdText: string
  try {
    passwdText = await readFile(passwdPath, 'utf8')
  } catch (err) {
    throw new SshcaError(
      'ERR_FILE_NOT_FOUND',
      `cannot read the accounts file ${passwdPath}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    )
  }
  const accounts: AuditAccount[] = []
  for (const a of parsePasswd(passwdText)) {
    const files: AuthorizedKeysFile[] = []
    for (const p of patterns) {
      const f = await readKeysFile(expandAuthorizedKeysPath(p, a), trustedCas, a)
      if (f) files.push(f)
    }
    const canLogin = !NO_LOGIN.test(a.shell)
    if (!canLogin && files.length === 0) continue
    const {gid: _gid, ...shown} = a
    accounts.push({...shown, canLogin, authorizedKeys: files})
    if (!pubkey) continue
    // sshd's PermitRootLogin: no keys log root in with "no"; only forced commands with "forced-commands-only"
    const rootLogin = a.uid === 0 ? single(s.permitrootlogin).toLowerCase() : 'yes'
    if (rootLogin === 'no') continue
    for (const f of files) {
      if (f.error) {
        findings.push({
          kind: 'authorized_keys_unreadable',
          user: a.user,
          path: f.path,
          message: `${f.path} (${a.user}) exists but could not be read (${f.error}): it may hold keys`,
          remedy: 'run the audit as root, or remove the file',
        })
        continue
      }
      // fail closed: a line this audit cannot read may be one sshd reads (forced command or not)
      if (f.unparsedLines.length > 0)
        findings.push({
          kind: 'authorized_keys_unparsed',
          user: a.user,
          path: f.path,
          message: `${f.path} (${a.user}) has ${f.unparsedLines.length} line(s) this audit cannot read as keys (line ${f.unparsedLines.slice(0, 10).join(', ')}${f.unparsedLines.length > 10 ? ', …' : ''}): sshd may accept them, as it does a DSA key where PubkeyAcceptedAlgorithms allows ssh-dss`,
          remedy: `read those lines; once ${a.user} logs in with a certificate, remove them`,
        })
      const ways = f.keys.filter(
        (k) => !k.trustedCa && (rootLogin !== 'forced-commands-only' || /(^|,)\s*command=/i.test(k.options)),
      )
      if (ways.length === 0) continue
      const what = ways
        .map(
          (k) =>
            `${k.certAuthority ? 'cert-authority ' : ''}${k.type} ${k.fingerprint}${k.comment ? ` ${k.comment}` : ''}`,
        )
        .join('; ')
      findings.push({
        kind: 'authorized_keys',
        user: a.user,
        path: f.path,
        message: `${a.user} can log in with ${ways.length} key(s) from ${f.path}${f.symlink ? ' (a symlink)' : ''}: ${what}`,
        remedy: `once ${a.user} logs in with a certificate, remove ${f.path}`,
      })
    }
  }

  // the other ways in sshd offers
  if (yes(s.passwordauthentication))
    findings.push({
      kind: 'password_authentication',
      message: 'PasswordAuthentication yes: a password logs in without the CA',
      remedy: 'set "PasswordAuthentication no"',
      path: config,
    })
  const kbd = s.kbdinteractiveauthentication ?? s.challengeresponseauthentication
  if (yes(kbd) && yes(s.usepam))
    findings.push({
      kind: 'kbd_interactive_authentication',
      message: 'KbdInteractiveAuthentication yes with UsePAM yes: PAM may ask for a password',
      remedy: 'set "KbdInteractiveAuthentication no"',
      path: config,
    })
  else if (yes(kbd))
    notes.push(
      'KbdInteractiveAuthentication is yes but UsePAM is no: no keyboard-interactive method is offered on this system',
    )
  if (single(s.authorizedkeyscommand) !== 'none') {
    findings.push({
      kind: 'authorized_keys_command',
      message: `AuthorizedKeysCommand ${single(s.authorizedkeyscommand)} (as ${single(s.authorizedkeyscommanduser)}) may supply keys from elsewhere`,
      remedy: 'set "AuthorizedKeysCommand none" once no account depends on it',
      path: config,
    })
  }
  if (yes(s.hostbasedauthentication))
    findings.push({
      kind: 'hostbased_authentication',
      message: 'HostbasedAuthentication yes: trusted hosts log their users in without the CA',
      remedy: 'set "HostbasedAuthentication no"',
      path: config,
    })
  if (yes(s.gssapiauthentication))
    findings.push({
      kind: 'gssapi_authentication',
      message: 'GSSAPIAuthentication yes: Kerberos tickets log in without the CA',
      remedy: 'set "GSSAPIAuthentication no" unless Kerberos is the intended way in',
      path: config,
    })

  // host keys: each should present a certificate, so clients need no known_hosts entry for it
  const certs = new Map<string, {path: string; problem?: string}>()
  for (const path of s.hostcertificate ?? []) {
    for (const l of await readKeyLines(path)) {
      try {
        const {cert} = parseCertificateLine(l)
        const problem =
          cert.type !== 'host'
            ? 'not a host certificate'
            : cert.validBefore <= now
              ? `expired ${isoFromSeconds(cert.validBefore)}`
              : undefined
        certs.set(cert.publicKey.fingerprint(), {path, ...(problem ? {problem} : {})})
      } catch {
        // not a certificate: sshd refuses to start with it, sshd -T would have failed
      }
    }
  }
  const hostKeys: AuditHostKey[] = []
  for (const path of s.hostkey ?? []) {
    const [line] = await readKeyLines(`${path}.pub`)
    let key: PublicKey | undefined
    try {
      key = line ? PublicKey.parseLine(line).key : undefined
    } catch {
      key = undefined
    }
    const c = key ? certs.get(key.fingerprint()) : undefined
    const problem = !key ? `no readable ${path}.pub beside it` : !c ? 'no certificate' : c.problem
    hostKeys.push({
      path,
      type: key?.type ?? null,
      fingerprint: key?.fingerprint() ?? null,
      certificate: c?.path ?? null,
      ...(problem ? {problem} : {}),
    })
    if (problem)
      findings.push({
        kind: 'host_key_without_certificate',
        path,
        message: `host key ${path}${key ? ` (${key.type} ${key.fingerprint()})` : ''}: ${problem}; clients must trust it by known_hosts entry`,
        remedy: `sshca certificate --host --sign --token-file FILE $(hostname -f) ${path}.pub, then sshca config --host`,
      })
  }

  // what `sshca config --host` would write, when this box has a client context
  let configHost: HostAuditResult['configHost'] = null
  if (o.home !== undefined) {
    try {
      const r = await configureHost(o.home, {
        ...(o.context ? {context: o.context} : {}),
        ...(o.sshdDir ? {sshdDir: o.sshdDir} : {}),
        ...(o.systemdDir ? {systemdDir: o.systemdDir} : {}),
        dryRun: true,
      })
      const files: {path: string; state: 'create' | 'change' | 'same'}[] = []
      for (const f of r.files) {
        let state: 'create' | 'change' | 'same'
        try {
          const have = await readFile(f.path)
          state = have.equals(Buffer.isBuffer(f.content) ? f.content : Buffer.from(f.content)) ? 'same' : 'change'
        } catch {
          state = 'create'
        }
        files.push({path: f.path, state})
      }
      configHost = {context: r.context, files, certified: r.certified, skipped: r.skipped}
    } catch (err) {
      configHost = {error: (err as Error).message}
    }
  }

  return {
    sshd: {binary, config, settings: s},
    accounts,
    hostKeys,
    findings,
    configHost,
    clean: findings.length === 0,
    notes,
  }
}
