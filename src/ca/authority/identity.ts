/**
 * step's X.509 identity: `POST /ssh/sign` with an `identityCSR` also returns a client certificate
 * bound to the SSH certificate it came with (its serial, validity and key ID; see keys/pki.ts), and
 * step then authenticates `GET /ssh/hosts` and `POST /ssh/check-host` with it over mutual TLS.
 * A presented identity counts only while the SSH certificate it is bound to would: recorded by this
 * CA, unexpired, unrevoked (by serial, key ID or key). So `ca revoke` and `/ssh/revoke` end both.
 */
import {X509Certificate} from 'node:crypto'
import type {Certificate} from '../../ssh/cert.ts'
import {CLIENT_AUTH_OID, createIdentityCert, parseCert, readIdentityCsr, type IdentityCsr} from '../keys/pki.ts'
import {denial} from '../policy/types.ts'
import type {IssuedRecord} from '../store/store.ts'
import type {CaRuntime} from './runtime.ts'

/** The CSR checked before anything is issued, so a bad one costs no certificate (400). */
export async function identityRequest(pem: string | undefined): Promise<IdentityCsr | undefined> {
  if (pem === undefined || pem === '') return undefined
  try {
    return await readIdentityCsr(pem)
  } catch (err) {
    throw denial('ERR_INPUT', 'bad_request', (err as Error).message)
  }
}

/** The identity certificate and its issuer (PEM), as step-ca's `identityCrt`. */
export async function issueIdentity(rt: CaRuntime, csr: IdentityCsr, cert: Certificate): Promise<string[]> {
  const id = await createIdentityCert(
    csr,
    {
      serial: cert.serial,
      keyId: cert.keyId,
      notBefore: new Date(Number(cert.validAfter) * 1000),
      notAfter: new Date(Number(cert.validBefore) * 1000),
    },
    {cert: parseCert(rt.material.intermediatePem), key: rt.material.intermediateKey},
  )
  return [id.pem, rt.material.intermediatePem]
}

let issuerCache: {pem: string; cert: X509Certificate} | undefined

/**
 * The SSH certificate record a presented client certificate stands for, or a 401 saying why not.
 * `certType` user: only people's identities may read the host inventory.
 */
export async function identityRecord(
  rt: CaRuntime,
  peer: X509Certificate,
  certType: 'user' | 'host',
  now: number,
): Promise<IssuedRecord> {
  const refuse = (why: string) =>
    denial(
      'ERR_TOKEN_INVALID',
      'identity_invalid',
      `the client certificate is not a current identity from this CA: ${why}`,
    )
  if (issuerCache?.pem !== rt.material.intermediatePem)
    issuerCache = {pem: rt.material.intermediatePem, cert: new X509Certificate(rt.material.intermediatePem)}
  const issuer = issuerCache.cert
  if (!peer.checkIssued(issuer) || !peer.verify(issuer.publicKey)) throw refuse('not issued by this CA')
  if (peer.ca || !(peer.keyUsage ?? []).includes(CLIENT_AUTH_OID)) throw refuse('not a client certificate')
  const from = Date.parse(peer.validFrom) / 1000
  const to = Date.parse(peer.validTo) / 1000
  if (!(now >= from - 60 && now < to)) throw refuse('expired or not yet valid')
  let serial: bigint
  try {
    serial = BigInt(`0x${peer.serialNumber}`)
  } catch {
    throw refuse('unreadable serial')
  }
  const rec = await rt.store.findCertificate(serial)
  if (!rec || rec.certType !== certType) throw refuse(`not bound to a ${certType} certificate this CA issued`)
  if (BigInt(now) >= rec.validBefore) throw refuse('its SSH certificate has expired')
  if (await rt.store.revocationFor({serial: rec.serial, keyId: rec.keyId, keyFingerprint: rec.keyFingerprint}))
    throw refuse('its SSH certificate is revoked')
  return rec
}
