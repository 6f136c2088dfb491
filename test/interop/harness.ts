/**
 * The interop harness: smallstep's real step-ca 0.19.0 and step CLI 0.15.16 (built by
 * scripts/build-step.sh), sshca's CA as the `sshca ca serve` process, and the dev IdP (oidc-provider)
 * behind TLS on 127.0.0.1 (the step CLI refuses http:// providers). Every process listens on loopback
 * at a port the OS picked, is stopped by pid, and keeps its files in a temp dir. A browser is a
 * script that signs in on the IdP's pages as a person would (fake-browser.ts): `xdg-open` for step,
 * $BROWSER for sshca.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {Agent, request} from 'undici'
import {createIntermediate, createRoot, createTlsCert} from '../../src/ca/keys/pki.ts'
import {startDevIdp, type DevIdp} from '../../src/demo/idp.ts'
import {makeCaDir, PASSWORD} from '../helpers/ca.ts'
import {BIN, ROOT} from '../helpers/cli.ts'
import {startAgent, type Agent as SshAgent} from '../helpers/openssh.ts'
import {onCleanup, run, waitFor, type RunResult} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {readAuditLines} from '../helpers/audit.ts'

export const INTEROP_DIR = process.env.SSHCA_INTEROP_DIR ?? join(ROOT, '.cache', 'interop')
export const STEP = join(INTEROP_DIR, 'bin', 'step')
export const STEP_CA = join(INTEROP_DIR, 'bin', 'step-ca')
/** The OIDC client both the step CLI and sshca sign in with (a native app: loopback redirects on any port). */
export const CLIENT_ID = 'sshca-cli'

export function requireStepBinaries(): void {
  if (!existsSync(STEP) || !existsSync(STEP_CA))
    throw new Error(`no step/step-ca in ${INTEROP_DIR}/bin: run scripts/build-step.sh (npm run test:interop does)`)
}

/** A process that runs until stopped, its output kept. */
export interface Daemon {
  child: ChildProcess
  /** Resolves when the process has exited and its output is all read. */
  closed: Promise<void>
  output(): string
  stop(): Promise<void>
}

export function daemon(cmd: string, args: string[], env: NodeJS.ProcessEnv): Daemon {
  const child = spawn(cmd, args, {env, stdio: ['ignore', 'pipe', 'pipe']})
  let out = ''
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()))
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await Promise.race([exited, sleep(10_000).then(() => child.kill('SIGKILL'))])
  }
  onCleanup(stop)
  return {child, closed: exited, output: () => out, stop}
}

/** A port nobody listens on right now (for step-ca, which cannot report a port it picked). */
export async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as {port: number}).port
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

/** GET over TLS trusting `ca` alone; resolves with the status, or 0 while nothing answers. */
async function probe(url: string, ca: string): Promise<number> {
  const dispatcher = new Agent({connect: {ca}})
  try {
    const res = await request(url, {dispatcher, headersTimeout: 5000, bodyTimeout: 5000})
    await res.body.text()
    return res.statusCode
  } catch {
    return 0
  } finally {
    await dispatcher.close()
  }
}

export interface TlsIdp {
  idp: DevIdp
  issuer: string
  /** The PEM root its TLS certificate chains to: SSL_CERT_FILE for Go, NODE_EXTRA_CA_CERTS for node. */
  caFile: string
}

/** The dev IdP over HTTPS, its certificate from a throwaway root. */
export async function startTlsIdp(): Promise<TlsIdp> {
  const dir = tempDir('sshca-interop-idp-')
  const root = await createRoot('Interop IdP')
  const mid = await createIntermediate('Interop IdP', root)
  const leaf = await createTlsCert(['127.0.0.1'], mid)
  const caFile = join(dir, 'idp-root.pem')
  writeFileSync(caFile, root.pem)
  const idp = await startDevIdp({
    // step's redirect URI is http://127.0.0.1:PORT, sshca's http://127.0.0.1:PORT/callback
    clients: [{clientId: CLIENT_ID, redirectUris: ['http://127.0.0.1/callback', 'http://127.0.0.1']}],
    quiet: true,
    tls: {key: leaf.key.export({type: 'pkcs8', format: 'pem'}) as string, cert: leaf.pem + mid.pem},
  })
  onCleanup(() => idp.stop())
  return {idp, issuer: idp.issuer, caFile}
}

/**
 * A bin directory with `xdg-open` (what step opens a browser with) that signs in as
 * $FAKE_BROWSER_LOGIN on the dev IdP; its path also serves as sshca's $BROWSER.
 */
