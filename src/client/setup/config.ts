/**
 * `sshca config`: on a person's machine, the known_hosts block (so ssh verifies host certificates
 * instead of asking), the context's KRL and sshca's ssh_config (so ssh refuses revoked ones); on a
 * server, the user CA keys for TrustedUserCAKeys, the sshd snippet and the systemd units.
 */
import {readFile, realpath} from 'node:fs/promises'
import {homedir} from 'node:os'
import {dirname, join, resolve, sep} from 'node:path'
import {isSshcaError, SshcaError} from '../../errors.ts'
import {broadEntries, effectivePattern, listsOverlap, namesNoHosts, NO_HOSTS} from '../../ssh/host-pattern.ts'
import {parseCertificateLine} from '../../ssh/cert.ts'
import {parseKrl} from '../../ssh/krl.ts'
import {PublicKey} from '../../ssh/keys.ts'
import {assertOwnerOnlyFile, exists, privateDir, readUtf8File, writeFileAtomic} from '../../util/fs.ts'
import {unifiedDiff} from '../../util/diff.ts'
import {CaClient} from '../ca-api/ca-client.ts'
import {defaultKnownHosts, dropKnownHostsBlock, refreshSshRoots, replaceWithBackup} from '../ca-api/ca-keys.ts'
import {assertSafeForRoot, installedSshca, realFs, type ExecPathDeps, type InstalledSshca} from '../local/exec-path.ts'
import {
  agentlessFiles,
  defaultHome,
  listContexts,
  loadContext,
  readContext,
  saveContext,
  type Context,
  type ContextSettings,
  type ContextSshConfig,
} from '../home/home.ts'
import {managedBlock, mergeKnownHosts} from '../local/known-hosts.ts'
import {checkKrlLoads, refreshContextKrl, type ContextKrl} from '../ca-api/krl.ts'
import {
  ensureCommand,
  includeLine,
  localSshVersion,
  managedSshConfigPath,
  mergeInclude,
  mergeSshConfig,
  shadowingRevokedHostKeys,
  supportsMatchFinal,
  type ShadowingLine,
} from '../local/ssh-config.ts'
import {sameContext, withSettingsLock} from '../home/settings-lock.ts'
import {effectiveSshdConfig, sshcaSettingsProblems, sshdBinary, type SshcaSettings} from '../local/sshd-effective.ts'

export {refreshSshRoots, replaceWithBackup} from '../ca-api/ca-keys.ts'
export {saveContext}

export interface KnownHostsOptions {
  context?: string
  /** Narrows the CA's host pattern (required when the CA names no hosts). */
  pattern?: string
  /** Default ~/.ssh/known_hosts. */
  file?: string
  dryRun?: boolean
}

export interface KnownHostsResult {
  context: string
  file: string
  /** The pattern written: the one accepted (chosenPattern), or --pattern within the CA's (its exclusions kept). */
  pattern: string
  /** The CA's own ssh.hostPattern. */
  caPattern: string
  block: string
  changed: boolean
  written: boolean
  backup: string | null
  /** What the change is (or, with --dry-run, would be), as `diff -u` shows it; '' when none. */
  diff: string
  /** What to know about the pattern: a change of the CA's not adopted, one that matches every host. */
  warnings: string[]
}

/** The entries of a pattern that match hosts in any domain, as a warning words them; '' when none. */
function anyDomain(pattern: string): string {
  return broadEntries(pattern)
    .map((g) => JSON.stringify(g))
    .join(', ')
}

/** What bootstrap and config say of a pattern with an entry that matches hosts in any domain (`*`, `?*` …). */
export function broadPatternWarning(context: string, pattern: string): string | undefined {
  const broad = anyDomain(pattern)
  if (broad === '') return undefined
  return `the host pattern of "${context}" is "${pattern}": ${broad} matches hosts in any domain, so the CA's host certificates vouch for every host you connect to; narrow it: sshca config --context ${context} --pattern "*.your-domain"`
}

export interface ChosenPattern {
  /** What config writes. */
  pattern: string
  /** What the context saves as acceptedCaPattern. */
  acceptedCaPattern: string
  warnings: string[]
}

