/**
 * The server's side of sshca: get a host certificate with an enrollment token, renew it by proving
 * possession of the host key, and fetch the CA's revocation list for sshd's RevokedKeys.
 */
import {rm} from 'node:fs/promises'
import {join} from 'node:path'
import {isSshcaError, SshcaError} from '../../errors.ts'
import {SshSignResponse, SUPERSEDED_MESSAGE} from '../../protocol/api.ts'
import {caIssuer, mintSshpopToken} from '../../protocol/tokens.ts'
import {checkCertificate, type CertProblemCode} from '../../ssh/checker.ts'
import {certificateLine, nowSeconds, parseCertificate, parseCertificateLine, type Certificate} from '../../ssh/cert.ts'
import {parseKrl} from '../../ssh/krl.ts'
import {PublicKey} from '../../ssh/keys.ts'
import {parsePrivateKeyFile} from '../../ssh/private-key.ts'
import {exists, readTextFile, writeFileAtomic} from '../../util/fs.ts'
import {CaClient} from '../ca-api/ca-client.ts'
import {fetchSshRoots, syncTrustedUserCaKeys} from '../ca-api/ca-keys.ts'
import {loadContext, type Context} from '../home/home.ts'
import {checkKrlLoads} from '../ca-api/krl.ts'
import {sshdBinary} from '../local/sshd-effective.ts'
import {errorTail, runQuiet, SYSTEM_PATH, type RunResult} from '../../util/run.ts'
import {sshpopProvisioner} from '../ca-api/provisioners.ts'
import {isoFromSeconds} from '../../util/iso-time.ts'
import {singleLine} from '../../util/text.ts'
import {refuseTokenOfAnotherCa} from '../login/token-audiences.ts'

/** `/etc/ssh/ssh_host_ed25519_key.pub` → `/etc/ssh/ssh_host_ed25519_key-cert.pub`, as ssh-keygen names it. */
export function certPathFor(pubkeyFile: string): string {
  return `${pubkeyFile.replace(/\.pub$/, '')}-cert.pub`
}

/** `what` at `path`; host keys are root's alone to read. */
const readText = (path: string, what: string): string =>
  readTextFile(path, what, {accessHint: 'host keys are readable by root only: run with sudo'})

/** How far ahead of this machine's clock a new certificate may start (the CA's clock may run ahead). */
export const HOST_CERT_CLOCK_SKEW = 300n

/**
 * How long a renewed (or rekeyed) certificate from a CA whose clock runs behind must have left when it
 * ends before the one it replaces: until the daily renewal timer's next run (a day and its randomized
 * delay of up to an hour). One that ends sooner would be served expired before that run; the one it
 * replaces is kept and served for the time it has left. That does not save the host's lineage (the CA
 * recorded the new certificate, so the old one renews no more: enrol again once the clocks agree),
 * but sshd does not serve a certificate about to expire in place of a valid one.
 */
export const HOST_CERT_MIN_LEFT = 25n * 3600n

/**
 * A certificate the CA returned (enrollment, renewal, rekey), checked before it replaces the one sshd
 * serves: a host certificate naming at least one host, for this key, from a host CA key this context
 * trusts — a context that trusts none refuses every certificate: nothing could vouch for one, and no
 * client's known_hosts trusts it — and valid now: a CA whose clock is wrong must not replace a valid
 * certificate with one that has expired, starts later than the skew allows, or (`replaces`, renewal
 * and rekey) comes from a clock behind and ends before the one it replaces and before the next
 * renewal could run (HOST_CERT_MIN_LEFT).
 */
