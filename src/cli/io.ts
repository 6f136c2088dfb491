/** Reading a command's input: a file, or standard input for "-". */
import {readFileSync} from 'node:fs'
import {SshcaError} from '../errors.ts'

export async function readStdin(): Promise<string> {
  if (process.stdin.isTTY)
    throw new SshcaError('ERR_USAGE', 'reading from standard input, but it is a terminal', {
      hint: 'pipe the input in, or give a file name',
    })
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

export async function readInput(file: string): Promise<string> {
  if (file === '-') return readStdin()
  try {
    // synchronously: one small file, and no start of libuv's thread pool for it
    return readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      throw new SshcaError('ERR_FILE_NOT_FOUND', `no such file: ${file}`)
    throw new SshcaError('ERR_INPUT', `cannot read ${file}: ${(err as Error).message}`, {cause: err})
  }
}
