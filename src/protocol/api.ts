/**
 * The HTTP API's request and response shapes, shared by src/client and src/ca. Wire-compatible with
 * step-ca's where they overlap (field names, base64 wire blobs, 201 on /ssh/sign). Unknown fields are
 * kept and ignored, as step's clients send more than sshca reads.
 */
import {array, boolean, object, oneOf, optional, string, unknown, withDefault, type Infer} from './check.ts'

/** POST /ssh/sign (step-ca): the caller's wishes beyond publicKey/ott are accepted and ignored. */
export const SshSignRequest = object({
  publicKey: string({min: 1, max: 8192}),
  ott: string({min: 1, max: 8192}),
  certType: optional(oneOf('user', 'host')),
  principals: optional(array(string())),
  keyID: optional(string()),
  validAfter: optional(unknown()),
  validBefore: optional(unknown()),
})
export type SshSignRequest = Infer<typeof SshSignRequest>

export const SshSignResponse = object({crt: string({min: 1})})
export type SshSignResponse = Infer<typeof SshSignResponse>

/** POST /ssh/renew: a proof-of-possession token carrying the current certificate. */
export const SshRenewRequest = object({ott: string({min: 1, max: 16384})})
export type SshRenewRequest = Infer<typeof SshRenewRequest>

/** POST /sign (oidc-ssh-ca): `Authorization: Bearer <JWT>`, the key as an authorized_keys line. */
export const OidcSshCaSignRequest = object({public_key: string({min: 1, max: 8192})})

export interface ErrorBody {
  status: number
  message: string
  request_id: string
}
export const ErrorBody = object({status: unknown(), message: string(), request_id: string()})

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

export const HostsResponse = object({
  hosts: array(object({principals: array(string()), serial: string(), keyId: string(), validBefore: string(), keyFingerprint: string()})),
})
export type HostsResponse = Infer<typeof HostsResponse>