export function checkHostCert(
  cert: Certificate,
  ctx: Context,
  key: PublicKey,
  now: bigint,
  replaces?: Certificate,
): void {
  const hostCas = ctx.hostCaKeys.map((l) => PublicKey.parseLine(l).key)
  if (hostCas.length === 0)
    throw new SshcaError(
      'ERR_CA_BAD_RESPONSE',
      `the CA of context ${ctx.name} publishes no host CA key, so no certificate it returns can be checked (nor trusted by any client's known_hosts); nothing was installed`,
      {hint: `ask the CA's operator for a host CA key (ssh.hostKey), then run sshca config to fetch it`},
    )
  const problems: {code: CertProblemCode | 'no_principals' | 'ends_sooner'; message: string}[] = checkCertificate(
    cert,
    {type: 'host', publicKey: key, caKeys: hostCas},
  )
  // OpenSSH reads a certificate that names no principal as valid for every host name
  if (cert.principals.length === 0)
    problems.push({code: 'no_principals', message: 'it names no host (sshd and ssh would take it for any)'})
  if (cert.validBefore <= now)
    problems.push({code: 'expired', message: "it has already expired by this machine's clock"})
  else if (cert.validAfter > now + HOST_CERT_CLOCK_SKEW)
    problems.push({
      code: 'not_yet_valid',
      message: `it starts more than ${HOST_CERT_CLOCK_SKEW / 60n} minutes after this machine's clock`,
    })
  else if (
    replaces &&
    cert.validBefore < replaces.validBefore &&
    cert.validBefore - now < HOST_CERT_MIN_LEFT &&
    // a CA whose clock is right starts a certificate at most a minute back (its leeway): one that
    // starts further back comes from a clock behind this one. A shorter validity from a CA whose clock
    // agrees (its TTL lowered, with renewals as often as it needs) is the CA's to give
    cert.validAfter + HOST_CERT_CLOCK_SKEW + 60n < now
  )
    problems.push({
      code: 'ends_sooner',
      message: `it ends at ${isoFromSeconds(cert.validBefore)}, before the certificate it would replace (${isoFromSeconds(replaces.validBefore)}) and before the next daily renewal could renew it`,
    })
  if (problems.length)
    throw new SshcaError(
      'ERR_CA_BAD_RESPONSE',
      `the CA returned a certificate sshca will not install: ${problems.map((p) => p.message).join('; ')}`,
      problems.some((p) => p.code === 'expired' || p.code === 'not_yet_valid' || p.code === 'ends_sooner')
        ? {hint: "this machine's clock and the CA's disagree: check both (timedatectl; is NTP on?), then try again"}
        : {},
    )
}

export interface HostCertResult {
  context: string
  certificate: string
  principals: string[]
  serial: string
  keyId: string
  validBefore: string
}

function describe(ctx: Context, path: string, cert: Certificate): HostCertResult {
  return {
    context: ctx.name,
    certificate: path,
    principals: [...cert.principals],
    serial: cert.serial.toString(),
    keyId: cert.keyId,
    validBefore: isoFromSeconds(cert.validBefore),
  }
}

/** `sshca certificate --host --sign`: the CA signs the host's public key; `<key>-cert.pub` is written beside it. */
export async function signHostKey(
  home: string,
  o: {context?: string; token: string; hostname: string; pubkeyFile: string; principals?: string[]},
): Promise<HostCertResult> {
  const ctx = await loadContext(home, o.context)
  const {key} = PublicKey.parseLine(readText(o.pubkeyFile, 'public key'))
  const principals = [...new Set([o.hostname, ...(o.principals ?? [])])]
  const ca = new CaClient(ctx.caUrl, ctx.rootPem)
  try {
    const token = o.token.trim()
    // an ID token in place of an enrollment token is checked as login checks one
    await refuseTokenOfAnotherCa(home, ctx, token)
    const roots = fetchSshRoots(ctx, ca).then(
      (r) => r.ctx,
      () => ctx,
    )
    let crt: string
    try {
      ;({crt} = await ca.call('POST', '/ssh/sign', SshSignResponse, {
        publicKey: key.blob.toString('base64'),
        ott: token,
        certType: 'host',
        principals,
      }))
    } catch (err) {
      const {explainTokenRefusal} = await import('../login/token-diagnosis.ts')
      throw explainTokenRefusal(err, token, 'host-enrollment', {
        now: Math.floor(Date.now() / 1000),
        issuer: caIssuer(ctx.rootFingerprint),
        hostnames: principals,
        keyFingerprint: key.fingerprint(),
      })
    }
    const cert = parseCertificate(Buffer.from(crt, 'base64'))
    checkHostCert(cert, await roots, key, nowSeconds())
    const path = certPathFor(o.pubkeyFile)
    await writeFileAtomic(path, `${certificateLine(cert)}\n`, 0o644)
    return describe(ctx, path, cert)
  } finally {
    ca.close()
  }
}

