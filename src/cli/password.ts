/** The CA password: from --password-file, or asked on the terminal without echo. Never from argv. */
import {readPasswordFile} from '../ca/keystore.ts'
import {SshcaError} from '../errors.ts'

async function askHidden(prompt: string): Promise<string> {
  const stdin = process.stdin
  process.stderr.write(prompt)
  stdin.setRawMode(true)
  stdin.resume()
  let value = ''
  try {
    return await new Promise<string>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        for (const ch of chunk.toString('utf8')) {
          if (ch === '\r' || ch === '\n') {
            stdin.off('data', onData)
            resolve(value)
            return
          }
          if (ch === '\u0003') {
            stdin.off('data', onData)
            reject(new SshcaError('ERR_LOGIN_CANCELLED', 'cancelled'))
            return
          }
          if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1)
          else value += ch
        }
      }
      stdin.on('data', onData)
    })
  } finally {
    stdin.setRawMode(false)
    stdin.pause()
    process.stderr.write('\n')
  }
}

export async function obtainPassword(opts: {file?: string | undefined; confirm?: boolean}): Promise<string> {
  if (opts.file) return readPasswordFile(opts.file)
  if (!process.stdin.isTTY) {
    throw new SshcaError('ERR_CA_PASSWORD', 'no --password-file given and no terminal to ask for the CA password on', {
      hint: 'write the password to a 0600 file and pass --password-file FILE',
    })
  }
  const first = await askHidden('CA password: ')
  if (first.length < 12) throw new SshcaError('ERR_CA_PASSWORD', 'the CA password must have at least 12 characters')
  if (opts.confirm && (await askHidden('Repeat the password: ')) !== first) throw new SshcaError('ERR_CA_PASSWORD', 'the passwords differ')
  return first
}