export function fakeBrowserBin(): {dir: string; browser: string; log: string} {
  const dir = tempDir('sshca-interop-bin-')
  const log = join(dir, 'browser.log')
  const script = `#!/bin/sh\n"${process.execPath}" "${join(ROOT, 'test', 'interop', 'fake-browser.ts')}" "$1" >>"${log}" 2>&1 &\n`
  const browser = join(dir, 'xdg-open')
  writeFileSync(browser, script)
  chmodSync(browser, 0o755)
  return {dir, browser, log}
}

export interface OurCa {
  url: string
  rootFingerprint: string
  dir: string
  config: string
  passwordFile: string
  daemon: Daemon
  auditLines(): Record<string, unknown>[]
  stop(): Promise<void>
}

/** `sshca ca serve` as its own process, trusting the IdP's root for discovery and keys. */
export async function startOurCa(settings: Record<string, unknown>, extraEnv: NodeJS.ProcessEnv): Promise<OurCa> {
  const {init, passwordFile} = await makeCaDir(settings)
  const auditFile = join(init.dir, 'audit.log')
  const {writePolicy} = await import('../helpers/ca.ts')
  await writePolicy(init.config, {audit: {file: auditFile}, ...settings})
  const d = daemon(
    process.execPath,
    [BIN, 'ca', 'serve', '--config', init.config, '--password-file', passwordFile, '--address', '127.0.0.1:0'],
    {...process.env, NO_COLOR: '1', ...extraEnv},
  )
  let url = ''
  await waitFor(
    'sshca ca serve to listen',
    () => {
      const m = /listening on (https:\/\/\S+)/.exec(d.output())
      if (m) url = m[1]!
      if (d.child.exitCode !== null) throw new Error(`sshca ca serve exited:\n${d.output()}`)
      return url !== ''
    },
    60_000,
  )
  return {
    url,
    rootFingerprint: init.rootFingerprint,
    dir: init.dir,
    config: init.config,
    passwordFile,
    daemon: d,
    auditLines: () => readAuditLines(auditFile),
    stop: () => d.stop(),
  }
}

export interface StepCa {
  url: string
  rootFingerprint: string
  rootFile: string
  steppath: string
  passwordFile: string
  caJson: string
  daemon: Daemon
  stop(): Promise<void>
}

/**
 * step-ca made by the real `step ca init` (with --ssh unless `ssh: false`), its ca.json extended
 * with `provisioners` (placed before step's own JWK "admin" and SSHPOP "sshpop"), served by the
 * real step-ca on a free loopback port, trusting the IdP's root (SSL_CERT_FILE).
 */
export async function startStepCa(o: {
  ssh: boolean
  provisioners: Record<string, unknown>[]
  idpCaFile: string
}): Promise<StepCa> {
  const base = tempDir('sshca-interop-stepca-')
  const steppath = join(base, 'step')
  const passwordFile = join(base, 'password')
  writeFileSync(passwordFile, `${PASSWORD}\n`, {mode: 0o600})
  const port = await freePort()
  const env = {...process.env, STEPPATH: steppath, HOME: base, SSL_CERT_FILE: o.idpCaFile}
  const init = await run(
    STEP,
    [
      'ca',
      'init',
      ...(o.ssh ? ['--ssh'] : []),
      '--name',
      'Interop Step',
      '--dns',
      '127.0.0.1',
      '--address',
      `127.0.0.1:${port}`,
      '--provisioner',
      'admin',
      '--password-file',
      passwordFile,
      '--provisioner-password-file',
      passwordFile,
    ],
    {env, timeoutMs: 120_000},
  )
  if (init.code !== 0) throw new Error(`step ca init failed:\n${init.stdout}\n${init.stderr}`)
  const caJson = join(steppath, 'config', 'ca.json')
  const cfg = JSON.parse(readFileSync(caJson, 'utf8')) as {
    address: string
    authority: {provisioners: Record<string, unknown>[]}
  }
  cfg.authority.provisioners = [...o.provisioners, ...cfg.authority.provisioners]
  const rootFile = join(steppath, 'certs', 'root_ca.crt')
  const fp = await run(STEP, ['certificate', 'fingerprint', rootFile], {env})
  const rootPem = readFileSync(rootFile, 'utf8')
  // the port was free a moment ago; on a busy machine another process may take it first: try again
  let url = ''
  let d: Daemon | undefined
  for (let attempt = 0; attempt < 3 && !url; attempt++) {
    const p = attempt === 0 ? port : await freePort()
    cfg.address = `127.0.0.1:${p}`
    writeFileSync(caJson, JSON.stringify(cfg, null, 2))
    const started = daemon(STEP_CA, [caJson, '--password-file', passwordFile], env)
    d = started
    let up = false
    await waitFor(
      'step-ca to answer /health or exit',
      async () => {
        if (started.child.exitCode !== null) return true
        up = (await probe(`https://127.0.0.1:${p}/health`, rootPem)) === 200
        return up
      },
      60_000,
    )
    if (up) {
      url = `https://127.0.0.1:${p}`
      break
    }
    await started.closed
    if (!/address already in use/.test(started.output())) throw new Error(`step-ca exited:\n${started.output()}`)
  }
  if (!url || !d) throw new Error('step-ca found no free port in three tries')
  const running = d
  return {
    url,
    rootFingerprint: fp.stdout.trim(),
    rootFile,
    steppath,
    passwordFile,
    caJson,
    daemon: running,
    stop: () => running.stop(),
  }
}