export interface RenewResult extends HostCertResult {
  renewed: boolean
  /** Why it was or was not renewed. */
  reason: string
}

/** How `renew --reload-sshd` checks sshd's configuration and reloads it; the defaults are the machine's. */
export interface SshdReload {
  /** The sshd binary (default: the usual places) and the configuration sshd -t checks (default: its own). */
  sshd?: string
  sshdConfig?: string
  /** Presents the new certificate; default: systemctl try-reload-or-restart ssh.service sshd.service. */
  reload?: () => Promise<RunResult>
}

/**
 * After a renewal, sshd presents the new certificate once reloaded, and only if sshd -t accepts its
 * configuration: where the reload is a bare SIGHUP (Fedora, RHEL, Arch), sshd re-executes itself and
 * a configuration it rejects stops it, so that no one can log in. ERR_SSHD_CONFIG then, the certificate
 * already in place; the reload's own failure (no such unit) is returned, not thrown.
 */
export async function reloadSshd(d: SshdReload = {}): Promise<{reloaded: boolean; note: string | null}> {
  const binary = await sshdBinary(d.sshd)
  const check = binary
    ? await runQuiet(binary, ['-t', ...(d.sshdConfig ? ['-f', d.sshdConfig] : [])], 30_000, SYSTEM_ENV)
    : undefined
  if (!check || check.missing)
    throw new SshcaError(
      'ERR_FILE_NOT_FOUND',
      `no sshd binary ${binary ?? 'found'} to check its configuration before a reload`,
      {
        hint: 'is OpenSSH server installed? sshd presents the new certificate after its next reload',
      },
    )
  if (check.code !== 0)
    throw new SshcaError(
      'ERR_SSHD_CONFIG',
      `sshd -t refuses its configuration (${errorTail(check)}): sshd was not reloaded, and presents the previous certificate until it is`,
      {hint: 'fix what sshd -t names, then: systemctl reload ssh (or sshd)'},
    )
  const r = await (d.reload ?? systemctlReload)()
  return r.code === 0
    ? {reloaded: true, note: null}
    : {
        reloaded: false,
        note: `the reload failed (${errorTail(r)}): sshd presents the new certificate after its next reload`,
      }
}

/**
 * `renew --reload-sshd`'s reload: after a renewal, and on every later run until one succeeds (a
 * marker in $SSHCA_HOME says a reload is owed), so that a reload missed once (sshd -t refusing a
 * configuration being edited, systemctl failing) is not missed until the next renewal, weeks later,
 * while sshd presents a certificate running out. Nothing to do: undefined.
 */
export async function reloadSshdIfOwed(
  home: string,
  renewed: boolean,
  d: SshdReload = {},
): Promise<{reloaded: boolean; note: string | null} | undefined> {
  const owed = join(home, 'sshd-reload-owed')
  if (!renewed && !(await exists(owed))) return undefined
  // written first: a reload that fails or never ends leaves it for the next run
  if (renewed)
    await writeFileAtomic(
      owed,
      `a renewed host certificate awaits an sshd reload since ${new Date().toISOString()}\n`,
      0o600,
    )
  const r = await reloadSshd(d)
  if (r.reloaded) await rm(owed, {force: true})
  return r
}

const SYSTEM_ENV = {...process.env, PATH: SYSTEM_PATH}

const systemctlReload = (): Promise<RunResult> =>
  runQuiet('systemctl', ['try-reload-or-restart', 'ssh.service', 'sshd.service'], 60_000, SYSTEM_ENV)

/**
 * The CA's refusal of a renewal or rekey because `cert` is no longer its lineage's newest and nothing
 * made from it can be given back (sshca's CA says so in words: SUPERSEDED_MESSAGE): nothing this host
 * holds will renew again, so say how to enrol it again. Any other error: undefined.
 */
