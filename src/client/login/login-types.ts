/** The shapes of a login: its options, what it needs, what it returns (also the --json output). */
import type {AgentOptions} from '../../ssh/agent.ts'
import type {CaClient} from '../ca-api/ca-client.ts'
import type {RemovedCertificate} from '../local/agent-hygiene.ts'
import type {Context} from '../home/home.ts'
import type {ContextKrl} from '../ca-api/krl.ts'
import type {InteractiveDeps} from './oidc.ts'
import type {TokenStore} from '../home/token-store.ts'

export interface LoginOptions {
  context?: string
  /** Login hint, and the identity a certificate already in the agent must name. */
  identity?: string
  provisioner?: string
  console?: boolean
  force?: boolean
  kty?: 'ed25519' | 'ecdsa'
  /** Write the key here (0600) and the certificate to <out>-cert.pub instead of using the agent. */
  out?: string
  /** An ID token obtained elsewhere (--identity-token-file). */
  identityToken?: string
  githubActions?: boolean
  audience?: string
  /** Only when no valid certificate of the context is at hand (what ssh's Match exec runs). */
  ensure?: boolean
}

export interface LoginDeps {
  home: string
  env: NodeJS.ProcessEnv
  agent: AgentOptions
  clock: () => number
  tokenStore: () => Promise<TokenStore>
  interactive: InteractiveDeps
  /** Asks the person to pick a provisioner; absent when there is no terminal. */
  choose?: (names: string[]) => Promise<string>
  /** The client for this context's CA (default: one that trusts the context's pinned root alone). */
  caClient?: (ctx: Context) => CaClient
  /**
   * Called with the context's pinned root before anything connects, when the process is to trust that
   * root alone for every TLS connection (a login with a token file talks to its CA and nothing else).
   */
  trustOnly?: (rootPem: string) => void
}

export type LoginMethod = 'browser' | 'device' | 'refresh' | 'identity-token' | 'github-actions'

export interface LoginResult {
  context: string
  caUrl: string
  provisioner: string | null
  method: LoginMethod | 'existing'
  /** True when a valid certificate was already at hand and nothing was done. */
  skipped: boolean
  certificate: {
    keyId: string
    principals: string[]
    serial: string
    /** ISO 8601, or null for "always". */
    validAfter: string | null
    /** ISO 8601, or null for "forever". */
    validBefore: string | null
    /** null when it never expires. */
    secondsLeft: number | null
    fingerprint: string
  }
  agent: {
    added: boolean
    socket: string | null
    lifetimeSeconds: number | null
    /** This context's certificates taken out of the agent: expired ones, and the ones the new one supersedes. */
    removed: RemovedCertificate[]
    /** Why the certificate went to files instead of the agent (the agent cannot hold it, or there is none). */
    fallback: {reason: string; sshConfig: 'names-them' | 'not-installed'} | null
  }
  files: {key: string; certificate: string} | null
  refreshTokenStore: 'keyring' | 'file' | null
  /**
   * The context's KRL for ssh's RevokedHostKeys, refreshed alongside (its failure never fails a login);
   * null when nothing was fetched. `enabledIn`: the managed ssh_config whose block this login made
   * name the list (`sshca config` had written it naming none, or another file), else null.
   */
  krl: (ContextKrl & {enabledIn: string | null}) | null
  /**
   * The CA's published SSH keys, refreshed alongside (a rotation reaches this machine through login):
   * the known_hosts file whose @cert-authority block changed, if one did; a note when refreshing
   * failed; null when nothing was fetched (a certificate already at hand).
   */
  caKeys: {refreshed: boolean; knownHosts: string | null; note: string | null} | null
}
