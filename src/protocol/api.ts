/**
 * The HTTP API's request and response shapes, shared by src/client and src/ca. Wire-compatible with
 * step-ca's where they overlap (field names, base64 wire blobs, 201 on /ssh/sign). Unknown fields are
 * kept and ignored, as step's clients send more than sshca reads.
 */
import {array, boolean, object, oneOf, optional, string, unknown, withDefault, type Infer} from './check.ts'

/**
 * POST /ssh/sign (step-ca): the caller's wishes beyond publicKey/ott are accepted and ignored.
 * `identityCSR` (step's, a PEM CSR): for a user certificate, the CA also returns an X.509 identity
 * certificate for that CSR's key, valid as long as the SSH certificate (step's mTLS identity).
 */
export const SshSignRequest = object({
  publicKey: string({min: 1, max: 8192}),
  ott: string({min: 1, max: 8192}),
  certType: optional(oneOf('user', 'host')),
  principals: optional(array(string())),
  keyID: optional(string()),
  validAfter: optional(unknown()),
  validBefore: optional(unknown()),
  identityCSR: optional(string({max: 8192})),
})
export type SshSignRequest = Infer<typeof SshSignRequest>

/**
 * The longest a CA may hold a POST /ssh/sign on a rule's authorizing webhook (ca.yaml's
 * webhook.timeout, refused above it), sending nothing meanwhile: sshca's client waits longer than
 * this for the answer, or it would give up while an allow still issues the certificate and spends
 * the token.
 */
export const WEBHOOK_MAX_SECONDS = 30

/** `identityCrt`: the identity certificate then its issuer, PEM (only when the request had an identityCSR). */
export const SshSignResponse = object({crt: string({min: 1}), identityCrt: optional(array(string()))})
export type SshSignResponse = Infer<typeof SshSignResponse>

/**
 * POST /ssh/renew, /ssh/rekey, /ssh/revoke carry an SSHPOP token (step's): a JWT signed by the
 * certified key with the certificate in its `sshpop` header; see src/protocol/tokens.ts.
 */
export const SshRenewRequest = object({ott: string({min: 1, max: 16384})})
export type SshRenewRequest = Infer<typeof SshRenewRequest>

/**
 * How sshca's CA starts the 403 message of a renewal or rekey refused because the certificate is no
 * longer its lineage's newest and nothing made from it can be given back (the one refusal a caller
 * who proved the key reads in words: src/ca/http/errors.ts); the client says what to do next.
 */
export const SUPERSEDED_MESSAGE = 'this certificate renews and rekeys no more'

/** POST /ssh/rekey: the host's new public key (base64 wire blob); 201 {crt} for that key. */
export const SshRekeyRequest = object({ott: string({min: 1, max: 16384}), publicKey: string({min: 1, max: 8192})})
export type SshRekeyRequest = Infer<typeof SshRekeyRequest>

/**
 * POST /ssh/revoke (step's): the certificate in the token revokes itself: `serial` (decimal) must be
 * its serial. step-ca implements passive revocation only and wants `passive: true`.
 */
export const SshRevokeRequest = object({
  serial: string({min: 1, max: 20}),
  ott: string({min: 1, max: 16384}),
  reasonCode: optional(unknown()),
  reason: optional(string({max: 500})),
  passive: optional(boolean()),
})
export type SshRevokeRequest = Infer<typeof SshRevokeRequest>
export const SshRevokeResponse = object({status: string()})
export type SshRevokeResponse = Infer<typeof SshRevokeResponse>

/** GET /version (step-ca): step calls it before ssh certificate/login/check-host/proxycommand. */
export const VersionResponse = object({version: string(), requireClientAuthentication: optional(boolean())})
export type VersionResponse = Infer<typeof VersionResponse>

/** POST /ssh/config (step-ca): rendered ssh/sshd configuration; `data` is the client's (`--set`). */
export const SshConfigRequest = object({type: optional(oneOf('', 'user', 'host')), data: optional(unknown())})
export type SshConfigRequest = Infer<typeof SshConfigRequest>

/** One rendered template: `content` is base64 (a Go []byte); `type` snippet | file | directory | prepend-line. */
export const SshConfigTemplate = object({
  name: string(),
  type: string(),
  path: string(),
  comment: string(),
  content: string(),
})
export type SshConfigTemplate = Infer<typeof SshConfigTemplate>
export const SshConfigResponse = object({
  userTemplates: optional(array(SshConfigTemplate)),
  hostTemplates: optional(array(SshConfigTemplate)),
})
export type SshConfigResponse = Infer<typeof SshConfigResponse>

