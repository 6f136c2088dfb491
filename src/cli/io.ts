/** Reading a command's input: a file, or standard input for "-". */
import {SshcaError} from '../errors.ts'
import {INPUT_LIMIT, inputTooLarge, readTextFile, type ReadTextOptions} from '../util/fs.ts'

export async function readStdin(o: ReadTextOptions = {}): Promise<string> {
  if (process.stdin.isTTY)
    throw new SshcaError('ERR_USAGE', 'reading from standard input, but it is a terminal', {
      hint: 'pipe the input in, or give a file name',
    })
  const limit = o.limit ?? INPUT_LIMIT
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length
    if (size > limit) {
      process.stdin.destroy()
      throw inputTooLarge('standard input', o)
    }
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** `file` as UTF-8 text ("-": standard input), at most a MiB unless `o` says otherwise (readTextFile). */
export async function readInput(file: string, o: ReadTextOptions = {}): Promise<string> {
  return file === '-' ? readStdin(o) : readTextFile(file, 'file', o)
}

/**
 * A secret (`what`: "ID token") from `file`, or standard input for "-": a file must be a regular file
 * only its owner can read or write (checkOwnerOnly, on the descriptor read); `flag` names the option
 * in the hint.
 */
export async function readSecretInput(file: string, what: string, flag: string): Promise<string> {
  return file === '-' ? readStdin() : readTextFile(file, what, {ownerOnly: secretFileHint(file, flag)})
}

export const secretFileHint = (file: string, flag: string): string => `chmod 600 ${file}, or pipe it in with ${flag} -`
