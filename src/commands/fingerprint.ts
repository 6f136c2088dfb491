import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {readStdin} from '../cli/io.ts'
import {
  FINGERPRINT_FORMATS,
  FINGERPRINT_LIMIT,
  fingerprintFile,
  type FingerprintFormat,
} from '../client/host/cert-tools.ts'

export default class Fingerprint extends BaseCommand {
  static override summary = 'Print the SHA-256 fingerprint of SSH public keys or certificates.'
  static override description = `step's ssh fingerprint, for every key or certificate line of FILE (- for standard input), as
ssh-keygen -l prints it: bits, SHA256:…, comment, type. A certificate's fingerprint is its public key's
(what sshd logs, and what sshca ca revoke --key takes); --certificate fingerprints the whole certificate.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> ~/.ssh/id_ed25519.pub',
    '<%= config.bin %> <%= command.id %> ./id_ecdsa-cert.pub --certificate',
    'ssh-add -L | <%= config.bin %> <%= command.id %> - --format hex --json',
  ]

  static override args = {
    file: Args.string({description: 'a public key or certificate file, - for standard input', default: '-'}),
  }
  static override flags = {
    format: Flags.string({
      description: 'how the digest is written',
      options: [...FINGERPRINT_FORMATS],
      default: 'base64-raw',
    }),
    certificate: Flags.boolean({description: 'fingerprint the whole certificate, not its public key'}),
  }

  async run() {
    const {args, flags} = await this.parse(Fingerprint)
    const r = await fingerprintFile(args.file, {
      format: flags.format as FingerprintFormat,
      certificate: flags.certificate,
      input: () => readStdin({limit: FINGERPRINT_LIMIT}),
    })
    this.out(r.keys.map((k) => `${k.line}\n`).join(''))
    return r
  }
}
