/**
 * The rest of `step ssh` that talks to the CA: `hosts` (GET /ssh/hosts), `check-host` (POST
 * /ssh/check-host), and what a certificate's holder may do by proving possession of its key
 * (step's SSHPOP): `rekey` a host certificate onto a new key, `revoke` one's own certificate. The
 * proof is a JWT signed by the key, from a file or through the ssh-agent (a user's ephemeral key
 * never leaves the agent), in step's SSHPOP shape (src/protocol/tokens.ts) for the CA's SSHPOP
 * provisioner, so the same commands work against sshca's CA and step-ca.
 */
import {closeSync, constants as fsConstants, fstatSync, openSync, readFileSync} from 'node:fs'
import {rm} from 'node:fs/promises'
import {isSshcaError, SshcaError} from '../../errors.ts'
import {HostsResponse, SshCheckHostResponse, SshRevokeResponse, SshSignResponse} from '../../protocol/api.ts'
import {mintSshpopTokenWith, type SshpopAction} from '../../protocol/tokens.ts'
import {AgentClient, SIGN_FLAGS, type AgentOptions} from '../../ssh/agent.ts'
import {certificateLine, nowSeconds, parseCertificate, parseCertificateLine, type Certificate} from '../../ssh/cert.ts'
import {PublicKey} from '../../ssh/keys.ts'
import {
  formatOpenSshPrivateKey,
  generatePrivateKey,
  parsePrivateKeyFile,
  type KeyKind,
  type PrivateKey,
} from '../../ssh/private-key.ts'
import {signData} from '../../ssh/signature.ts'
import {readTextFile, refuseSymlink, writeFileAtomic} from '../../util/fs.ts'
import {CaClient} from '../ca-api/ca-client.ts'
import {loadContext, type Context} from '../home/home.ts'
import {checkHostCert, supersededRefusal} from './host.ts'
import {obtainIdToken, type LoginDeps, type LoginOptions} from '../login/login.ts'
import {sshpopProvisioner} from '../ca-api/provisioners.ts'
import {isoFromSeconds} from '../../util/iso-time.ts'

/** `what` at `path`; host keys are root's alone to read. */
const readText = (path: string, what: string): string =>
  readTextFile(path, what, {accessHint: 'host keys are readable by root only: run with sudo'})

export interface HostView {
  hostname: string
  principals: string[]
  id: string | null
  tags: Record<string, string>
  serial: string | null
  keyFingerprint: string | null
  validBefore: string | null
}

/** step-ca's host_tags ([{ID, Name, Value}]) as name → value; anything else sent there is ignored. */
function hostTags(v: unknown): Record<string, string> {
  if (!Array.isArray(v)) return {}
  const tags = v.filter(
    (t): t is {Name: string; Value?: unknown} =>
      t !== null && typeof t === 'object' && typeof (t as {Name?: unknown}).Name === 'string',
  )
  // fromEntries defines own properties: a tag named __proto__ stays a tag
  return Object.fromEntries(tags.map((t) => [t.Name, typeof t.Value === 'string' ? t.Value : '']))
}

/**
 * A read the CA may keep for signed-in people: asked first without credentials (step-ca answers
 * /ssh/hosts and /ssh/check-host so), and on a 401 (sshca's CA) asked again with the caller's ID
 * token as a Bearer. An ID token given explicitly (--identity-token-file) is sent at once.
 */
async function readAsSignedIn<T>(
  ctx: Context,
  ca: CaClient,
  o: LoginOptions,
  deps: LoginDeps,
  read: (authorization?: string) => Promise<T>,
): Promise<T> {
  if (o.identityToken === undefined && !o.githubActions) {
    try {
      return await read()
    } catch (err) {
      if (!isSshcaError(err, 'ERR_CA_UNAUTHORIZED')) throw err
    }
  }
  const got = await obtainIdToken(ctx, ca, o, deps)
  return read(`Bearer ${got.idToken}`)
}