export function supersededRefusal(
  err: unknown,
  action: 'renew' | 'rekey',
  certFile: string,
  cert: Certificate,
  pubFile: string,
): SshcaError | undefined {
  if (!isSshcaError(err, 'ERR_CA_DENIED')) return undefined
  const said = err.details?.caMessage
  if (typeof said !== 'string' || !said.startsWith(SUPERSEDED_MESSAGE)) return undefined
  const rid = typeof err.details?.requestId === 'string' ? ` (request id ${err.details.requestId})` : ''
  // the names from the certificate the CA signed, and the key file, for command lines an admin may
  // paste as root: one line each, and single-quoted unless plainly a name or a path
  const word = (w: string): string => (/^[A-Za-z0-9._@:/=+-]+$/.test(w) ? w : `'${w.replaceAll("'", "'\\''")}'`)
  const [name = 'HOSTNAME', ...more] = cert.principals.map((p) => word(singleLine(p)))
  const extra = more.map((p) => ` --principal ${p}`).join('')
  const key = word(pubFile)
  return new SshcaError(
    'ERR_CA_DENIED',
    `the CA will not ${action} ${certFile}: it is no longer the newest certificate of this host key, and the CA has none made from it to give back (the newer one was renewed again, revoked or has expired, or the key was rekeyed or enrolled again)${rid}`,
    {
      cause: err,
      ...(err.details ? {details: err.details} : {}),
      hint: `enrol this host again. On the CA: sshca ca token --host ${name}${extra} --key ${key} (with the CA's --config and --password-file); then here: sshca certificate --host --sign --token-file FILE ${name} ${key}${extra}`,
    },
  )
}

/** Renew when less than this share of the validity is left (so a daily timer suffices). */
export const RENEW_WHEN_LEFT = 1 / 3

/** `sshca renew`: proves possession of the host key to the CA and installs the new certificate. */
export async function renewHostCert(
  home: string,
  o: {context?: string; certFile: string; keyFile: string; force?: boolean; clock?: () => number},
): Promise<RenewResult> {
  const loaded = await loadContext(home, o.context)
  const {cert} = parseCertificateLine(readText(o.certFile, 'certificate'))
  const now = nowSeconds(o.clock)
  const total = Number(cert.validBefore - cert.validAfter)
  const left = Number(cert.validBefore - now)
  const ca = new CaClient(loaded.caUrl, loaded.rootPem)
  try {
    // the published host CA keys first: the renewed certificate may come from a new key, and a
    // certificate from a key being rotated out is renewed now, not when its time runs low
    const roots = await fetchSshRoots(loaded, ca).catch(() => undefined)
    const ctx = roots?.ctx ?? loaded
    const signer = roots?.keys?.host.find((k) =>
      PublicKey.fromBlob(Buffer.from(k.key, 'base64')).equals(cert.signatureKey),
    )
    const rotatingOut = roots?.keys !== undefined && signer?.state !== 'active'
    if (!o.force && !rotatingOut && left > total * RENEW_WHEN_LEFT) {
      return {
        ...describe(ctx, o.certFile, cert),
        renewed: false,
        reason: `${Math.round((left / total) * 100)}% of its validity is left; renewal starts below ${Math.round(RENEW_WHEN_LEFT * 100)}% (or use --force)`,
      }
    }
    const {key} = parsePrivateKeyFile(readText(o.keyFile, 'host private key'))
    if (!key.publicKey.equals(cert.publicKey))
      throw new SshcaError('ERR_INPUT', `${o.keyFile} is not the key ${o.certFile} certifies`)
    // step's SSHPOP: the token names the CA's SSHPOP provisioner, which step-ca may call anything
    const provisioner = await sshpopProvisioner(ca)
    const ott = await mintSshpopToken(key.keyObject, cert, {
      caUrl: ctx.caUrl,
      action: 'renew',
      provisioner,
      rootFingerprint: ctx.rootFingerprint,
      now: Number(now),
    })
    let crt: string
    try {
      ;({crt} = await ca.call('POST', '/ssh/renew', SshSignResponse, {ott}))
    } catch (err) {
      const superseded = supersededRefusal(err, 'renew', o.certFile, cert, `${o.keyFile}.pub`)
      if (superseded) throw superseded
      const {explainTokenRefusal} = await import('../login/token-diagnosis.ts')
      // Stryker disable next-line ObjectLiteral: on /ssh/renew the time only words the diagnosis (a 401 is ERR_TOKEN_INVALID whatever it finds; only enrollment's 403 is wrapped or not by what it finds)
      throw explainTokenRefusal(err, ott, 'host-renewal', {now: Number(now)})
    }
    const fresh = parseCertificate(Buffer.from(crt, 'base64'))
    checkHostCert(fresh, ctx, key.publicKey, nowSeconds(o.clock), cert)
    await writeFileAtomic(o.certFile, `${certificateLine(fresh)}\n`, 0o644)
    const why =
      left <= 0
        ? 'it had expired'
        : o.force
          ? '--force'
          : rotatingOut
            ? `it was signed by a host CA key the CA is rotating out (${signer?.state ?? 'no longer published'})`
            : `${Math.round((Math.max(0, left) / total) * 100)}% of its validity was left`
    return {...describe(ctx, o.certFile, fresh), renewed: true, reason: why}
  } finally {
    ca.close()
  }
}