/** POST /ssh/check-host (step-ca): does this host name have a current host certificate? */
export const SshCheckHostRequest = object({
  type: oneOf('host'),
  principal: string({min: 1, max: 255}),
  token: optional(string({max: 16384})),
})
export type SshCheckHostRequest = Infer<typeof SshCheckHostRequest>
export const SshCheckHostResponse = object({exists: boolean()})
export type SshCheckHostResponse = Infer<typeof SshCheckHostResponse>

/** POST /ssh/bastion (step-ca): the bastion to reach a host through, if any. */
export const SshBastionRequest = object({user: optional(string({max: 255})), hostname: string({min: 1, max: 255})})
export type SshBastionRequest = Infer<typeof SshBastionRequest>
export const SshBastionResponse = object({hostname: string(), bastion: optional(unknown())})
export type SshBastionResponse = Infer<typeof SshBastionResponse>

/**
 * POST /sign is step-ca's X.509 route ({csr, ott}) and sshca's oidc-ssh-ca-style route
 * ({public_key} + Bearer). The body tells them apart: a `csr` without a `public_key` is step's.
 */
export const SignRequest = object({public_key: optional(string({min: 1, max: 8192})), csr: optional(unknown())})
export type SignRequest = Infer<typeof SignRequest>

/** POST /sign (oidc-ssh-ca): `Authorization: Bearer <JWT>`, the key as an authorized_keys line. */
export const OidcSshCaSignRequest = object({public_key: string({min: 1, max: 8192})})

/** sshca's errors carry a request id; step-ca's (`{status, message}`) do not. */
export interface ErrorBody {
  status: number
  message: string
  request_id?: string
}
export const ErrorBody = object({status: unknown(), message: string(), request_id: optional(string())})

export const Provisioner = object({
  type: string(),
  name: string(),
  clientID: optional(string()),
  clientSecret: optional(string()),
  configurationEndpoint: optional(string()),
  listenAddress: optional(string()),
  scopes: optional(array(string())),
  audience: optional(string()),
  /** sshca: false for provisioners that only name an audience (CI); absent from step-ca. */
  interactive: optional(boolean()),
})
export type Provisioner = Infer<typeof Provisioner>

/** Provisioner types as step names them: OIDC for people and CI, SSHPOP for renewal by proof of possession. */
export const SSHPOP_TYPE = 'SSHPOP'

/** GET /provisioners[?cursor=C&limit=N]: step-ca pages (20 a page); the last page has nextCursor "". */
export const ProvisionersResponse = object({provisioners: array(Provisioner), nextCursor: optional(string())})
export type ProvisionersResponse = Infer<typeof ProvisionersResponse>

export const RootResponse = object({ca: string({min: 1})})
/** GET /roots: every published root; during a root rotation (sshca), the old root's certificate of the new one. */
export const RootsResponse = object({crts: array(string()), crossSigned: optional(array(string()))})
export type RootsResponse = Infer<typeof RootsResponse>

/** One published SSH CA key and its place in a rotation (sshca; absent from step-ca). */
export const CaKeyInfo = object({
  key: string({min: 1}),
  id: string(),
  /** next: prepared, trusted, not signing yet; active: signs; previous: trusted until what it signed expires. */
  state: oneOf('next', 'active', 'previous'),
  createdAt: optional(string()),
  activatedAt: optional(string()),
  deactivatedAt: optional(string()),
})
export type CaKeyInfo = Infer<typeof CaKeyInfo>

/**
 * GET /ssh/roots: base64 wire keys (every published key: during a rotation the active and the next
 * or previous one, the active first), plus sshca's known_hosts pattern for host certificates and
 * each key's state and dates.
 */
export const SshRootsResponse = object({
  userKey: withDefault(array(string()), []),
  hostKey: withDefault(array(string()), []),
  hostPattern: optional(string()),
  keys: optional(object({user: array(CaKeyInfo), host: array(CaKeyInfo)})),
})
export type SshRootsResponse = Infer<typeof SshRootsResponse>

/**
 * GET /ssh/hosts: one entry per host key with a current certificate (its lineage's newest). step's
 * fields (`hostname`: the first principal, `hid`: the host key's fingerprint, `host_tags`) beside
 * sshca's (every principal, the serial, key ID, expiry, key fingerprint), which step-ca does not send.
 */
export const HostsResponse = object({
  hosts: array(
    object({
      hostname: string(),
      hid: optional(string()),
      host_tags: optional(unknown()),
      principals: optional(array(string())),
      serial: optional(string()),
      keyId: optional(string()),
      validBefore: optional(string()),
      keyFingerprint: optional(string()),
    }),
  ),
})
export type HostsResponse = Infer<typeof HostsResponse>