/** `sshca hosts`: the hosts with a current certificate, as the CA lists them (sshca's or step-ca's shape). */
export async function listHosts(
  home: string,
  o: LoginOptions,
  deps: LoginDeps,
): Promise<{context: string; hosts: HostView[]}> {
  const ctx = await loadContext(home, o.context)
  const ca = new CaClient(ctx.caUrl, ctx.rootPem)
  try {
    const r = await readAsSignedIn(ctx, ca, o, deps, (authorization) =>
      ca.call('GET', '/ssh/hosts', HostsResponse, undefined, authorization ? {authorization} : {}),
    )
    const hosts = r.hosts.map((h): HostView => {
      const principals = h.principals ?? (h.hostname ? [h.hostname] : [])
      return {
        hostname: h.hostname || (principals[0] ?? ''),
        principals,
        id: h.hid ?? h.serial ?? null,
        tags: hostTags(h.host_tags),
        serial: h.serial ?? null,
        keyFingerprint: h.keyFingerprint ?? null,
        validBefore: h.validBefore ?? null,
      }
    })
    return {context: ctx.name, hosts: hosts.sort((a, b) => a.hostname.localeCompare(b.hostname))}
  } finally {
    ca.close()
  }
}

/**
 * `sshca check-host HOST`: whether the CA has a current host certificate naming it (step's
 * check-host). On sshca's CA, like the inventory, it is for signed-in people (readAsSignedIn).
 */
export async function checkHost(
  home: string,
  o: LoginOptions & {host: string},
  deps: LoginDeps,
): Promise<{context: string; host: string; exists: boolean}> {
  const ctx = await loadContext(home, o.context)
  const ca = new CaClient(ctx.caUrl, ctx.rootPem)
  try {
    const r = await readAsSignedIn(ctx, ca, o, deps, (authorization) =>
      ca.call(
        'POST',
        '/ssh/check-host',
        SshCheckHostResponse,
        {type: 'host', principal: o.host},
        authorization ? {authorization} : {},
      ),
    )
    return {context: ctx.name, host: o.host, exists: r.exists}
  } finally {
    ca.close()
  }
}

/** An SSHPOP token for this CA's SSHPOP provisioner, signed through `sign` (a key file or the agent). */
async function sshpop(
  ca: CaClient,
  ctx: Context,
  sign: (data: Buffer) => Promise<Buffer>,
  cert: Certificate,
  action: SshpopAction,
  now: number,
  newKey?: string,
): Promise<string> {
  const provisioner = await sshpopProvisioner(ca)
  return mintSshpopTokenWith(sign, cert, {
    caUrl: ctx.caUrl,
    action,
    provisioner,
    rootFingerprint: ctx.rootFingerprint,
    now,
    ...(newKey ? {newKey} : {}),
  })
}

const fileSigner =
  (key: PrivateKey) =>
  async (data: Buffer): Promise<Buffer> =>
    signData(key.keyObject, key.publicKey, data, 'rsa-sha2-256')

const KIND: Record<string, KeyKind> = {
  'ssh-ed25519': 'ed25519',
  'ecdsa-sha2-nistp256': 'ecdsa',
  'ecdsa-sha2-nistp384': 'ecdsa-p384',
  'ecdsa-sha2-nistp521': 'ecdsa-p521',
  'ssh-rsa': 'rsa',
}

export interface RekeyResult {
  context: string
  previousSerial: string
  serial: string
  keyId: string
  principals: string[]
  validBefore: string
  files: {key: string; publicKey: string; certificate: string}
  keyFingerprint: string
}

/**
 * `sshca rekey CERT KEY [--out FILE]` (step's): a new key of the same type, a host certificate for
 * it proven by the current one's key, written over KEY, KEY.pub and CERT (or FILE, FILE.pub,
 * FILE-cert.pub). The old certificate stays valid until it expires, as with step-ca.
 */