export type KrlResult = (
  | {
      context: string
      published: true
      file: string
      version: string
      revokedSerials: number
      revokedKeyIds: number
      bytes: number
    }
  /** The CA publishes no KRL (step-ca has no /ssh/krl): nothing was written. */
  | {context: string; published: false; file: null; note: string}
) & {
  /** The TrustedUserCAKeys file kept current beside the KRL (--user-ca-keys), when asked for. */
  userCaKeys?: {file: string; keys: number; changed: boolean}
}

/**
 * `sshca krl`: the CA's KRL over pinned TLS, checked, then written atomically (sshd rereads it per
 * login). A CA that publishes none (404) is said so and nothing is written; but when `out` already
 * holds a KRL, a CA that stopped publishing one is an error, so a timer running this shows it.
 * With `userCaKeys`, the TrustedUserCAKeys file too, from the published user CA keys: the hourly
 * timer is how a rotation reaches sshd (both keys during the overlap, then only the new one).
 */
export async function fetchKrl(
  home: string,
  o: {context?: string; out: string; userCaKeys?: string},
): Promise<KrlResult> {
  const loaded = await loadContext(home, o.context)
  const ca = new CaClient(loaded.caUrl, loaded.rootPem)
  try {
    let ctx = loaded
    let userCaKeys: KrlResult['userCaKeys']
    if (o.userCaKeys !== undefined) {
      ctx = (await fetchSshRoots(loaded, ca)).ctx
      userCaKeys = await syncTrustedUserCaKeys(ctx, o.userCaKeys)
    }
    let bytes: Buffer
    try {
      bytes = await ca.bytes('/ssh/krl')
    } catch (err) {
      if (!(err instanceof SshcaError && err.details?.status === 404)) throw err
      const note = `the CA "${ctx.name}" publishes no revocation list (GET /ssh/krl answered 404)`
      if (await exists(o.out))
        throw new SshcaError(
          'ERR_CA_UNSUPPORTED',
          `${note}; ${o.out} was kept as it is, and no longer gets this CA's revocations`,
          {hint: 'ask the CA operator; if this CA never publishes one, remove RevokedKeys and the sshca-krl timer'},
        )
      return {
        context: ctx.name,
        published: false,
        file: null,
        note: `${note}; nothing was written`,
        ...(userCaKeys ? {userCaKeys} : {}),
      }
    }
    // a file sshd cannot parse makes it refuse every public key: never write one
    const krl = parseKrl(bytes)
    await checkKrlLoads(bytes).catch((err: Error) => {
      throw new SshcaError(
        'ERR_CA_BAD_RESPONSE',
        `the CA "${ctx.name}" sent a revocation list that ${err.message}; ${o.out} was kept as it is`,
        {hint: 'ask the CA operator; sshd keeps refusing what the list kept here revokes'},
      )
    })
    await writeFileAtomic(o.out, bytes, 0o644)
    return {
      context: ctx.name,
      ...(userCaKeys ? {userCaKeys} : {}),
      published: true,
      file: o.out,
      version: krl.version.toString(),
      revokedSerials: new Set(krl.sections.flatMap((s) => s.serials.map(String))).size,
      revokedKeyIds: new Set(krl.sections.flatMap((s) => s.keyIds)).size,
      bytes: bytes.length,
    }
  } finally {
    ca.close()
  }
}
