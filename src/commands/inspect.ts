import {Args} from '@oclif/core'
import {readFile} from 'node:fs/promises'
import {BaseCommand} from '../cli/base.ts'
import {EXIT} from '../cli/exit-codes.ts'
import {validityText} from '../cli/format.ts'
import {renderInspect} from '../cli/render.ts'
import {inspectCertificate, type InspectResult} from '../client/inspect.ts'
import {SshcaError} from '../errors.ts'

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
    file: Args.string({description: 'certificate file, or - for standard input', required: true}),
  }

  async run(): Promise<InspectResult> {
    const {args} = await this.parse(Inspect)
    const text = args.file === '-' ? await readStdin() : await readInput(args.file)
    const {result, cert} = inspectCertificate(text)
    this.out(renderInspect(args.file === '-' ? '(standard input)' : args.file, result, validityText(cert.validAfter, cert.validBefore)))
    if (!result.signature.valid) {
      this.note(`Error [ERR_CERT_SIGNATURE_INVALID]: the CA signature does not verify: ${result.signature.reason}\n`)
      process.exitCode = EXIT.INVALID
    }
    return result
  }
}

async function readInput(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new SshcaError('ERR_FILE_NOT_FOUND', `no such file: ${file}`)
    throw new SshcaError('ERR_INPUT', `cannot read ${file}: ${(err as Error).message}`, {cause: err})
  }
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new SshcaError('ERR_USAGE', 'reading a certificate from standard input, but it is a terminal', {hint: 'pipe a certificate in, or give a file name'})
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
