import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag, caPasswordFileFlag} from '../../cli/flags.ts'
import {obtainPassword} from '../../cli/password.ts'
import {terminalText} from '../../util/text.ts'

export default class CaServe extends BaseCommand {
  static override summary = 'Run the CA: the HTTPS API that verifies tokens against the policy and signs certificates.'
  static override description = `Opens the keys with the password, checks ca.yaml (and refuses to start when it is invalid), and
serves the API on the configured address. The audit log (one JSON line per decision) goes where ca.yaml
says, standard output by default. SIGHUP re-reads ca.yaml: an invalid file is logged
(policy_reload_failed) and the old policy stays in force, in every worker. The server's own settings
(tls.clientCertificates, trustProxy, the HTTP timeouts, limits.maxConnections, whether and over which
window the rate is limited) and what it opens (address, db, audit.file, metrics.address, keys.kms)
take effect at the next start, dnsNames when the TLS certificate is next issued (SSHPOP tokens are
checked against them at once); a reload that changes one says so in policy_loaded's warnings.
SIGINT/SIGTERM stop it gracefully.

The API runs on worker threads of this one process (--workers, one per core by default), sharing the
address (SO_REUSEPORT), the store's one writer, one rate-limit allowance per client address and the
limits in ca.yaml; a worker that dies is replaced (worker_exited in the audit log), and so is one
whose event loop stands still for 10 s (worker_stalled). SSH CA keys in a
PKCS#11 token never leave its one process: the main thread has it sign for every worker. The single
executable serves on the main thread.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --config /etc/sshca/ca.yaml --password-file /root/ca-password',
    'systemctl reload sshca-ca   # under systemd (ExecReload=kill -HUP $MAINPID): re-read ca.yaml',
    'kill -HUP $(pidof sshca)    # elsewhere: the process is titled sshca',
  ]

  static override flags = {
    config: caConfigFlag(),
    'password-file': caPasswordFileFlag(),
    address: Flags.string({
      description: 'listen on this host:port instead of the one in ca.yaml (port 0 = any free port)',
    }),
    workers: Flags.integer({
      description:
        'worker threads serving the API, sharing the address and one store (default: one per core; 0: serve on the main thread)',
      min: 0,
      env: 'SSHCA_WORKERS',
    }),
  }

  async run() {
    const {flags} = await this.parse(CaServe)
    // `pidof sshca` and `kill -HUP $(pidof sshca)` find the server, not "node"
    process.title = 'sshca'
    // the audit log on stdout opens a pipe or a terminal again, non-blocking, for its bounded wait on a
    // reader that stops (src/ca/observe/audit.ts); a socket (a journal's stream) it cannot, so it writes
    // to descriptor 1, which Node's stream for a socket puts in non-blocking mode: made here, first
    void process.stdout
    const password = await obtainPassword({file: flags['password-file']})
    const {startCa} = await import('../../ca/server.ts')
    const onWarnings = (warnings: string[], reload: boolean): void => {
      for (const w of warnings) process.stderr.write(terminalText(`warning${reload ? ' (reload)' : ''}: ${w}\n`))
    }
    const ca = await startCa({
      configPath: flags.config,
      password,
      ...(flags.address ? {address: flags.address} : {}),
      ...(flags.workers === undefined ? {} : {workers: flags.workers}),
      handleSignals: true,
      onWarnings,
    })
    const started = {
      url: ca.url,
      pid: process.pid,
      rootFingerprint: ca.runtime.material.rootFingerprint,
      workers: ca.pool?.threads.length ?? 0,
      ...(ca.metricsUrl ? {metrics: ca.metricsUrl} : {}),
    }
    if (this.jsonEnabled()) this.logJson(started)
    else
      process.stderr.write(
        `sshca CA listening on ${ca.url} (pid ${process.pid}, ${started.workers} workers, root ${started.rootFingerprint})${ca.metricsUrl ? `; metrics on ${ca.metricsUrl}` : ''}\n`,
      )
    await new Promise<void>((resolve, reject) => {
      const stop = (): void => {
        process.off('SIGINT', stop)
        process.off('SIGTERM', stop)
        // a stop that cannot be audited (server_stopped on a full disk) is this command's error, and a non-zero exit
        ca.close().then(resolve, reject)
      }
      process.on('SIGINT', stop)
      process.on('SIGTERM', stop)
    })
  }
}