export async function rekeyHost(
  home: string,
  o: {context?: string; certFile: string; keyFile: string; out?: string; clock?: () => number},
): Promise<RekeyResult> {
  const ctx = await loadContext(home, o.context)
  const {cert} = parseCertificateLine(readText(o.certFile, 'certificate'))
  if (cert.type !== 'host')
    throw new SshcaError(
      'ERR_INPUT',
      `${o.certFile} is a user certificate: users sign in again (sshca login); rekey is for host certificates`,
    )
  const {key} = parsePrivateKeyFile(readText(o.keyFile, 'private key'))
  if (!key.publicKey.equals(cert.publicKey))
    throw new SshcaError('ERR_INPUT', `${o.keyFile} is not the key ${o.certFile} certifies`)
  const files = o.out
    ? {key: o.out, publicKey: `${o.out}.pub`, certificate: `${o.out}-cert.pub`}
    : {key: o.keyFile, publicKey: `${o.keyFile}.pub`, certificate: o.certFile}
  // the new key waits beside the old one until its certificate is written: a rekey whose answer was
  // lost (the CA committed, this host never heard) is asked again with the same new key, and the CA
  // gives back the certificate it made for it (SECURITY.md row 62); with another new key it would find
  // the old key's lineage ended and nothing to give back
  const pending = `${files.key}.rekey`
  for (const f of [...Object.values(files), pending]) await refuseSymlink(f)
  let fresh = pendingRekeyKey(pending, key.publicKey)
  if (!fresh) {
    fresh = generatePrivateKey(
      KIND[key.publicKey.type] ?? 'ed25519',
      key.publicKey.type === 'ssh-rsa' ? Math.max(3072, key.publicKey.bits) : undefined,
    )
    await writeFileAtomic(pending, formatOpenSshPrivateKey(fresh, cert.keyId), 0o600)
  }
  const ca = new CaClient(ctx.caUrl, ctx.rootPem)
  try {
    // the new key named in the proof: a token taken in flight rekeys to nothing but this key
    const ott = await sshpop(
      ca,
      ctx,
      fileSigner(key),
      cert,
      'rekey',
      Number(nowSeconds(o.clock)),
      fresh.publicKey.fingerprint(),
    )
    let crt: string
    try {
      ;({crt} = await ca.call('POST', '/ssh/rekey', SshSignResponse, {
        ott,
        publicKey: fresh.publicKey.blob.toString('base64'),
      }))
    } catch (err) {
      const superseded = supersededRefusal(err, 'rekey', o.certFile, cert, `${o.keyFile}.pub`)
      if (superseded) throw superseded
      const {explainTokenRefusal} = await import('../login/token-diagnosis.ts')
      throw explainTokenRefusal(err, ott, 'host-renewal', {now: Number(nowSeconds(o.clock))})
    }
    const next = parseCertificate(Buffer.from(crt, 'base64'))
    // as enrollment and renewal check theirs: before the old key is replaced, which cannot be undone
    checkHostCert(next, ctx, fresh.publicKey, nowSeconds(o.clock), cert)
    await writeFileAtomic(files.key, formatOpenSshPrivateKey(fresh, cert.keyId), 0o600)
    await writeFileAtomic(files.publicKey, `${fresh.publicKey.toLine(cert.keyId)}\n`, 0o644)
    await writeFileAtomic(files.certificate, `${certificateLine(next, cert.keyId)}\n`, 0o644)
    await rm(pending, {force: true})
    return {
      context: ctx.name,
      previousSerial: cert.serial.toString(),
      serial: next.serial.toString(),
      keyId: next.keyId,
      principals: [...next.principals],
      validBefore: isoFromSeconds(next.validBefore),
      files,
      keyFingerprint: fresh.publicKey.fingerprint(),
    }
  } finally {
    ca.close()
  }
}

/**
 * The new key a rekey that did not finish left at `path` (rekeyHost), when it may serve again: a
 * regular file this user owns and no one else may read or write (with --out in a directory others
 * write to, a key planted there would become the host key), a private key of the kind the old key is,
 * and not the old key. Anything else (none, unreadable, another kind): undefined, and a new key is made.
 */
function pendingRekeyKey(path: string, old: PublicKey): PrivateKey | undefined {
  let fd: number
  try {
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK)
  } catch {
    return undefined
  }
  try {
    const s = fstatSync(fd)
    if (!s.isFile() || s.uid !== process.geteuid?.() || (s.mode & 0o077) !== 0 || s.size > 64 * 1024) return undefined
    const {key} = parsePrivateKeyFile(readFileSync(fd, 'utf8'))
    const pub = key.publicKey
    const sameKind = pub.type === old.type && (pub.type !== 'ssh-rsa' || pub.bits >= Math.max(3072, old.bits))
    return sameKind && !pub.equals(old) ? key : undefined
  } catch {
    return undefined
  } finally {
    closeSync(fd)
  }
}

