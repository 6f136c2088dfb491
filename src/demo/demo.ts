/**
 * `sshca demo`: a new user's first five minutes, with nothing else installed. Everything runs on
 * loopback in a temporary directory: a development IdP, a CA, a bootstrapped "demo" context, a
 * sign-in (in the browser, or completed by the demo itself), the certificate in ssh-agent, `sshca
 * list`, and, when sshd is installed, a login to a throwaway sshd that verifies the host by its
 * certificate. Everything is stopped and removed at the end.
 */
import {randomBytes} from 'node:crypto'
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir, userInfo} from 'node:os'
import {join} from 'node:path'
import {initCa} from '../ca/init.ts'
import {startCa, type RunningCa} from '../ca/server.ts'
import {bootstrap} from '../client/setup/bootstrap.ts'
import {configureKnownHosts} from '../client/setup/config.ts'
import {knownUserCas} from '../client/home/home.ts'
import {listCertificates, type ListResult} from '../client/local/list.ts'
import {login, type LoginResult} from '../client/login/login.ts'
import type {LoginEvent} from '../client/login/oidc.ts'
import {fileStore} from '../client/home/token-store.ts'
import {AgentClient} from '../ssh/agent.ts'
import {certificateLine, signCertificate} from '../ssh/cert.ts'
import {formatOpenSshPrivateKey, generatePrivateKey} from '../ssh/private-key.ts'
import {writeFileAtomic} from '../util/fs.ts'
import {driveDevSignIn} from './idp-driver.ts'
import {writePolicy} from './policy-file.ts'
import {startDevIdp, type DevIdp} from './idp.ts'
import {SSHD, ssh, startAgent, startSshd, type Agent, type Sshd} from './openssh.ts'

export const DEMO_LOGIN = 'demo@example.com'

export interface DemoStep {
  title: string
  ms: number
  lines: string[]
}

export interface DemoDeps {
  env: NodeJS.ProcessEnv
  /** Complete the sign-in without a person, even where a browser could open. */
  auto: boolean
  canOpenBrowser: boolean
  openBrowser(url: string): Promise<boolean>
  notify(e: LoginEvent): void
  onStep(step: DemoStep): void
  /** How `sshca list` shows the agent's certificates (src/cli renders; the demo only runs the flows). */
  renderList(l: ListResult): string
  signal?: AbortSignal
}

export interface DemoResult {
  steps: DemoStep[]
  login: LoginResult
  list: ListResult | null
  ssh: {host: string; port: number; output: string} | null
  agent: 'yours' | 'private' | 'none'
  totalMs: number
}

