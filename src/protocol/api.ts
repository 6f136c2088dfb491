/**
 * The HTTP API's request and response shapes, shared by src/client and src/ca. Wire-compatible with
 * step-ca's where they overlap (field names, base64 wire blobs, 201 on /ssh/sign).
 */
import {z} from 'zod'

/** POST /ssh/sign (step-ca): the caller's wishes beyond publicKey/ott are accepted and ignored. */
export const SshSignRequest = z.looseObject({
  publicKey: z.string().min(1).max(8192),
  ott: z.string().min(1).max(8192),
  certType: z.enum(['user', 'host']).optional(),
  principals: z.array(z.string()).optional(),
  keyID: z.string().optional(),
  validAfter: z.unknown().optional(),
  validBefore: z.unknown().optional(),
})
export type SshSignRequest = z.infer<typeof SshSignRequest>

export const SshSignResponse = z.looseObject({crt: z.string().min(1)})
export type SshSignResponse = z.infer<typeof SshSignResponse>

/** POST /ssh/renew: a proof-of-possession token carrying the current certificate. */
export const SshRenewRequest = z.looseObject({ott: z.string().min(1).max(16384)})
export type SshRenewRequest = z.infer<typeof SshRenewRequest>

/** POST /sign (oidc-ssh-ca): `Authorization: Bearer <JWT>`, the key as an authorized_keys line. */
export const OidcSshCaSignRequest = z.looseObject({public_key: z.string().min(1).max(8192)})

export const ErrorBody = z.object({status: z.number(), message: z.string(), request_id: z.string()})
export type ErrorBody = z.infer<typeof ErrorBody>

export const Provisioner = z.looseObject({
  type: z.string(),
  name: z.string(),
  clientID: z.string().optional(),
  clientSecret: z.string().optional(),
  configurationEndpoint: z.string().optional(),
  listenAddress: z.string().optional(),
  scopes: z.array(z.string()).optional(),
  audience: z.string().optional(),
})
export type Provisioner = z.infer<typeof Provisioner>

export const ProvisionersResponse = z.looseObject({provisioners: z.array(Provisioner), nextCursor: z.string().optional()})
export type ProvisionersResponse = z.infer<typeof ProvisionersResponse>

export const RootResponse = z.looseObject({ca: z.string().min(1)})
export const RootsResponse = z.looseObject({crts: z.array(z.string())})

/** GET /ssh/roots: base64 wire keys, plus sshca's known_hosts pattern for host certificates. */
export const SshRootsResponse = z.looseObject({
  userKey: z.array(z.string()).default([]),
  hostKey: z.array(z.string()).default([]),
  hostPattern: z.string().optional(),
})
export type SshRootsResponse = z.infer<typeof SshRootsResponse>

export const HostsResponse = z.looseObject({
  hosts: z.array(z.object({principals: z.array(z.string()), serial: z.string(), keyId: z.string(), validBefore: z.string(), keyFingerprint: z.string()})),
})
export type HostsResponse = z.infer<typeof HostsResponse>

/** The audience of host enrollment and proof-of-possession tokens: the CA's own sign/renew URLs. */
export const ENROLLMENT_TOKEN_TYPE = 'sshca-host-enrollment'
export const POP_TOKEN_TYPE = 'sshca-sshpop'