/** effectivePattern, or undefined where `inner` is not within `outer`. */
function within(outer: string, inner: string): string | undefined {
  try {
    return effectivePattern(outer, inner)
  } catch {
    return undefined
  }
}

/**
 * The pattern `sshca config` writes. --pattern is the person's choice (within the CA's pattern).
 * Without it, the pattern they accepted last: configuredPattern, else the CA's as bootstrap showed
 * it. The CA's pattern is refreshed from /ssh/roots without asking anyone, so a CA (hostile, or
 * compromised) could otherwise widen its trust to every host at the next config. A change of it
 * since is not adopted: what was accepted is kept where the CA's new pattern covers it, followed
 * where the CA narrowed; any other change, and a pattern that matches hosts in any domain the person
 * never configured, are refused (ERR_TRUST_HOST_PATTERN) until given with --pattern, the same at a
 * terminal as in CI: typing the pattern is the acceptance, not a yes to a question.
 */
export function chosenPattern(
  ctx: Pick<ContextSettings, 'name' | 'hostPattern' | 'configuredPattern' | 'acceptedCaPattern'>,
  requested?: string,
): ChosenPattern {
  const ca = ctx.hostPattern
  if (requested !== undefined) {
    const pattern = effectivePattern(ca, requested)
    const broad = broadPatternWarning(ctx.name, pattern)
    return {pattern, acceptedCaPattern: ca, warnings: broad ? [broad] : []}
  }
  // a context of an older sshca never saved what bootstrap showed: the CA's as saved, as config took it then
  const seen = ctx.acceptedCaPattern ?? ca
  const changed = seen !== ca
  // a CA that named no hosts when the person last looked leaves the choice to them (effectivePattern
  // says so while it still names none)
  const accepted = ctx.configuredPattern ?? (changed && namesNoHosts(seen) ? undefined : effectivePattern(seen))
  const pattern = accepted === undefined ? undefined : (within(ca, accepted) ?? within(accepted, ca))
  const adopt = `sshca config --context ${ctx.name} --pattern '${ca}'`
  const wide = anyDomain(ca)
  const wideNote = wide === '' ? '' : ` (${wide} matches hosts in any domain: every host you connect to)`
  if (pattern === undefined)
    throw new SshcaError(
      'ERR_TRUST_HOST_PATTERN',
      `the CA "${ctx.name}" changed its host pattern from "${seen}" to "${ca}"${wideNote}, which does not cover the hosts you accepted (${accepted === undefined ? 'none yet' : `"${accepted}"`}); sshca config adopts no such change by itself, and wrote nothing`,
      {hint: `choose the hosts its host certificates are trusted for: ${adopt} (or a narrower list)`},
    )
  const broad = broadPatternWarning(ctx.name, pattern)
  if (broad !== undefined && ctx.configuredPattern === undefined)
    throw new SshcaError(
      'ERR_TRUST_HOST_PATTERN',
      `the host pattern of "${ctx.name}" is "${pattern}": ${anyDomain(pattern)} matches hosts in any domain, so the CA's host certificates would vouch for every host you connect to; sshca config writes such a pattern only when you give it, and wrote nothing`,
      {
        hint: `narrow it: sshca config --context ${ctx.name} --pattern "*.your-domain"; or, to trust this CA for every host all the same: sshca config --context ${ctx.name} --pattern '${pattern}'`,
      },
    )
  const warnings = changed
    ? [
        `the CA "${ctx.name}" changed its host pattern from "${seen}" to "${ca}"${wideNote} since you accepted "${accepted}": sshca config wrote "${pattern}", no host beyond what you accepted; to trust its host certificates for "${ca}", say so: ${adopt}`,
      ]
    : []
  if (broad !== undefined) warnings.push(broad)
  return {pattern, acceptedCaPattern: seen, warnings}
}