export interface RevokeOwnResult {
  context: string
  serial: string
  keyId: string
  certType: 'user' | 'host'
  /** Where the key that proved it was: a file, or the agent (and whether it was removed from there). */
  proof: 'file' | 'agent'
  removedFromAgent: boolean
}

/**
 * `sshca revoke [SERIAL]` (step's, for one's own certificate): proves possession of the
 * certificate's key, from --sshpop-cert/--sshpop-key files or through the ssh-agent (the context's
 * certificate with that serial, or its only one), and asks the CA to revoke it; a certificate from
 * the agent is then removed from it.
 */
export async function revokeOwn(
  home: string,
  o: {
    context?: string
    serial?: string
    certFile?: string
    keyFile?: string
    reason?: string
    reasonCode?: number
    clock?: () => number
  },
  deps: {agent: AgentOptions},
): Promise<RevokeOwnResult> {
  const ctx = await loadContext(home, o.context)
  if ((o.certFile === undefined) !== (o.keyFile === undefined))
    throw new SshcaError('ERR_USAGE', '--sshpop-cert and --sshpop-key go together')
  const now = Number(nowSeconds(o.clock))
  const ca = new CaClient(ctx.caUrl, ctx.rootPem)
  let agent: AgentClient | undefined
  try {
    let cert: Certificate
    let sign: (data: Buffer) => Promise<Buffer>
    let blob: Buffer | undefined
    if (o.certFile && o.keyFile) {
      ;({cert} = parseCertificateLine(readText(o.certFile, 'certificate')))
      const {key} = parsePrivateKeyFile(readText(o.keyFile, 'private key'))
      if (!key.publicKey.equals(cert.publicKey))
        throw new SshcaError('ERR_INPUT', `${o.keyFile} is not the key ${o.certFile} certifies`)
      sign = fileSigner(key)
    } else {
      agent = await AgentClient.connect(deps.agent)
      const cas = new Set([...ctx.userCaKeys, ...ctx.hostCaKeys].map((l) => PublicKey.parseLine(l).key.fingerprint()))
      const mine = (await agent.list()).filter(
        (id) =>
          id.certificate &&
          cas.has(id.certificate.signatureKey.fingerprint()) &&
          id.certificate.validBefore > BigInt(now),
      )
      const chosen = o.serial ? mine.filter((id) => id.certificate!.serial.toString() === o.serial) : mine
      if (chosen.length !== 1) {
        const listed = mine.map((id) => `${id.certificate!.serial} (${id.certificate!.keyId})`).join(', ') || 'none'
        throw new SshcaError(
          chosen.length === 0 ? 'ERR_NOT_FOUND' : 'ERR_USAGE',
          chosen.length === 0
            ? `the ssh-agent holds no current certificate of "${ctx.name}"${o.serial ? ` with serial ${o.serial}` : ''}`
            : `the ssh-agent holds several certificates of "${ctx.name}": say which serial`,
          {hint: `current ones in the agent: ${listed}; or prove it from files: --sshpop-cert CERT --sshpop-key KEY`},
        )
      }
      cert = chosen[0]!.certificate!
      blob = chosen[0]!.blob
      const a = agent
      sign = (data) => a.sign(blob!, data, cert.publicKey.type === 'ssh-rsa' ? SIGN_FLAGS.RSA_SHA2_256 : 0)
    }
    if (o.serial !== undefined && o.serial !== cert.serial.toString())
      throw new SshcaError('ERR_USAGE', `the certificate's serial is ${cert.serial}, not ${o.serial}`)
    const ott = await sshpop(ca, ctx, sign, cert, 'revoke', now)
    await ca.call('POST', '/ssh/revoke', SshRevokeResponse, {
      serial: cert.serial.toString(),
      ott,
      reasonCode: o.reasonCode ?? 0,
      ...(o.reason ? {reason: o.reason} : {}),
      passive: true,
    })
    let removed = false
    if (agent && blob)
      removed = await agent.remove(blob).then(
        () => true,
        () => false,
      )
    return {
      context: ctx.name,
      serial: cert.serial.toString(),
      keyId: cert.keyId,
      certType: cert.type,
      proof: blob ? 'agent' : 'file',
      removedFromAgent: removed,
    }
  } finally {
    agent?.close()
    ca.close()
  }
}
