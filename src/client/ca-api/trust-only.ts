/**
 * A process that talks TLS to its CA and nothing else (a login with a token file) trusts the CA's
 * pinned root alone, for every connection it makes: not Node's ~140 roots, not the system's, not
 * NODE_EXTRA_CA_CERTS. CaClient pins the root on its own connections either way; this closes the rest
 * of the process to other authorities, and Node never parses the roots it would not use (~3 ms of a CI
 * job's login where NODE_EXTRA_CA_CERTS names the system's bundle). A module of its own, node:tls taken
 * when called: importing node:tls loads node:crypto, which `login --ensure` with a certificate at hand
 * never needs.
 */
import type * as Tls from 'node:tls'

/**
 * From now on, every TLS connection without a `ca` of its own trusts `rootPem` alone; nothing at all
 * when a block of the file does not load (a hand edit, a torn disk), where Node refuses the whole list:
 * never an error here, never the defaults. CaClient's connections judge the file themselves (a block
 * that does not parse is skipped; no root left is ERR_TRUST_TLS). Node before 22.19 has no such call:
 * nothing changes there.
 */
export function trustOnlyRoot(rootPem: string): void {
  const {setDefaultCACertificates} = process.getBuiltinModule('node:tls') as Partial<typeof Tls>
  try {
    setDefaultCACertificates?.([rootPem])
  } catch {
    setDefaultCACertificates?.([])
  }
}