/** The block for `ctx` (the CA's keys and pattern as fetched), the pattern chosen over what `accepted` says was accepted. */
async function knownHostsFor(
  ctx: Context,
  o: KnownHostsOptions,
  accepted: Pick<Context, 'configuredPattern' | 'acceptedCaPattern'> = ctx,
): Promise<{kh: KnownHostsResult; acceptedCaPattern: string}> {
  if (ctx.hostCaKeys.length === 0) throw new SshcaError('ERR_CA_BAD_RESPONSE', 'the CA publishes no host CA key')
  const file = o.file ?? defaultKnownHosts()
  const chosen = chosenPattern(
    {
      name: ctx.name,
      hostPattern: ctx.hostPattern,
      configuredPattern: accepted.configuredPattern,
      acceptedCaPattern: accepted.acceptedCaPattern,
    },
    o.pattern,
  )
  const pattern = chosen.pattern
  const hostKeys = ctx.hostCaKeys.map((l) => PublicKey.parseLine(l).key.toLine(`${ctx.name} host CA`))
  const existing = (await exists(file)) ? await readUtf8File(file) : ''
  const {text, changed} = mergeKnownHosts(existing, ctx.name, pattern, hostKeys)
  const diff = unifiedDiff(existing, text, {from: file, to: file})
  const result: KnownHostsResult = {
    context: ctx.name,
    file,
    pattern,
    caPattern: ctx.hostPattern,
    block: managedBlock(ctx.name, pattern, hostKeys),
    changed,
    written: false,
    backup: null,
    diff,
    warnings: chosen.warnings,
  }
  const out = {kh: result, acceptedCaPattern: chosen.acceptedCaPattern}
  if (o.dryRun || !changed) return out
  result.backup = await replaceWithBackup(file, text, 0o644)
  result.written = true
  return out
}

/** known_hosts only (the demo uses it on a throwaway file): see configureClient for `sshca config`. */
export async function configureKnownHosts(home: string, o: KnownHostsOptions): Promise<KnownHostsResult> {
  const ctx = await refreshSshRoots(await loadContext(home, o.context))
  return withSettingsLock(home, async () => {
    if (!(await sameContext(ctx)))
      throw new SshcaError(
        'ERR_CONTEXT_NOT_FOUND',
        `the context "${ctx.name}" was removed or bootstrapped again meanwhile`,
      )
    return (await knownHostsFor(ctx, o)).kh
  })
}

export interface ClientConfigOptions extends KnownHostsOptions {
  /** false: leave ssh_config alone (--no-ssh-config). */
  sshConfig?: boolean
  /** ~/.ssh by default: where the ssh_config with the Include lives. */
  sshDir?: string
  /** Whether ssh understands `Match final` (default: asks `ssh -V`). */
  matchFinal?: boolean
  /** false: no `Match exec "sshca login --ensure"` section (--no-auto-login). */
  autoLogin?: boolean
  /** The token file that section logs in with (machines whose token something else keeps fresh). */
  identityTokenFile?: string
  /** The sshca that ssh runs (default: this node and this script, by their real paths). */
  sshca?: InstalledSshca
}

export interface ClientConfigResult extends KnownHostsResult {
  krl: ContextKrl
  sshConfig: {
    file: string
    block: string
    changed: boolean
    /** `diff -u` of the managed ssh_config; '' when unchanged. */
    diff: string
    /** What ssh runs before connecting to log in when needed (Match exec); null with --no-auto-login. */
    loginCommand: string | null
    include: {file: string; line: string; changed: boolean; backup: string | null; diff: string}
  } | null
  /** Things to know that did not stop the command (overlapping contexts, no KRL …). */
  warnings: string[]
}

/** What a RevokedHostKeys ssh reads before the context's block means, and how to mend it. */
export function shadowedKrlWarning(context: string, pattern: string, at: ShadowingLine): string {
  return `${at.file}:${at.line} sets RevokedHostKeys${at.section ? ` (in "${at.section}")` : ''}, which ssh reads before sshca's block and keeps (ssh takes the first value): for the hosts it covers ssh checks that list instead of the revocation list of "${context}", and accepts a host certificate the CA revoked. Remove it, narrow its section so that it does not match ${pattern}, or make it a \`Match final\` section below sshca's Include (a file included above that Include: include it below)`
}

