/**
 * One error class for the whole product, with a stable `code` (a closed union, so `switch (err.code)`
 * narrows). src/ssh, src/client and src/ca throw these; only the edges (src/cli for processes, the
 * CA's HTTP layer for responses) decide what a person or a caller sees.
 */
export const ERROR_CODES = {
  // input and files
  ERR_USAGE: 'the command line is incomplete or contradictory',
  ERR_INPUT: 'an input value is malformed',
  ERR_FILE_NOT_FOUND: 'a file the command needs does not exist',
  ERR_FILE_EXISTS: 'a file the command would create already exists',
  ERR_FILE_PERMISSIONS: 'a secret file is readable by others',
  ERR_UNSAFE_PATH:
    'a file or directory sshca trusts (or a root service would run) can be changed by another user, or is a symlink',
  // OpenSSH formats
  ERR_SSH_FORMAT: 'bytes that should be an OpenSSH key, certificate or signature are malformed',
  ERR_SSH_UNSUPPORTED: 'an OpenSSH key or signature type this tool does not accept',
  ERR_SSH_KEY_ENCRYPTED: 'a passphrase-protected private key file',
  ERR_CERT_SIGNATURE_INVALID: 'a certificate whose CA signature does not verify',
  // ssh-agent
  ERR_AGENT_UNAVAILABLE: 'no ssh-agent is reachable on SSH_AUTH_SOCK',
  ERR_AGENT_FAILURE: 'the ssh-agent refused a request',
  ERR_AGENT_PROTOCOL: 'the ssh-agent answered something that is not the agent protocol',
  ERR_AGENT_TIMEOUT: 'the ssh-agent did not answer in time',
  // trust and the CA client
  ERR_NOT_BOOTSTRAPPED: 'no CA has been bootstrapped for this context',
  ERR_CONTEXT_NOT_FOUND: 'the named context does not exist',
  ERR_TRUST_FINGERPRINT_MISMATCH: 'the CA root does not have the expected fingerprint',
  ERR_TRUST_ROOT_CHANGED: 'the context already trusts a different root',
  ERR_TRUST_TOKEN_AUDIENCE:
    "the ID token is for an issuer and audience another context's CA is sent tokens for: not sent",
  ERR_TRUST_HOST_PATTERN:
    "the CA's host pattern matches hosts in any domain, or changed since it was accepted: config writes it only when given with --pattern",
  ERR_TRUST_TLS: 'the CA presented a TLS certificate that does not chain to the pinned root',
  ERR_CA_UNREACHABLE: 'the CA could not be reached',
  ERR_HOST_UNREACHABLE: 'the SSH host could not be reached (proxycommand)',
  ERR_CA_BAD_RESPONSE: 'the CA answered something unexpected',
  ERR_CA_BAD_REQUEST: 'the CA rejected the request as malformed',
  ERR_CA_UNAUTHORIZED: 'the CA rejected the identity token',
  ERR_CA_DENIED: 'the CA policy denied the request',
  ERR_CA_UNSUPPORTED: 'the CA does not offer what the command needs (SSH certificates, an SSHPOP provisioner)',
  // login
  ERR_LOGIN_TIMEOUT: 'the sign-in was not completed in time',
  ERR_LOGIN_CANCELLED: 'the sign-in was cancelled',
  ERR_LOGIN_NO_TERMINAL: 'a sign-in is needed but there is no terminal or browser to do it with',
  ERR_IDP_ERROR: 'the identity provider returned an error',
  ERR_IDP_UNREACHABLE: 'the identity provider could not be reached',
  ERR_PROVISIONER_NOT_FOUND: 'no such provisioner on this CA',
  ERR_PROVISIONER_AMBIGUOUS: 'the CA has several provisioners and none was chosen',
  ERR_GITHUB_ACTIONS_ENV: 'the GitHub Actions OIDC environment variables are missing',
  ERR_HOME_LAYOUT: '$SSHCA_HOME was written by a newer sshca, or its layout.json is damaged',
  ERR_BUSY: 'another sshca process held a lock on the same files for too long',
  ERR_KEYRING_UNAVAILABLE: 'the OS keyring was required (SSHCA_KEYRING=keyring) and cannot be used here',
  ERR_SSHD_CONFIG: 'sshd refuses its own configuration (sshd -t), so it was not reloaded',
  // the signing core
  ERR_CA_EXISTS: 'a CA already exists in the directory',
  ERR_CA_CONFIG: 'the CA configuration is invalid',
  ERR_CA_PASSWORD: 'the CA key password is missing or wrong',
  ERR_LISTEN: "the CA cannot listen on its address (in use, privileged, or not this machine's)",
  ERR_NODE_VERSION: 'this Node.js is older than sshca needs (22.16)',
  ERR_TOKEN_INVALID: 'the token is malformed, expired or not signed by a trusted key',
  ERR_TOKEN_REPLAYED: 'the token was already used',
  ERR_POLICY_DENIED: 'the policy denied the request',
  ERR_ISSUANCE_DISABLED: 'issuance is disabled',
  ERR_UPSTREAM_UNAVAILABLE: "a service the CA depends on (an issuer's keys) is unreachable",
  ERR_STORE_UNAVAILABLE:
    'the CA cannot write its store or audit log (disk full, I/O error, locked); no certificate was returned',
  ERR_CA_UNAVAILABLE: 'the CA is temporarily unable to issue (disabled, busy, rate-limited, or an upstream is down)',
  ERR_RATE_LIMITED: 'too many signing requests from one client address',
  ERR_CA_OVERLOADED: 'too many signing requests in flight: the CA sheds load',
  ERR_NOT_FOUND: 'the requested record does not exist',
  ERR_ROTATION_STATE: 'a CA key rotation step is not possible in the current state (or would strand certificates)',
  ERR_KEY_STORE: 'the key store (a PKCS#11 token, an HSM) could not create, find or use a CA key',
  ERR_NOT_IMPLEMENTED: 'the CA does not implement this request (X.509 certificates: it issues SSH certificates only)',
  ERR_INTERNAL: 'an unexpected internal failure',
} as const

export type ErrorCode = keyof typeof ERROR_CODES

export interface SshcaErrorOptions {
  cause?: unknown
  /** What the person should do next; printed under the message by the CLI. */
  hint?: string
  /** Structured, non-secret details for --json output and audit logs. */
  details?: Record<string, unknown>
}

export class SshcaError extends Error {
  readonly code: ErrorCode
  readonly hint?: string
  readonly details?: Record<string, unknown>

  constructor(code: ErrorCode, message: string, options: SshcaErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = 'SshcaError'
    this.code = code
    if (options.hint !== undefined) this.hint = options.hint
    if (options.details !== undefined) this.details = options.details
  }
}

export function isSshcaError(err: unknown, code?: ErrorCode): err is SshcaError {
  return err instanceof SshcaError && (code === undefined || err.code === code)
}
