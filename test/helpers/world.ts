/**
 * Everything a client test needs, real and on loopback: the dev IdP (oidc-provider), a GitHub-shaped
 * issuer, a CA serving HTTPS, a private ssh-agent and a private $SSHCA_HOME / $HOME.
 */
import {spawn, type ChildProcess} from 'node:child_process'
import {join} from 'node:path'
import {startDevIdp, type DevIdp} from '../../src/demo/idp.ts'
import type {StartOptions} from '../../src/ca/server.ts'
import {startTestCa, type TestCa} from './ca.ts'
import {BIN, sshca} from './cli.ts'
import {startGithubIssuer, type GithubIssuer} from './github-issuer.ts'
import {currentUser, startAgent, type Agent} from './openssh.ts'
import {waitFor} from './proc.ts'
import {tempDir} from './tmp.ts'

export interface World {
  idp: DevIdp
  gh: GithubIssuer
  t: TestCa
  agent: Agent
  home: string
  env: NodeJS.ProcessEnv
  /**
   * Moves the CA's clock (token checks, validity of what it issues) `ms` away from the real one, so a
   * test sees time pass without sleeping. 0 puts it back. CLI processes keep the real clock.
   */
  skewCaClock(ms: number): void
  bootstrap(context?: string): Promise<void>
  stop(): Promise<void>
}

export function worldPolicy(idpIssuer: string, ghIssuer: string): Record<string, unknown> {
  const user = currentUser()
  return {
    provisioners: [
      {
        name: 'sso',
        type: 'oidc',
        issuer: idpIssuer,
        clientId: 'sshca-cli',
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
      {
        name: 'ci',
        type: 'oidc',
        issuer: ghIssuer,
        audience: 'sshca-ci',
        maxTtl: '15m',
        rules: [
          {
            name: 'deploy',
            match: {repository: 'acme/app', ref: 'refs/heads/main'},
            certificate: {
              principals: [user],
              ttl: '10m',
              keyId: 'gha:${repository}:${run_id}',
              forceCommand: 'echo deployed-by-ci',
              sourceAddress: ['127.0.0.1/32'],
            },
          },
        ],
      },
    ],
  }
}

/** `more`: IdP clients and CA provisioners (given the IdP's issuer) besides the world's own (sso, ci). */
export async function startWorld(
  caOpts: Partial<StartOptions> = {},
  more: {
    clients?: string[]
    provisioners?: (idpIssuer: string) => Record<string, unknown>[]
    /** More of ca.yaml's top-level settings (limits, ssh …). */
    settings?: Record<string, unknown>
  } = {},
): Promise<World> {
  const idp = await startDevIdp({
    clients: ['sshca-cli', ...(more.clients ?? [])].map((clientId) => ({clientId})),
    accounts: {'mallory@evil.io': {email: 'mallory@evil.io'}},
    quiet: true,
  })
  const gh = await startGithubIssuer()
  let skew = 0
  const policy = {...worldPolicy(idp.issuer, gh.issuer), ...more.settings}
  policy.provisioners = [...(policy.provisioners as unknown[]), ...(more.provisioners?.(idp.issuer) ?? [])]
  const t = await startTestCa(policy, {clock: () => Date.now() + skew, ...caOpts})
  const agent = await startAgent()
  const base = tempDir('sshca-world-')
  const home = join(base, 'sshca-home')
  const env: NodeJS.ProcessEnv = {
    SSHCA_HOME: home,
    HOME: join(base, 'home'),
    SSH_AUTH_SOCK: agent.socket,
    BROWSER: 'none',
    SSHCA_KEYRING: 'file',
    DBUS_SESSION_BUS_ADDRESS: '',
  }
  return {
    idp,
    gh,
    t,
    agent,
    home,
    env,
    skewCaClock(ms) {
      skew = ms
    },
    async bootstrap(context = 'test') {
      const r = await sshca(
        ['bootstrap', '--ca-url', t.url, '--fingerprint', t.init.rootFingerprint, '--context', context],
        {env},
      )
      if (r.code !== 0) throw new Error(`bootstrap failed: ${r.stderr}`)
    },
    async stop() {
      await agent.stop()
      await t.stop()
      await idp.stop()
      await gh.stop()
    },
  }
}

/** A CLI process we talk to while it runs: read its output as it comes, wait for it to end. */
export interface Running {
  child: ChildProcess
  stdout(): string
  stderr(): string
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>
  exit(): Promise<{code: number | null; stdout: string; stderr: string}>
}

export function spawnSshca(args: string[], env: NodeJS.ProcessEnv, input?: string): Running {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: {...process.env, NO_COLOR: '1', ...env},
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (err += d))
  if (input !== undefined) {
    child.stdin!.on('error', () => undefined)
    child.stdin!.end(input)
  }
  const exited = new Promise<{code: number | null; stdout: string; stderr: string}>((resolve) =>
    child.on('close', (code) => resolve({code, stdout: out, stderr: err})),
  )
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    async waitFor(re, timeoutMs = 30_000) {
      let m: RegExpExecArray | null = null
      await waitFor(
        `${re} in the output of sshca ${args.join(' ')}`,
        () => (m = re.exec(out + err)) !== null || child.exitCode !== null,
        timeoutMs,
      )
      if (!m) throw new Error(`sshca ${args.join(' ')} exited ${child.exitCode} before printing ${re}:\n${out}\n${err}`)
      return m
    },
    exit: () => exited,
  }
}