/** Other contexts whose host pattern may match the same hosts as `pattern`. */
export async function overlappingContexts(
  home: string,
  self: string,
  pattern: string,
): Promise<{context: string; pattern: string}[]> {
  const out: {context: string; pattern: string}[] = []
  for (const name of await listContexts(home)) {
    if (name === self) continue
    const other = await readContext(home, name).catch(() => undefined)
    // a context without a pattern names no hosts ('' does not parse: the catch below skips it too)
    const theirs = other?.configuredPattern ?? other?.hostPattern ?? NO_HOSTS
    try {
      if (!namesNoHosts(theirs) && listsOverlap(pattern, theirs)) out.push({context: name, pattern: theirs})
    } catch {
      // a pattern this version cannot read matches nothing here
    }
  }
  return out
}

export const overlapWarning = (self: string, pattern: string, o: {context: string; pattern: string}): string =>
  `the host pattern "${pattern}" of "${self}" overlaps "${o.pattern}" of "${o.context}": hosts matching both are vouched for by two CAs, and ssh reads one RevokedHostKeys per host (the first block that matches), so the other CA's revocations do not apply to them; narrow one with sshca config --context NAME --pattern …`

/**
 * `sshca config` on a person's machine: the context's KRL refreshed, the @cert-authority block in
 * known_hosts, its block in sshca's ssh_config, and the Include of that file at the top of
 * ~/.ssh/config. Written in that order, each atomically, so ssh never reads a RevokedHostKeys that
 * names a missing file; all but the KRL under the settings lock (settings-lock.ts). --dry-run
 * fetches and shows, writes nothing.
 */
