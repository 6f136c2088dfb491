/**
 * `sshca ca init`: a new CA in an empty directory. Everything is built in a temporary sibling
 * directory and renamed into place at the end, so a failure leaves nothing behind and an existing
 * CA is never touched.
 */
import {generateKeyPairSync} from 'node:crypto'
import {readdir, rename, rm, rmdir} from 'node:fs/promises'
import {hostname} from 'node:os'
import {basename, dirname, join, relative, resolve} from 'node:path'
import {randomBytes} from 'node:crypto'
import {SshcaError} from '../errors.ts'
import {derivePattern, NO_HOSTS} from '../ssh/host-pattern.ts'
import {generatePrivateKey} from '../ssh/private-key.ts'
import {exists, privateDir, writeFileAtomic} from '../util/fs.ts'
import {parseHostPort} from '../util/net.ts'
import {caPaths} from './config/layout.ts'
import {parseKms, type Kms} from './config/kms.ts'
import {writeKeyring, type KeyEntry, type KeyRef} from './keys/keyring.ts'
import {newSalt, writeSealedKey} from './keys/keystore.ts'
import {checkOfflineKeyPath, writeOfflineKey} from './keys/offline.ts'
import {certFingerprint, createIntermediate, createRoot, createTlsCert} from './keys/pki.ts'
import {SignerRegistry} from './keys/signers.ts'
import type {PublicKey} from '../ssh/keys.ts'

export interface InitOptions {
  dir: string
  name?: string
  dnsNames?: readonly string[]
  address?: string
  password: string
  /** Where the SSH CA keys are made: "file" (default) or a pkcs11: URI (the keys never leave the token). */
  kms?: string
  /**
   * Offline root: the root key is written here (sealed with the CA password), not in the CA
   * directory. A new file outside it, meant to leave the box: the serving CA never needs it.
   */
  offlineRootKey?: string
}

export interface InitResult {
  dir: string
  config: string
  name: string
  address: string
  dnsNames: string[]
  /** ssh.hostPattern as written into ca.yaml (derived from dnsNames; NO_HOSTS when none could be). */
  hostPattern: string
  rootFingerprint: string
  userCaKey: string
  hostCaKey: string
  /** "file", or the pkcs11: URI the SSH CA keys were made in. */
  kms: string
  /** Where the root key went when it is offline; undefined when it is in the CA directory. */
  rootKeyFile?: string
  intermediateNotAfter: string
}

export function defaultDnsNames(address: string): string[] {
  const host = parseHostPort(address)?.host ?? ''
  return host === '' || host === '0.0.0.0' || host === '::' ? [hostname()] : [host]
}