/** A person's machine for the step CLI: its own STEPPATH, HOME, ssh-agent and browser. */
export interface StepUser {
  env: NodeJS.ProcessEnv
  steppath: string
  home: string
  agent: SshAgent
  step(args: string[], o?: {timeoutMs?: number; input?: string}): Promise<RunResult>
}

export async function stepUser(idpCaFile: string, login = 'alice'): Promise<StepUser> {
  const base = tempDir('sshca-interop-stepuser-')
  const steppath = join(base, 'step')
  const home = join(base, 'home')
  mkdirSync(home, {recursive: true})
  const agent = await startAgent()
  const bin = fakeBrowserBin()
  const env: NodeJS.ProcessEnv = {
    PATH: `${bin.dir}:${process.env.PATH}`,
    STEPPATH: steppath,
    HOME: home,
    SSH_AUTH_SOCK: agent.socket,
    SSL_CERT_FILE: idpCaFile,
    NODE_EXTRA_CA_CERTS: idpCaFile,
    FAKE_BROWSER_LOGIN: login,
    LANG: 'C.UTF-8',
  }
  return {
    env,
    steppath,
    home,
    agent,
    step: (args, o = {}) =>
      run(STEP, args, {env, timeoutMs: o.timeoutMs ?? 90_000, ...(o.input !== undefined ? {input: o.input} : {})}),
  }
}

/** A machine running sshca: its own $SSHCA_HOME, HOME, agent and browser. */
export interface SshcaUser {
  env: NodeJS.ProcessEnv
  home: string
  sshcaHome: string
  agent: SshAgent
  sshca(args: string[], o?: {timeoutMs?: number; input?: string}): Promise<RunResult>
}

export async function sshcaUser(idpCaFile: string, login = 'alice'): Promise<SshcaUser> {
  const base = tempDir('sshca-interop-user-')
  const home = join(base, 'home')
  const sshcaHome = join(base, 'sshca-home')
  mkdirSync(home, {recursive: true})
  const agent = await startAgent()
  const bin = fakeBrowserBin()
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: home,
    SSHCA_HOME: sshcaHome,
    SSH_AUTH_SOCK: agent.socket,
    SSHCA_KEYRING: 'file',
    DBUS_SESSION_BUS_ADDRESS: '',
    NODE_EXTRA_CA_CERTS: idpCaFile,
    BROWSER: bin.browser,
    DISPLAY: ':0',
    CI: '',
    NO_COLOR: '1',
    FAKE_BROWSER_LOGIN: login,
  }
  delete env.CI
  return {
    env,
    home,
    sshcaHome,
    agent,
    sshca: (args, o = {}) =>
      run(process.execPath, [BIN, ...args], {
        env,
        timeoutMs: o.timeoutMs ?? 90_000,
        ...(o.input !== undefined ? {input: o.input} : {}),
      }),
  }
}

/** The policy sshca's CA runs in these tests: people from the IdP, as the world helper's. */
export function ourPolicy(issuer: string, user: string): Record<string, unknown> {
  return {
    // step's X.509 identity over mutual TLS (step ssh hosts): asked for only when ca.yaml says so
    tls: {clientCertificates: 'request'},
    provisioners: [
      {
        name: 'sso',
        type: 'oidc',
        issuer,
        clientId: CLIENT_ID,
        rules: [
          {
            name: 'engineers',
            match: {email_verified: true, email: {domain: 'example.com'}},
            certificate: {
              principals: ['${email.local}', user],
              keyId: '${email}',
              ttl: '8h',
              extensions: ['permit-pty'],
            },
          },
        ],
      },
    ],
    ssh: {hostPattern: '*.example.test'},
    limits: {rate: false},
  }
}

/** A fresh ID token from the TLS IdP (minted in a child process that trusts its root). */
export async function mintIdToken(tls: TlsIdp, login: string): Promise<string> {
  const r = await run(process.execPath, [join(ROOT, 'test', 'interop', 'id-token.ts'), tls.issuer, login, CLIENT_ID], {
    env: {...process.env, NODE_EXTRA_CA_CERTS: tls.caFile},
  })
  if (r.code !== 0) throw new Error(`id-token.ts: ${r.stderr}`)
  return r.stdout.trim()
}
