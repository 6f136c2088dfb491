/**
 * A process that talks TLS to its CA and nothing else (a login with a token file) trusts the CA's
 * pinned root alone, for every connection it makes: not Node's ~140 roots, not the system's, not
 * NODE_EXTRA_CA_CERTS. CaClient pins the root on its own connections either way; this closes the rest
 * of the process to other authorities, and Node never parses the roots it would not use (~3 ms of a CI
 * job's login where NODE_EXTRA_CA_CERTS names the system's bundle). A module of its own, node:tls taken
 * when called: importing node:tls loads node:crypto, which `login --ensure` with a certificate at hand
 * never needs.
 */
import type * as Crypto from 'node:crypto'
import type * as Tls from 'node:tls'

/**
 * From now on, every TLS connection without a `ca` of its own trusts `rootPem` alone: each of its
 * certificates that parses, nothing when none does. A damaged block (a hand edit, a torn disk) is left
 * out rather than thrown at (setDefaultCACertificates refuses the whole list for one bad block, where
 * CaClient's own context skips it): the login then goes as it did before this pin, CaClient judging the
 * file. Node before 22.19 has no such call: nothing changes there.
 */
export function trustOnlyRoot(rootPem: string): void {
  const {setDefaultCACertificates} = process.getBuiltinModule('node:tls') as Partial<typeof Tls>
  if (!setDefaultCACertificates) return
  const {X509Certificate} = process.getBuiltinModule('node:crypto') as typeof Crypto
  const parses = (pem: string): boolean => {
    try {
      new X509Certificate(pem)
      return true
    } catch {
      return false
    }
  }
  const roots = (rootPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).filter(parses)
  try {
    setDefaultCACertificates(roots)
  } catch {
    // one that X509Certificate took and OpenSSL's PEM reader did not: trust nothing rather than the defaults
    setDefaultCACertificates([])
  }
}
