import {Args} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {EXIT} from '../cli/exit-codes.ts'
import {readInput} from '../cli/io.ts'
import {validityText} from '../cli/format.ts'
import {renderInspect} from '../cli/render.ts'
import {inspectCertificate, type InspectResult} from '../client/local/inspect.ts'

export default class Inspect extends BaseCommand {
  static override summary = 'Show an OpenSSH certificate as ssh-keygen -L does, and check its signature.'
  static override description = `Reads a certificate from FILE (a *-cert.pub line, the bare base64 blob, or a POST /ssh/sign JSON
response) or from standard input with "-". Prints what \`ssh-keygen -L\` prints, then whether the CA
signature verifies. An invalid signature is reported and the command exits with status 3.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> ~/.ssh/id_ed25519-cert.pub',
    '<%= config.bin %> list --raw | head -1 | <%= config.bin %> <%= command.id %> -',
    '<%= config.bin %> <%= command.id %> /etc/ssh/ssh_host_ed25519_key-cert.pub --json',
  ]

  static override args = {
    file: Args.string({description: 'certificate file, or - for standard input', required: true, ignoreStdin: true}),
  }

  async run(): Promise<InspectResult> {
    const {args} = await this.parse(Inspect)
    const text = await readInput(args.file)
    const {result, cert} = inspectCertificate(text)
    this.out(
      renderInspect(
        args.file === '-' ? '(standard input)' : args.file,
        result,
        validityText(cert.validAfter, cert.validBefore),
      ),
    )
    if (!result.signature.valid) {
      this.note(`Error [ERR_CERT_SIGNATURE_INVALID]: the CA signature does not verify: ${result.signature.reason}\n`)
      process.exitCode = EXIT.INVALID
    }
    return result
  }
}