export async function runDemo(deps: DemoDeps): Promise<DemoResult> {
  const started = performance.now()
  const steps: DemoStep[] = []
  const cleanup: (() => Promise<void>)[] = []
  const step = async <T>(title: string, fn: () => Promise<{value: T; lines: string[]}>): Promise<T> => {
    const t0 = performance.now()
    const {value, lines} = await fn()
    const s = {title, ms: Math.round(performance.now() - t0), lines}
    steps.push(s)
    deps.onStep(s)
    return value
  }
  const dir = mkdtempSync(join(tmpdir(), 'sshca-demo-'))
  cleanup.push(async () => rmSync(dir, {recursive: true, force: true}))
  const osUser = userInfo().username
  try {
    const idp = await step('Started a development identity provider', async () => {
      const idp: DevIdp = await startDevIdp({clients: [{clientId: 'sshca-cli'}], quiet: true})
      cleanup.push(() => idp.stop())
      return {value: idp, lines: [`${idp.issuer}  (oidc-provider; it signs anyone in: for this demo only)`]}
    })

    const {ca, fingerprint} = await step('Created a CA and started it', async () => {
      const password = randomBytes(24).toString('base64url')
      const init = await initCa({dir: join(dir, 'ca'), name: 'sshca demo', dnsNames: ['127.0.0.1'], password})
      await writePolicy(init.config, {
        audit: {file: join(dir, 'ca', 'audit.log')},
        provisioners: [
          {
            name: 'demo-sso',
            type: 'oidc',
            issuer: idp.issuer,
            clientId: 'sshca-cli',
            rules: [
              {
                name: 'everyone-at-example.com',
                match: {email_verified: true, email: {domain: 'example.com'}},
                certificate: {
                  principals: ['${email.local}', osUser],
                  keyId: '${email}',
                  ttl: '1h',
                  extensions: ['permit-pty'],
                },
              },
            ],
          },
        ],
      })
      const ca: RunningCa = await startCa({configPath: init.config, password, address: '127.0.0.1:0'})
      cleanup.push(() => ca.close())
      return {
        value: {ca, fingerprint: init.rootFingerprint},
        lines: [
          `${ca.url}  root fingerprint ${init.rootFingerprint}`,
          `policy: a verified @example.com email gets principals <local part> and ${osUser} for 1 hour`,
        ],
      }
    })

    const home = join(dir, 'sshca-home')
    await step('Bootstrapped the context "demo"', async () => {
      await bootstrap(home, {caUrl: ca.url, fingerprint, context: 'demo'})
      return {
        value: undefined,
        lines: [
          `sshca bootstrap --ca-url ${ca.url} --fingerprint ${fingerprint.slice(0, 16)}…`,
          `(in ${home}, not your ~/.sshca)`,
        ],
      }
    })

    const {agentSocket, agentKind} = await step<{agentSocket: string | undefined; agentKind: DemoResult['agent']}>(
      'Found an ssh-agent',
      async () => {
        const yours = deps.env.SSH_AUTH_SOCK
        if (
          yours &&
          (await AgentClient.connect({socketPath: yours, timeoutMs: 2000}).then(
            (a) => (a.close(), true),
            () => false,
          ))
        ) {
          return {
            value: {agentSocket: yours, agentKind: 'yours'},
            lines: [`using yours at ${yours}; the demo certificate is removed from it at the end`],
          }
        }
        try {
          const agent: Agent = await startAgent()
          cleanup.push(() => agent.stop())
          return {
            value: {agentSocket: agent.socket, agentKind: 'private'},
            lines: [
              `none was running, so the demo started a private one (it stops with the demo):`,
              `SSH_AUTH_SOCK=${agent.socket}`,
              'for your own: eval "$(ssh-agent -s)"',
            ],
          }
        } catch {
          return {
            value: {agentSocket: undefined, agentKind: 'none'},
            lines: ['no ssh-agent available: the key and certificate go to files instead'],
          }
        }
      },
    )

    const result = await step(`Signed in as ${DEMO_LOGIN} and got a certificate`, async () => {
      let driving: Promise<unknown> | undefined
      const auto = deps.auto || !deps.canOpenBrowser
      const r = await login(
        {context: 'demo', ...(agentSocket ? {} : {out: join(dir, 'id_demo')})},
        {
          home,
          env: deps.env,
          agent: {socketPath: agentSocket},
          clock: Date.now,
          tokenStore: async () => fileStore(home),
          interactive: {
            openBrowser: async (url) => (auto ? false : deps.openBrowser(url)),
            notify: (e) => {
              if (auto && e.type === 'waiting') return // nobody to wait for: the demo signs in itself
              deps.notify(e)
              if (e.type === 'authorization_url' && auto)
                driving = driveDevSignIn(e.url, {login: DEMO_LOGIN}).catch(() => undefined)
            },
            timeoutMs: 5 * 60_000,
            ...(deps.signal ? {signal: deps.signal} : {}),
          },
        },
      )
      await driving
      if (agentKind === 'yours') {
        cleanup.push(async () => {
          await AgentClient.with({socketPath: agentSocket}, async (a) => {
            for (const id of await a.list()) if (id.comment === 'sshca:demo:demo-sso') await a.remove(id.blob)
          }).catch(() => undefined)
        })
      }
      return {
        value: r,
        lines: [
          `${auto ? 'the demo completed the sign-in page itself (--auto)' : 'signed in in your browser'}; principals ${r.certificate.principals.join(', ')}, valid until ${r.certificate.validBefore ?? 'forever'}`,
          r.files
            ? `written to ${r.files.key} and ${r.files.certificate}`
            : `in the agent for ${r.agent.lifetimeSeconds} s (the certificate's lifetime)`,
        ],
      }
    })

    const list = agentSocket
      ? await step('sshca list', async () => {
          const l = await listCertificates({agent: {socketPath: agentSocket}, knownCas: await knownUserCas(home)})
          const mine = {...l, certificates: l.certificates.filter((c) => c.context === 'demo')}
          return {value: mine, lines: deps.renderList(mine).trimEnd().split('\n')}
        })
      : null

    let sshResult: DemoResult['ssh'] = null
    if (agentSocket && existsSync(SSHD) && existsSync('/run/sshd')) {
      sshResult = await step('Logged into a throwaway sshd with the certificate', async () => {
        const hostKey = generatePrivateKey('ed25519')
        const now = BigInt(Math.floor(Date.now() / 1000))
        const hostCert = await signCertificate(
          {
            type: 'host',
            publicKey: hostKey.publicKey,
            serial: 1n,
            keyId: 'demo-host',
            principals: ['127.0.0.1'],
            validAfter: now - 60n,
            validBefore: now + 3600n,
          },
          ca.runtime.material.hostCa.active,
        )
        const sshd: Sshd = await startSshd({
          userCaKeys: [ca.runtime.material.userCa.active.publicKey.toLine('demo user CA')],
          hostKey: {privateText: formatOpenSshPrivateKey(hostKey), publicLine: hostKey.publicKey.toLine()},
          hostCertificate: certificateLine(hostCert),
        })
        cleanup.push(() => sshd.stop())
        const knownHosts = join(dir, 'known_hosts')
        await writeFileAtomic(knownHosts, '')
        await configureKnownHosts(home, {context: 'demo', pattern: '127.0.0.1', file: knownHosts})
        const r = await ssh({
          port: sshd.port,
          user: osUser,
          agentSocket,
          knownHostsFile: knownHosts,
          command: 'echo "hello from $(hostname) as $(id -un)"',
        })
        if (r.code !== 0) throw new Error(`ssh failed: ${r.stderr.trim()}`)
        return {
          value: {host: '127.0.0.1', port: sshd.port, output: r.stdout.trim()},
          lines: [
            `ssh -p ${sshd.port} ${osUser}@127.0.0.1   (StrictHostKeyChecking=yes; the host was verified by its certificate via "sshca config")`,
            `→ ${r.stdout.trim()}`,
          ],
        }
      })
    }
    return {steps, login: result, list, ssh: sshResult, agent: agentKind, totalMs: 0}
  } finally {
    const t0 = performance.now()
    for (const c of cleanup.reverse()) await c().catch(() => undefined)
    const s = {
      title: 'Stopped everything and removed the demo files',
      ms: Math.round(performance.now() - t0),
      lines: [],
    }
    steps.push(s)
    deps.onStep(s)
    steps.at(-1)!.lines.push(`total ${((performance.now() - started) / 1000).toFixed(1)} s`)
  }
}
