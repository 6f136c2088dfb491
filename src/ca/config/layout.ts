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
