import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag, caPasswordFileFlag} from '../../cli/flags.ts'
import {obtainPassword} from '../../cli/password.ts'
import {renderRotation} from '../../cli/render-ca.ts'

export default class CaRotate extends BaseCommand {
  static override summary = 'Rotate the SSH user and host CA keys in phases: prepare, activate, retire (on the CA box).'
  static override description = `No flag day: every machine picks up the published keys by itself (sshca login and config on
laptops, the hourly KRL timer and the daily renewal on servers), so @cert-authority lines and
TrustedUserCAKeys hold both keys during the overlap and only the new one afterwards.

prepare   makes the next key (in the key store ca.yaml's keys.kms names: sealed file or PKCS#11 token)
          and publishes it beside the active one on /ssh/roots. Wait for your fleet to refresh (an hour
          for the KRL timer, a login for people).
activate  signs with it from now on; the old key stays published, so what it signed keeps working.
          Host certificates of the old key are renewed onto the new one at the next daily renewal.
retire    drops the old key and destroys its private half (its sealed file, or its objects in the
          token; backups made before still hold it). Refused while a certificate it signed is
          unexpired and unrevoked, unless --force (audited). Run again, it destroys a retired
          key's private half it could not destroy before.
status    shows every key, its state and dates.

--kind root rotates the X.509 root clients pin (bootstrap's fingerprint), the same three steps: the
new root is published beside the old one with the old root's certificate of it (a cross-certificate);
activate serves a TLS chain that ends with that cross-certificate, so clients pinning the old root
still connect and learn the new one (vouched for by the old) at their next refresh; retire drops the
old root. Bootstrap works with either fingerprint until the old root is retired.
An offline root (ca init --offline-root) stays offline: prepare reads the current root key from
--root-key FILE and writes the new root's key to --next-root-key FILE, never into the CA directory.
The running CA follows each step within seconds (or at once on SIGHUP); each step is audited.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> status --config /etc/sshca/ca.yaml',
    '<%= config.bin %> <%= command.id %> prepare --config /etc/sshca/ca.yaml --password-file /root/ca-password',
    '<%= config.bin %> <%= command.id %> activate --kind user --config /etc/sshca/ca.yaml',
    '<%= config.bin %> <%= command.id %> retire --config /etc/sshca/ca.yaml',
    '<%= config.bin %> <%= command.id %> prepare --kind root --config /etc/sshca/ca.yaml --password-file /root/ca-password',
    '<%= config.bin %> <%= command.id %> prepare --kind root --root-key /media/usb/root_ca.key --next-root-key /media/usb/root_ca.2.key --config /etc/sshca/ca.yaml',
  ]

  static override args = {
    step: Args.string({
      description: 'the rotation step',
      required: true,
      options: ['prepare', 'activate', 'retire', 'status'],
    }),
  }

  static override flags = {
    kind: Flags.option({
      description: 'rotate only the user or only the host CA key (default: both), or the X.509 root clients pin',
      options: ['user', 'host', 'root'] as const,
    })(),
    force: Flags.boolean({
      description: 'retire: even though certificates the old key signed are still valid (they stop working)',
    }),
    config: caConfigFlag(),
    'root-key': Flags.string({
      description: 'prepare --kind root, offline root: the current root key file (from ca init --offline-root)',
    }),
    'next-root-key': Flags.string({
      description:
        "prepare --kind root: write the new root's key to this new file outside the CA directory (offline), not into it",
    }),
    'password-file': caPasswordFileFlag({
      description:
        'prepare (and activate --kind root): file whose first line is the CA password (else asked on the terminal)',
    }),
  }

  async run() {
    const {args, flags} = await this.parse(CaRotate)
    const step = args.step as 'prepare' | 'activate' | 'retire' | 'status'
    const password =
      step === 'prepare' || (step === 'activate' && flags.kind === 'root')
        ? await obtainPassword({file: flags['password-file']})
        : undefined
    const {rotate} = await import('../../ca/rotate.ts')
    const r = await rotate({
      configPath: flags.config,
      step,
      ...(password !== undefined ? {password} : {}),
      ...(flags.kind ? {kinds: [flags.kind]} : {}),
      force: flags.force,
      offlineRoot: {rootKeyFile: flags['root-key'], nextRootKeyFile: flags['next-root-key']},
    })
    this.out(renderRotation(r))
    return r
  }
}