export async function configureClient(home: string, o: ClientConfigOptions): Promise<ClientConfigResult> {
  // the token file ssh's logins will read: refused now, before anything is written, when another user
  // could read it (each of those logins would refuse it)
  if (o.identityTokenFile !== undefined)
    assertOwnerOnlyFile(o.identityTokenFile, 'ID token', `chmod 600 ${o.identityTokenFile}`)
  const loaded = await loadContext(home, o.context)
  const ca = new CaClient(loaded.caUrl, loaded.rootPem)
  try {
    const ctx = await refreshSshRoots(loaded, ca)
    const krl = await refreshContextKrl(ctx, ca, ctx.dir, {write: !o.dryRun})
    const file = managedSshConfigPath(home)
    const later: string[] = []
    // asked before the lock (a login may wait on it): ssh -V can take a while on a cold cache
    const matchFinal = o.matchFinal ?? (o.sshConfig === false ? true : supportsMatchFinal(localSshVersion()))
    // known_hosts, the block, the Include and the settings are read and written under the settings
    // lock, which login and context remove take too: none writes back a copy older than another's
    const locked = <T>(fn: () => Promise<T>): Promise<T> => (o.dryRun ? fn() : withSettingsLock(home, fn))
    const {kh, sshConfig} = await locked(async () => {
      // what config decides goes over the settings as saved now (a login may have saved its own since),
      // and only while they are the bootstrap it read: the keys it fetched are that CA's
      const saved = o.dryRun ? ctx : await sameContext(ctx)
      if (!saved)
        throw new SshcaError(
          'ERR_CONTEXT_NOT_FOUND',
          `the context "${ctx.name}" was removed or bootstrapped again while sshca config ran; nothing was written`,
          {hint: `run sshca config --context ${ctx.name} again if it is still there`},
        )
      // what the person accepted as saved now: a config --pattern that ended meanwhile is not undone
      const {kh, acceptedCaPattern} = await knownHostsFor(ctx, o, saved)
      // the block moved to another file (--known-hosts): none is left trusting the CA in the one before
      const before = saved.knownHostsFile
      const dropped =
        before !== undefined && resolve(before) !== resolve(kh.file)
          ? await dropKnownHostsBlock(before, ctx.name, {write: !o.dryRun})
          : null
      if (dropped)
        later.push(
          `the block of "${ctx.name}" ${o.dryRun ? 'would be' : 'was'} removed from ${before}, where sshca config wrote it before${dropped.backup ? ` (backup: ${dropped.backup})` : ''}`,
        )
      let sshConfig: ClientConfigResult['sshConfig'] = null
      let settings: ContextSshConfig | undefined = saved.sshConfig
      if (o.sshConfig !== false) {
        const customKnownHosts = o.file !== undefined && resolve(o.file) !== defaultKnownHosts()
        const exe = o.sshca ?? installedSshca()
        if (o.autoLogin !== false && exe.script?.split(sep).includes('_npx')) {
          later.push(
            `ssh will run sshca from npx's cache (${exe.script}), which npm clears: install sshca (npm install -g sshca) and run sshca config again, or use --no-auto-login`,
          )
        }
        // the list only while it is there (context remove deletes it under this lock): ssh refuses
        // every host of the pattern when RevokedHostKeys names a missing file
        const krlFile = krl.file !== null && (o.dryRun || (await exists(krl.file))) ? krl.file : null
        settings = {
          pattern: kh.pattern,
          krlFile,
          krlNote: krlFile === krl.file ? krl.note : `${krl.file} was removed`,
          ...(customKnownHosts ? {knownHostsFile: resolve(o.file!)} : {}),
          matchFinal,
          loginCommand:
            o.autoLogin === false
              ? null
              : ensureCommand({
                  command: exe.script ? [exe.node, exe.script] : [exe.node],
                  home: resolve(home),
                  defaultHome: defaultHome(),
                  context: ctx.name,
                  identityTokenFile: o.identityTokenFile === undefined ? undefined : resolve(o.identityTokenFile),
                }),
        }
        const current = (await exists(file)) ? await readFile(file, 'utf8') : ''
        const merged = mergeSshConfig(current, {context: ctx.name, ...settings, identityFiles: agentlessFiles(ctx)})
        const userConfig = await realTarget(join(o.sshDir ?? join(homedir(), '.ssh'), 'config'))
        const userText = (await exists(userConfig)) ? await readUtf8File(userConfig) : ''
        const inc = mergeInclude(userText, file)
        sshConfig = {
          file,
          block: merged.block,
          changed: merged.changed,
          diff: unifiedDiff(current, merged.text, {from: file, to: file}),
          loginCommand: settings.loginCommand,
          include: {
            file: userConfig,
            line: includeLine(file),
            changed: inc.changed,
            backup: null,
            diff: unifiedDiff(userText, inc.text, {from: userConfig, to: userConfig}),
          },
        }
        if (!o.dryRun) {
          if (merged.changed) await writeFileAtomic(file, merged.text, 0o600)
          if (inc.changed) sshConfig.include.backup = await replaceWithBackup(userConfig, inc.text, 0o600)
        }
        // a RevokedHostKeys that ssh reads first makes it skip the CA's list for the hosts it covers
        if (krlFile !== null) {
          const sshDir = o.sshDir ?? join(homedir(), '.ssh')
          // ~/.ssh/config as written (or, with --dry-run, as it would be): where sshca's Include stands decides
          const found = await shadowingRevokedHostKeys({
            userConfig,
            sshDir,
            managedFile: file,
            userText: inc.text,
            matchFinal,
          })
          for (const at of found) later.push(shadowedKrlWarning(ctx.name, kh.pattern, at))
        }
      }
      const next: Context = {
        ...saved,
        configuredPattern: kh.pattern,
        acceptedCaPattern,
        knownHostsFile: resolve(kh.file),
        ...(settings ? {sshConfig: settings} : {}),
      }
      if (!o.dryRun && JSON.stringify(next) !== JSON.stringify(saved)) await saveContext(next)
      return {kh, sshConfig}
    })
    const warnings = [...kh.warnings]
    if (krl.note) warnings.push(krl.note)
    for (const other of await overlappingContexts(home, ctx.name, kh.pattern))
      warnings.push(overlapWarning(ctx.name, kh.pattern, other))
    warnings.push(...later)
    return {...kh, krl, sshConfig, warnings}
  } finally {
    ca.close()
  }
}

/** The file a symlink points to (a dotfiles repository), so the link itself is kept. */
async function realTarget(path: string): Promise<string> {
  try {
    return await realpath(path)
  } catch {
    return path
  }
}

export async function caKeys(
  home: string,
  o: {context?: string; host?: boolean},
): Promise<{context: string; kind: 'user' | 'host'; keys: string[]}> {
  const ctx = await refreshSshRoots(await loadContext(home, o.context))
  return {context: ctx.name, kind: o.host ? 'host' : 'user', keys: o.host ? ctx.hostCaKeys : ctx.userCaKeys}
}

