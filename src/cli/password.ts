/** The CA password: from --password-file, or asked on the terminal without echo. Never from argv. */
import {passwordProblem, readPasswordFile} from '../ca/keys/keystore.ts'
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

const ATTEMPTS = 3

export async function obtainPassword(opts: {
  file?: string | undefined
  confirm?: boolean
  label?: string
  /** The flag that names the file (default --password-file). */
  flag?: string
}): Promise<string> {
  const label = opts.label ?? 'CA password'
  const flag = opts.flag ?? '--password-file'
  if (opts.file) return readPasswordFile(opts.file)
  if (!process.stdin.isTTY) {
    throw new SshcaError(
      'ERR_CA_PASSWORD',
      `no ${flag} given and no terminal to ask for the ${label.toLowerCase().replace(/^ca /, 'CA ')} on`,
      {
        hint: `write the password to a 0600 file and pass ${flag} FILE`,
      },
    )
  }
  // a short or mistyped password asks again; three misses end it
  let last = ''
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const first = await askHidden(`${label}: `)
    const problem = passwordProblem(first)
    if (problem) {
      last = problem
      process.stderr.write(`${problem}; try again\n`)
      continue
    }
    if (opts.confirm && (await askHidden('Repeat the password: ')) !== first) {
      last = 'the two passwords differ'
      process.stderr.write(`${last}; try again\n`)
      continue
    }
    return first
  }
  throw new SshcaError('ERR_CA_PASSWORD', `${last} (${ATTEMPTS} attempts)`, {
    hint: `or write the password to a 0600 file and pass --password-file FILE`,
  })
}
