/** Text renderers for command results. Pure: they return strings; the commands print them. */
import type {CertificateView, OptionView} from '../client/local/certificates.ts'
import type {ClientConfigResult} from '../client/setup/config.ts'
import type {InspectResult} from '../client/local/inspect.ts'
import type {ListResult} from '../client/local/list.ts'
import type {LoginResult} from '../client/login/login.ts'
import {KNOWN_EXTENSIONS} from '../ssh/cert.ts'
import {shortDuration, table} from './format.ts'

const IND = '        '

function optionLines(options: Record<string, OptionView>, critical: boolean): string {
  const names = Object.keys(options)
  if (names.length === 0) return ' (none)\n'
  let out = ' \n'
  for (const name of names.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))) {
    const v = options[name]!
    let text: string
    if (!critical && KNOWN_EXTENSIONS.has(name)) text = name
    else if (critical && name === 'verify-required') text = name
    else if (typeof v === 'string') text = `${name} ${v}`
    else if (v === true) text = `${name} UNKNOWN FLAG OPTION`
    else text = `${name} UNKNOWN OPTION: ${v.unknown} (len ${v.unknown.length / 2})`
    out += `${IND}${IND}${text}\n`
  }
  return out
}

const LABEL: Record<string, string> = {'ssh-ed25519': 'ED25519', 'ssh-rsa': 'RSA'}
const label = (type: string): string => LABEL[type] ?? 'ECDSA'

/** The layout of `ssh-keygen -L`, followed by the signature check ssh-keygen does not do. */
export function renderInspect(name: string, r: InspectResult, validity: string): string {
  const c = r.certificate
  let out = `${name}:\n`
  out += `${IND}Type: ${c.keyType} ${c.certType} certificate\n`
  out += `${IND}Public key: ${label(c.publicKey.type)}-CERT ${c.publicKey.fingerprint}\n`
  out += `${IND}Signing CA: ${label(c.signingCa.type)} ${c.signingCa.fingerprint} (using ${c.signingCa.algorithm})\n`
  out += `${IND}Key ID: "${c.keyId}"\n`
  out += `${IND}Serial: ${c.serial}\n`
  out += `${IND}Valid: ${validity}\n`
  out += `${IND}Principals: ${c.principals.length === 0 ? '(none)\n' : `\n${c.principals.map((p) => `${IND}${IND}${p}\n`).join('')}`}`
  out += `${IND}Critical Options:${optionLines(c.criticalOptions, true)}`
  out += `${IND}Extensions:${optionLines(c.extensions, false)}`
  out += `${IND}Signature: ${r.signature.valid ? 'valid' : `INVALID (${r.signature.reason ?? 'does not verify'})`}\n`
  return out
}

function timeLeft(c: CertificateView): string {
  if (c.state === 'not-yet-valid') return 'not yet valid'
  if (c.secondsLeft === null) return 'forever'
  if (c.secondsLeft <= 0) return `EXPIRED ${shortDuration(-c.secondsLeft)} ago`
  return shortDuration(c.secondsLeft)
}

function when(iso: string | null, open: string): string {
  if (iso === null) return open
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')
}

export function renderList(r: ListResult, raw: boolean): string {
  if (raw) return r.certificates.map((c) => `${c.line}\n`).join('')
  if (r.certificates.length === 0) {
    const others =
      r.otherIdentities === 0 ? '' : ` (it holds ${r.otherIdentities} other key${r.otherIdentities === 1 ? '' : 's'})`
    return `No certificates in the ssh-agent${others}.\nRun \`sshca login\` to get one.\n`
  }
  const rows = [['TYPE', 'KEY ID', 'PRINCIPALS', 'VALID FROM', 'VALID UNTIL', 'TIME LEFT', 'CONTEXT']]
  for (const c of r.certificates) {
    rows.push([
      c.certType,
      c.keyId,
      c.principals.join(',') || '(any)',
      when(c.validAfter, 'always'),
      when(c.validBefore, 'forever'),
      timeLeft(c),
      c.context ?? '-',
    ])
  }
  return table(rows)
}