export interface HostConfigOptions {
  context?: string
  /** Where sshd's files live (default /etc/ssh). */
  sshdDir?: string
  /** Where the systemd units go (default /etc/systemd/system). */
  systemdDir?: string
  /** The sshca the units run (default: this node and this script, by their real paths). */
  sshca?: InstalledSshca
  /** The file system the root-only check reads (tests pass a made-up one). */
  pathDeps?: ExecPathDeps
  /** The sshd binary asked what it reads once the files are written (default: the usual places). */
  sshd?: string
  dryRun?: boolean
}

export interface HostConfigResult {
  context: string
  files: {path: string; content: string | Buffer; mode: number}[]
  /** The ExecStart command of the units (real paths of node and sshca). */
  command: string
  /** Host keys configured: they have a certificate from this CA. */
  certified: string[]
  /** Host keys left out, and why (no certificate, or one from another CA): sshd would log an error for each. */
  skipped: {key: string; reason: string}[]
  written: boolean
  next: string[]
  /** Whether the CA publishes a KRL (step-ca does not): without one, no RevokedKeys and no KRL unit. */
  krl: 'published' | 'none'
  warnings: string[]
}

export const KRL_FILE = 'sshca_revoked_keys.krl'

/** Where sshd's files and the systemd units are unless told otherwise (the CLI's defaults too). */
export const SSHD_DIR = '/etc/ssh'
export const SYSTEMD_DIR = '/etc/systemd/system'

/** Unit names: one renewal per host key (a template instance each), and the KRL on its own. */
export const RENEW_UNIT = 'sshca-renew@'
export const KRL_UNIT = 'sshca-krl'

const HARDENING = ['NoNewPrivileges=yes', 'PrivateTmp=yes']

/**
 * What a server needs: the user CA key file and the sshd snippet (TrustedUserCAKeys, HostCertificate
 * for each host key, RevokedKeys with a current KRL: sshd refuses every key when that file is
 * missing), and systemd units that keep both fresh:
 *   - sshca-krl.service + .timer (hourly): the KRL, on its own, so nothing else failing can stop it
 *     (in one oneshot service, the first failing ExecStart skips every later one: a host whose
 *     renewal failed would stop learning of revocations for good);
 *   - sshca-renew@<key>.service + .timer (daily), one instance per host key: a key whose renewal
 *     fails (revoked, CA unreachable) shows as its own failed unit and holds up no other key.
 * `-`-prefixed renew lines in one unit were the other choice: they keep going, but hide every failed
 * renewal behind a green unit. ExecStart names the real paths of node and sshca, and the whole is
 * refused when root would run anything another user can change (exec-path.ts).
 */