export async function initCa(opts: InitOptions): Promise<InitResult> {
  const dir = resolve(opts.dir)
  const name = opts.name ?? 'sshca'
  const address = opts.address ?? '127.0.0.1:9000'
  if (!parseHostPort(address)) throw new SshcaError('ERR_USAGE', `--address "${address}" is not host:port`)
  const dnsNames = [
    ...new Set(
      (opts.dnsNames ?? [])
        .flatMap((d) => d.split(','))
        .map((d) => d.trim())
        .filter(Boolean),
    ),
  ]
  if (dnsNames.length === 0) dnsNames.push(...defaultDnsNames(address))
  for (const n of dnsNames) {
    if (!/^[A-Za-z0-9.*:-]+$/.test(n)) throw new SshcaError('ERR_USAGE', `--dns "${n}" is not a DNS name or IP address`)
  }
  if ((await exists(join(dir, 'ca.yaml'))) || (await exists(join(dir, 'secrets')))) {
    throw new SshcaError('ERR_CA_EXISTS', `a CA already exists in ${dir}`, {
      hint: 'sshca never overwrites a CA; choose another --dir or remove that one yourself',
    })
  }
  if ((await exists(dir)) && (await readdir(dir)).length > 0) {
    throw new SshcaError('ERR_CA_EXISTS', `${dir} is not empty`, {hint: 'give --dir a new or empty directory'})
  }

  let kms: Kms
  try {
    kms = parseKms(opts.kms ?? 'file')
  } catch (err) {
    throw new SshcaError('ERR_USAGE', `--kms: ${(err as Error).message}`)
  }
  const offline =
    opts.offlineRootKey === undefined
      ? undefined
      : await checkOfflineKeyPath(opts.offlineRootKey, dir, '--offline-root')

  const hostPattern = derivePattern(dnsNames)
  await privateDir(dirname(dir))
  const tmp = join(dirname(dir), `.${basename(dir)}.init-${randomBytes(4).toString('hex')}`)
  const p = caPaths(tmp)
  let undoOffline: (() => Promise<void>) | undefined
  try {
    for (const d of [tmp, p.certs, p.secrets, p.ssh, p.db]) await privateDir(d)
    const root = await createRoot(name)
    const intermediate = await createIntermediate(name, root)
    const tls = await createTlsCert(dnsNames, intermediate)
    const enrollment = generateKeyPairSync('ed25519').privateKey
    // one salt for the CA's keys: `ca serve` opens them all with one (deliberately slow) derivation
    const salt = newSalt()
    const created = new Date().toISOString()
    const sshKeys: Record<'user' | 'host', {ref: KeyRef; publicKey: PublicKey}> = {} as never
    if (kms.type === 'file') {
      for (const [kind, path] of [
        ['user', p.userCaKey],
        ['host', p.hostCaKey],
      ] as const) {
        const key = generatePrivateKey('ed25519')
        await writeSealedKey(path, key.keyObject, opts.password, salt)
        sshKeys[kind] = {ref: {type: 'file', path: relative(tmp, path)}, publicKey: key.publicKey}
      }
    } else {
      // in the token: generated there, never extractable; only references are written here
      const registry = new SignerRegistry({dir: tmp, password: opts.password, kms})
      try {
        for (const kind of ['user', 'host'] as const) sshKeys[kind] = await registry.create(kind, `${kind}-1`)
      } finally {
        await registry.close()
      }
    }
    const entry = (kind: 'user' | 'host'): KeyEntry => ({
      id: `${kind}-1`,
      publicKey: sshKeys[kind].publicKey.toLine(),
      state: 'active',
      ref: sshKeys[kind].ref,
      createdAt: created,
      activatedAt: created,
    })
    const userCa = sshKeys.user
    const hostCa = sshKeys.host
    await writeKeyring(tmp, {version: 1, user: [entry('user')], host: [entry('host')]}, name)
    await Promise.all([
      writeFileAtomic(p.rootCert, root.pem),
      writeFileAtomic(p.intermediateCert, intermediate.pem),
      writeFileAtomic(p.tlsCert, tls.pem + intermediate.pem),
      ...(offline === undefined ? [writeSealedKey(p.rootKey, root.key, opts.password, salt)] : []),
      writeSealedKey(p.intermediateKey, intermediate.key, opts.password, salt),
      writeSealedKey(p.tlsKey, tls.key, opts.password, salt),
      writeSealedKey(p.enrollmentKey, enrollment, opts.password, salt),
      writeFileAtomic(p.config, configTemplate({name, address, dnsNames, hostPattern, kms: opts.kms ?? 'file'})),
    ])
    if (await exists(dir)) await rmdir(dir)
    // the offline root key last, when everything else is in place: a failure leaves no orphan root key,
    // and 'wx' never replaces a file that appeared since the check
    if (offline !== undefined) undoOffline = await writeOfflineKey(offline, root.key, opts.password)
    await rename(tmp, dir)
    return {
      dir,
      config: join(dir, 'ca.yaml'),
      name,
      address,
      dnsNames,
      hostPattern,
      rootFingerprint: certFingerprint(root.der),
      userCaKey: userCa.publicKey.toLine(`${name} user CA`),
      hostCaKey: hostCa.publicKey.toLine(`${name} host CA`),
      kms: opts.kms ?? 'file',
      ...(offline === undefined ? {} : {rootKeyFile: offline}),
      intermediateNotAfter: intermediate.cert.notAfter.toISOString(),
    }
  } catch (err) {
    await rm(tmp, {recursive: true, force: true})
    await undoOffline?.()
    throw err
  }
}

const y = (v: unknown): string => JSON.stringify(v)