export function renderLogin(r: LoginResult): string {
  const c = r.certificate
  const who = c.principals.join(', ')
  const until =
    c.validBefore === null || c.secondsLeft === null
      ? 'forever'
      : `${c.validBefore.replace('T', ' ').replace(/\.\d+Z$/, 'Z')} (${shortDuration(c.secondsLeft)} from now)`
  if (r.skipped) {
    return `You already have a certificate from "${r.context}" for ${who}, valid until ${until}.\nNothing to do; use --force to get a new one.\n`
  }
  const where = r.files
    ? `written to ${r.files.key} and ${r.files.certificate}`
    : `loaded into your ssh-agent for ${shortDuration(r.agent.lifetimeSeconds ?? 0)}`
  const cleaned = r.agent.removed.length
    ? `\nRemoved from the agent: ${r.agent.removed.map((x) => `${x.keyId} (${x.why})`).join(', ')}.`
    : ''
  const how = {
    browser: 'browser sign-in',
    device: 'device code',
    refresh: 'saved sign-in',
    'identity-token': 'identity token',
    'github-actions': 'GitHub Actions token',
    existing: '',
  }[r.method]
  // a CA key rotation reaching this machine: the known_hosts block follows the published host CA keys
  const keys = r.caKeys?.knownHosts
    ? `\nUpdated the CA's host keys in ${r.caKeys.knownHosts} (the CA publishes new ones).`
    : r.caKeys?.note
      ? `\nNote: ${r.caKeys.note}.`
      : ''
  return `Certificate for ${who} (key ID ${c.keyId}) from "${r.context}" via ${how}, valid until ${until}, ${where}.${cleaned}${keys}\nNext: ssh ${c.principals[0]}@<host>   (see the certificates with: sshca list)\n`
}

/** Why the certificate went to files, and whether ssh will find them. */
export function renderFallback(r: LoginResult): string {
  const f = r.agent.fallback!
  const where = r.files ? `${r.files.key} (0600) and ${r.files.certificate}` : 'files'
  const ssh =
    f.sshConfig === 'not-installed'
      ? `ssh will not find them by itself: run sshca config --context ${r.context} (its ssh_config names them with IdentityFile/CertificateFile), or pass ssh -i ${r.files?.key ?? 'KEY'}`
      : 'the managed ssh_config names them (IdentityFile, CertificateFile), so ssh uses them'
  return `${f.reason}; the certificate is in ${where} instead, ${ssh}.`
}

/** `sshca config` (client): what was written or, with --dry-run, what would be. */
export function renderClientConfig(r: ClientConfigResult, dryRun: boolean): string {
  const narrowed =
    r.pattern === r.caPattern
      ? "the CA's host pattern"
      : r.caPattern === '!*'
        ? 'chosen with --pattern: the CA names no hosts'
        : `narrowed from the CA's "${r.caPattern}"`
  if (dryRun) {
    // what would change, file by file, as diff -u shows it (nothing is written)
    const part = (file: string, what: string, diff: string) =>
      diff ? `# ${file}: ${what}\n${diff}` : `# ${file}: unchanged (${what})\n`
    let out = part(r.file, `the "${r.context}" block (hosts ${r.pattern}, ${narrowed})`, r.diff)
    if (r.sshConfig) {
      out += `\n${part(r.sshConfig.file, `the "${r.context}" block`, r.sshConfig.diff)}`
      out += `\n${part(r.sshConfig.include.file, 'its Include line at the top', r.sshConfig.include.diff)}`
    }
    return out
  }
  const lines: string[] = []
  lines.push(
    r.changed
      ? `${r.file}: hosts matching ${r.pattern} (${narrowed}) are now verified by the host CA of "${r.context}"${r.backup ? ` (previous file: ${r.backup})` : ''}.`
      : `${r.file} already trusts the host CA of "${r.context}" for ${r.pattern} (${narrowed}).`,
  )
  if (r.krl.status === 'refreshed')
    lines.push(
      `Revocation list of "${r.context}": ${r.krl.revokedSerials} revoked serial(s), ${r.krl.revokedKeyIds} revoked key ID(s), in ${r.krl.file}.`,
    )
  if (r.sshConfig) {
    const s = r.sshConfig
    lines.push(
      `${s.file}: ${s.changed ? 'wrote' : 'kept'} the "${r.context}" block (RevokedHostKeys ${r.krl.file ? 'set' : 'not set: no revocation list'} for hosts ${r.pattern}; ${s.loginCommand ? 'ssh signs you in when it needs a certificate' : 'no automatic login'}).`,
    )
    lines.push(
      s.include.changed
        ? `${s.include.file}: added "${s.include.line}" at the top${s.include.backup ? ` (previous file: ${s.include.backup})` : ''}.`
        : `${s.include.file} already includes it.`,
    )
  }
  return `${lines.join('\n')}\n`
}