export async function configureHost(home: string, o: HostConfigOptions): Promise<HostConfigResult> {
  const ctx = await refreshSshRoots(await loadContext(home, o.context))
  // defaults in the pattern, not `??`: no mutant of this line can turn a test's directory into /etc
  const {sshdDir: dir = SSHD_DIR, systemdDir: unitDir = SYSTEMD_DIR} = o
  if (!/^\/[A-Za-z0-9._/@+-]*$/.test(resolve(dir)))
    throw new SshcaError(
      'ERR_USAGE',
      `--sshd-dir "${dir}" must be an absolute path without spaces or special characters (it goes into unit files)`,
    )
  const sshdDir = resolve(dir)
  const exe = o.sshca ?? installedSshca()
  // the units name the home that was checked (its real path), never a link to it that another user may repoint
  const unitHome = assertSafeForRoot(exe, home, o.pathDeps ?? realFs)
  const caFile = join(sshdDir, 'sshca_user_ca.pub')
  const krlFile = join(sshdDir, KRL_FILE)
  // only keys with a certificate from this CA: for any other, sshd logs "Could not load host
  // certificate" at every start, and its renewal unit would fail every day
  const present: string[] = []
  const skipped: {key: string; reason: string}[] = []
  const hostCas = new Set(ctx.hostCaKeys.map((l) => PublicKey.parseLine(l).key.fingerprint()))
  for (const k of ['ssh_host_ed25519_key', 'ssh_host_ecdsa_key', 'ssh_host_rsa_key']) {
    if (!(await exists(join(sshdDir, `${k}.pub`)))) continue
    const reason = await hostCertProblem(join(sshdDir, `${k}-cert.pub`), hostCas)
    if (reason) skipped.push({key: k, reason})
    else present.push(k)
  }
  const ca = new CaClient(ctx.caUrl, ctx.rootPem)
  // a CA without a KRL (step-ca has no /ssh/krl): no RevokedKeys line (sshd refuses every key when
  // that file is missing) and no KRL unit; said plainly, since revocations then stop at the CA
  let krl: Buffer | undefined
  const warnings: string[] = []
  try {
    krl = await ca.bytes('/ssh/krl')
  } catch (err) {
    if (!(isSshcaError(err) && err.details?.status === 404)) throw err
    warnings.push(
      `the CA "${ctx.name}" publishes no revocation list (GET /ssh/krl answered 404): sshd cannot refuse a certificate the CA revoked before it expires, so keep host and user certificates short-lived`,
    )
  } finally {
    ca.close()
  }
  if (krl) {
    parseKrl(krl)
    await checkKrlLoads(krl).catch((err: Error) => {
      throw new SshcaError(
        'ERR_CA_BAD_RESPONSE',
        `the CA "${ctx.name}" sent a revocation list that ${err.message}; nothing was written`,
        {hint: 'ask the CA operator: sshd would refuse every public key with this list'},
      )
    })
  }
  const snippet = [
    `# Managed by sshca (sshca config --host) for the CA "${ctx.name}" at ${ctx.caUrl}.`,
    '# Users log in with short-lived certificates from this CA; a principal must equal the login name.',
    `TrustedUserCAKeys ${caFile}`,
    ...(krl
      ? [
          `# Certificates the CA revoked (refreshed hourly by ${KRL_UNIT}.timer; sshd rereads it on every login).`,
          `RevokedKeys ${krlFile}`,
        ]
      : ['# This CA publishes no revocation list: no RevokedKeys.']),
    '# Present host certificates (issue them with: sshca certificate --host --sign …).',
    ...present.map((k) => `HostCertificate ${join(sshdDir, `${k}-cert.pub`)}`),
    '',
  ].join('\n')
  const env = `Environment=SSHCA_HOME=${unitHome}`
  const krlService = [
    '[Unit]',
    `Description=Refresh the SSH key revocation list and the trusted user CA keys from the sshca CA "${ctx.name}"`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=oneshot',
    env,
    ...HARDENING,
    `ExecStart=${exe.command} krl --context ${ctx.name} --out ${krlFile} --user-ca-keys ${caFile}`,
    '',
  ].join('\n')
  const krlTimer = [
    '[Unit]',
    `Description=Hourly refresh of the SSH key revocation list (sshca, ${KRL_UNIT}.service)`,
    '',
    '[Timer]',
    'OnCalendar=hourly',
    'RandomizedDelaySec=10m',
    'Persistent=true',
    '',
    '[Install]',
    'WantedBy=timers.target',
    '',
  ].join('\n')
  const renewService = [
    '[Unit]',
    `Description=Renew the SSH host certificate of ${sshdDir}/%i from the sshca CA "${ctx.name}"`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=oneshot',
    env,
    ...HARDENING,
    '# after a renewal only, and only if sshd -t accepts its configuration: sshd reloaded to present it',
    `ExecStart=${exe.command} renew --context ${ctx.name} --reload-sshd ${sshdDir}/%i-cert.pub ${sshdDir}/%i`,
    '',
  ].join('\n')
  const renewTimer = [
    '[Unit]',
    `Description=Daily renewal of the SSH host certificate of ${sshdDir}/%i (sshca)`,
    '',
    '[Timer]',
    'OnCalendar=daily',
    'RandomizedDelaySec=1h',
    'Persistent=true',
    '',
    '[Install]',
    'WantedBy=timers.target',
    '',
  ].join('\n')
  const files = [
    {path: caFile, content: ctx.userCaKeys.map((l) => `${l}\n`).join(''), mode: 0o644},
    ...(krl ? [{path: krlFile, content: krl, mode: 0o644}] : []),
    {path: join(sshdDir, 'sshd_config.d', '50-sshca.conf'), content: snippet, mode: 0o644},
    ...(krl
      ? [
          {path: join(unitDir, `${KRL_UNIT}.service`), content: krlService, mode: 0o644},
          {path: join(unitDir, `${KRL_UNIT}.timer`), content: krlTimer, mode: 0o644},
        ]
      : []),
    {path: join(unitDir, `${RENEW_UNIT}.service`), content: renewService, mode: 0o644},
    {path: join(unitDir, `${RENEW_UNIT}.timer`), content: renewTimer, mode: 0o644},
  ]
  const timers = [...(krl ? [`${KRL_UNIT}.timer`] : []), ...present.map((k) => `${RENEW_UNIT}${k}.timer`)]
  const legacy =
    (await exists(join(unitDir, 'sshca-renew.timer'))) || (await exists(join(unitDir, 'sshca-renew.service')))
  const next = [
    ...(present.length
      ? []
      : [
          `sshca certificate --host --sign --token-file FILE $(hostname -f) ${join(sshdDir, 'ssh_host_ed25519_key.pub')}   # then run sshca config --host again`,
        ]),
    ...(present.length && skipped.length
      ? [
          `# to add ${skipped.map((x) => x.key).join(', ')}: sshca certificate --host --sign … ${join(sshdDir, `${skipped[0]!.key}.pub`)}, then sshca config --host again`,
        ]
      : []),
    'sshd -t && systemctl reload ssh          # check, then apply',
    ...(legacy
      ? [
          `systemctl disable --now sshca-renew.timer; rm -f ${join(unitDir, 'sshca-renew.service')} ${join(unitDir, 'sshca-renew.timer')}   # the previous single unit, replaced by the ones below`,
        ]
      : []),
    `systemctl daemon-reload && systemctl enable --now ${timers.join(' ')}`,
  ]
  const krlState = krl ? ('published' as const) : ('none' as const)
  if (o.dryRun)
    return {
      context: ctx.name,
      files,
      command: exe.command,
      certified: present,
      skipped,
      written: false,
      next,
      krl: krlState,
      warnings,
    }
  for (const f of files) {
    await privateDir(dirname(f.path))
    await writeFileAtomic(f.path, f.content, f.mode)
  }
  warnings.push(
    ...(await sshdReadsOurs(sshdDir, o.sshd, {trustedUserCaKeys: caFile, revokedKeys: krl ? krlFile : null})),
  )
  return {
    context: ctx.name,
    files,
    command: exe.command,
    certified: present,
    skipped,
    written: true,
    next,
    krl: krlState,
    warnings,
  }
}

