/**
 * The HTTP API's request and response shapes, shared by src/client and src/ca. Wire-compatible with
 * step-ca's where they overlap (field names, base64 wire blobs, 201 on /ssh/sign). Unknown fields are
 * kept and ignored, as step's clients send more than sshca reads.
 */
import {array, boolean, integer, object, oneOf, optional, string, unknown, withDefault, type Infer} from './check.ts'

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
export const RootsResponse = object({crts: array(string())})

/** GET /ssh/roots: base64 wire keys, plus sshca's known_hosts pattern for host certificates. */
export const SshRootsResponse = object({
  userKey: withDefault(array(string()), []),
  hostKey: withDefault(array(string()), []),
  hostPattern: optional(string()),
})
export type SshRootsResponse = Infer<typeof SshRootsResponse>

/**
 * GET /ssh/hosts. sshca's CA answers its own fields (every name of a host key's current
 * certificate); step-ca answers `{hid, hostname, host_tags}`. Both are read; every field optional
 * on the way in, so one client lists either.
 */
export const HostsResponse = object({
  hosts: array(
    object({
      principals: optional(array(string())),
      serial: optional(string()),
      keyId: optional(string()),
      validBefore: optional(string()),
      keyFingerprint: optional(string()),
      // step-ca's config.Host
      hid: optional(string()),
      hostname: optional(string()),
      host_tags: optional(array(object({ID: optional(string()), Name: optional(string()), Value: optional(string())}))),
    }),
  ),
})
export type HostsResponse = Infer<typeof HostsResponse>

/** step-ca's POST /ssh/check-host (SSHCheckPrincipalRequest): is there a host certificate for this name. */
export const SshCheckHostRequest = object({type: oneOf('host'), principal: string({min: 1, max: 255}), token: optional(string({max: 16384}))})
export type SshCheckHostRequest = Infer<typeof SshCheckHostRequest>
export const SshCheckHostResponse = object({exists: boolean()})
export type SshCheckHostResponse = Infer<typeof SshCheckHostResponse>

/** step-ca's POST /ssh/rekey: a proof of possession of the current host certificate's key, and the new public key (base64 wire blob) → 201 {crt}. */
export const SshRekeyRequest = object({ott: string({min: 1, max: 16384}), publicKey: string({min: 1, max: 8192})})
export type SshRekeyRequest = Infer<typeof SshRekeyRequest>

/**
 * step-ca's POST /ssh/revoke (SSHRevokeRequest): the serial, a proof of possession of its key as
 * `ott`, an RFC 5280 reason code and text; `passive` (step only implements passive revocation).
 */
export const SshRevokeRequest = object({
  serial: string({min: 1, max: 20}),
  ott: string({min: 1, max: 16384}),
  reasonCode: optional(integer({min: 0, max: 10})),
  reason: optional(string({max: 1024})),
  passive: optional(boolean()),
})
export type SshRevokeRequest = Infer<typeof SshRevokeRequest>
export const SshRevokeResponse = object({status: string()})
export type SshRevokeResponse = Infer<typeof SshRevokeResponse>
