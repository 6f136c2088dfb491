/** Where a CA directory keeps its files. One place, so init, serve and the tests agree. */
import {join} from 'node:path'

export function caPaths(dir: string) {
  return {
    config: join(dir, 'ca.yaml'),
    certs: join(dir, 'certs'),
    secrets: join(dir, 'secrets'),
    ssh: join(dir, 'ssh'),
    db: join(dir, 'db'),
    rootCert: join(dir, 'certs', 'root_ca.crt'),
    intermediateCert: join(dir, 'certs', 'intermediate_ca.crt'),
    tlsCert: join(dir, 'certs', 'tls.crt'),
    rootKey: join(dir, 'secrets', 'root_ca.key'),
    // a root rotation (ca rotate --kind root): the next root and its intermediate, the old root
    // kept published, and the old root's certificate of the new one (the cross-certificate)
    rootNextCert: join(dir, 'certs', 'root_ca.next.crt'),
    rootNextKey: join(dir, 'secrets', 'root_ca.next.key'),
    rootPreviousCert: join(dir, 'certs', 'root_ca.previous.crt'),
    rootCrossCert: join(dir, 'certs', 'root_ca.cross.crt'),
    intermediateNextCert: join(dir, 'certs', 'intermediate_ca.next.crt'),
    // the TLS chain during the overlap: the new intermediate as issued by the old root, and the old
    // root as certified by the new one, so it verifies for clients pinning either root
    intermediateTwinCert: join(dir, 'certs', 'intermediate_ca.twin.crt'),
    rootReverseCert: join(dir, 'certs', 'root_ca.reverse.crt'),
    intermediateNextKey: join(dir, 'secrets', 'intermediate_ca.next.key'),
    intermediateKey: join(dir, 'secrets', 'intermediate_ca.key'),
    tlsKey: join(dir, 'secrets', 'tls.key'),
    userCaKey: join(dir, 'secrets', 'ssh_user_ca.key'),
    hostCaKey: join(dir, 'secrets', 'ssh_host_ca.key'),
    enrollmentKey: join(dir, 'secrets', 'enrollment.key'),
    userCaPub: join(dir, 'ssh', 'ssh_user_ca.pub'),
    hostCaPub: join(dir, 'ssh', 'ssh_host_ca.pub'),
    /** Written by `ca restore`; the first `ca serve` moves the store's restore mark to its start and removes it. */
    restorePending: join(dir, 'restore-pending.json'),
  }
}