/**
 * Whether sshd, with the files written, reads sshca's TrustedUserCAKeys and RevokedKeys (`sshd -T`):
 * another value read first (a file of sshd_config.d that sorts before 50-sshca.conf, a line before
 * the Include, no Include at all) wins without a word. One warning per problem; none when sshd reads ours.
 */
async function sshdReadsOurs(sshdDir: string, sshd: string | undefined, want: SshcaSettings): Promise<string[]> {
  const config = join(sshdDir, 'sshd_config')
  const check = 'check what it reads with: sshd -T | grep -i -e trustedusercakeys -e revokedkeys'
  if (!(await exists(config))) return [`there is no ${config}, so no sshd reads these settings; ${check}`]
  const binary = await sshdBinary(sshd)
  if (!binary) return [`no sshd binary found to ask what it reads; ${check}`]
  try {
    return sshcaSettingsProblems(await effectiveSshdConfig(binary, config), want).map(
      (p) =>
        `${p}; sshd keeps the first value it reads (sshd_config.d files in name order, where the Include stands): remove or change the other setting, then sshd -t && systemctl reload ssh`,
    )
  } catch (err) {
    return [`could not ask sshd what it reads (${(err as Error).message}); ${check}`]
  }
}

/** Why the certificate beside a host key will not do (missing, unreadable, not a host certificate of this CA), or undefined. */
async function hostCertProblem(path: string, hostCas: Set<string>): Promise<string | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    return 'no certificate'
  }
  try {
    const {cert} = parseCertificateLine(text)
    if (cert.type !== 'host') return 'its certificate is not a host certificate'
    if (!hostCas.has(cert.signatureKey.fingerprint())) return 'its certificate is from another CA'
    return undefined
  } catch {
    return 'its certificate does not parse'
  }
}