function hostPatternLines(pattern: string): string {
  if (pattern === NO_HOSTS) {
    return `  # The hosts whose host certificates clients trust from this CA: "@cert-authority <hostPattern> <key>"
  # in their known_hosts and "Match host <hostPattern>" in their ssh_config (sshca config). No pattern
  # could be derived from dnsNames (IP addresses, single-label names, or a name whose parent is a
  # top-level or public domain), so "!*" names no hosts and "sshca config" asks each person for --pattern. Write yours, e.g. "*.corp.example.com,10.0.0.*".
  # "*" trusts this CA for every host anyone connects to: write it only if that is what you mean.
  hostPattern: ${y(pattern)}`
  }
  return `  # The hosts whose host certificates clients trust from this CA: "@cert-authority <hostPattern> <key>"
  # in their known_hosts and "Match host <hostPattern>" in their ssh_config (sshca config). Derived
  # from dnsNames (the parent domain of each name); a comma-separated list, "!" excludes. Clients
  # may narrow it (sshca config --pattern), never widen it. "*" trusts this CA for every host anyone
  # connects to: write it only if that is what you mean.
  hostPattern: ${y(pattern)}`
}

function configTemplate(o: {
  name: string
  address: string
  dnsNames: string[]
  hostPattern: string
  kms: string
}): string {
  return `# sshca CA configuration. Check it with: sshca ca check-config --config <this file>
# The running CA re-reads it on SIGHUP; an invalid file is logged and the old policy kept.

name: ${y(o.name)}
# Where the HTTPS API listens (host:port). Clients reach it by one of dnsNames.
address: ${y(o.address)}
# Names and IP addresses in the API's TLS certificate.
dnsNames: ${y(o.dnsNames)}
# true stops all issuance (503) without stopping the server.
disabled: false

# State: used token ids (replay protection), issued certificates, revocations.
# sqlite: a file under this directory (the schema in src/ca/store.ts is PostgreSQL-ready).
db:
  type: sqlite
  path: db/sshca.sqlite
  # full: a certificate is returned only once its record and spent token are on disk (fsync).
  # normal: faster, but a power loss can drop the last commits (spent tokens replayable again).
  durability: full

# Audit log: one JSON line per decision. "-" is standard output.
audit:
  file: "-"

# Where the SSH CA keys are made (here and by "sshca ca rotate prepare"): "file" seals them under
# secrets/ with the CA password; a pkcs11: URI makes them inside that token (an HSM), never
# extractable: pkcs11:token=LABEL?module-path=/path/module.so&pin-source=file:/path/pin-file
keys:
  kms: ${y(o.kms)}

ssh:
${hostPatternLines(o.hostPattern)}
  # Ceiling for user certificates, whatever a provisioner or rule says.
  maxUserTtl: 24h
  # Host certificates: default and ceiling.
  hostTtl: 30d
  maxHostTtl: 90d

# Provisioners name the token issuers this CA trusts; each rule maps claims to one certificate.
# A token must match exactly one enabled rule of its provisioner, else it is denied.
# Match values: a scalar is equality, a list is any-of, {domain: example.com} on an email,
# {contains: ops} on a list claim such as groups, {glob: "refs/heads/release/*"}.
# A claim the token lacks never matches. Templates: \${claim}, \${email.local}, \${email.domain}.
# None yet, so every request is denied. To start, delete the leading "#" of an example's lines
# (keep the indentation), edit it, then run check-config.
provisioners:
#  - name: sso
#    type: oidc
#    issuer: https://idp.example.com
#    clientId: sshca-cli            # a client of this CA's own; audience defaults to clientId
#    # clientSecret: ...            # only for IdPs that insist on a secret for native apps
#    rules:
#      - name: engineers
#        match: { email_verified: true, email: { domain: example.com } }
#        certificate:
#          principals: ["\${email.local}", "\${email}"]
#          keyId: "\${email}"
#          ttl: 8h
#          extensions: [permit-pty]
#  - name: ci
#    type: oidc
#    issuer: https://token.actions.githubusercontent.com
#    audience: https://ca.example.com   # this CA's own (its URL): any CA that accepts an audience accepts its tokens
#    maxTtl: 15m
#    rules:
#      - name: deploy
#        match: { repository: acme/app, ref: refs/heads/main, event_name: [push, workflow_dispatch] }
#        certificate:
#          principals: [deploy]
#          ttl: 10m
#          keyId: "gha:\${repository}:\${run_id}"
#          forceCommand: /usr/local/bin/deploy.sh
#          sourceAddress: ["10.0.0.0/8"]
`
}
