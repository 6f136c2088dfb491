/**
 * What sshd itself reads: `sshd -T` (its effective configuration, for a connection no Match block
 * applies to), and whether sshca's settings are the ones in force. sshd keeps the first value it reads
 * for TrustedUserCAKeys and RevokedKeys, so a file of sshd_config.d that sorts before sshca's (or a line
 * of sshd_config before its Include) wins over sshca's without a word: its CA keys and its revocations
 * would then not apply.
 */
import {execFile} from 'node:child_process'
import {lstat} from 'node:fs/promises'
import {SshcaError} from '../../errors.ts'
import {SYSTEM_PATH} from '../../util/run.ts'

/** The sshd -T keywords the audit reads; everything else is left out of the result. */
const SETTINGS = [
  'authorizedkeysfile',
  'passwordauthentication',
  'kbdinteractiveauthentication',
  'challengeresponseauthentication',
  'usepam',
  'authorizedkeyscommand',
  'authorizedkeyscommanduser',
  'pubkeyauthentication',
  'hostbasedauthentication',
  'gssapiauthentication',
  'trustedusercakeys',
  'revokedkeys',
  'authorizedprincipalsfile',
  'authorizedprincipalscommand',
  'hostkey',
  'hostcertificate',
  'permitrootlogin',
  'permitemptypasswords',
]

async function firstExisting(paths: readonly string[]): Promise<string | undefined> {
  for (const p of paths) {
    try {
      await lstat(p)
      return p
    } catch {
      // next
    }
  }
  return undefined
}

/** `sshd -T -f CONFIG`: the effective configuration, keyword → values (repeatable keywords keep every line). */
export async function effectiveSshdConfig(binary: string, config: string): Promise<Record<string, string[]>> {
  const out = await new Promise<string>((resolve, reject) => {
    execFile(
      binary,
      ['-T', '-f', config],
      {timeout: 30_000, maxBuffer: 4 << 20, env: {PATH: SYSTEM_PATH, LANG: 'C'}},
      (err, stdout, stderr) => {
        if (err) {
          const why = (stderr || err.message).trim().split('\n').slice(-3).join('; ')
          reject(
            new SshcaError('ERR_INPUT', `sshd -T -f ${config} failed: ${why}`, {
              hint:
                (err as NodeJS.ErrnoException).code === 'ENOENT'
                  ? 'is OpenSSH server installed? give its path with --sshd'
                  : 'sshd -T reads the host keys: run as root, and check the configuration with sshd -t',
            }),
          )
        } else resolve(stdout)
      },
    )
  })
  return parseSshdT(out)
}

export function parseSshdT(text: string): Record<string, string[]> {
  const settings: Record<string, string[]> = {}
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    const m = /^(\S+)\s+(.*)$/.exec(line)
    if (!m) continue
    const key = m[1]!.toLowerCase()
    if (!SETTINGS.includes(key)) continue
    ;(settings[key] ??= []).push(m[2]!)
  }
  return settings
}

/** The sshd binary given, or the first of the usual places; undefined when there is none. */
export function sshdBinary(given?: string): Promise<string | undefined> {
  return given ? Promise.resolve(given) : firstExisting(['/usr/sbin/sshd', '/usr/local/sbin/sshd', '/sbin/sshd'])
}

/** sshca's two settings as its sshd_config.d snippet (`config --host`) writes them. */
export interface SshcaSettings {
  trustedUserCaKeys: string
  /** null: the CA publishes no KRL, so the snippet names none. */
  revokedKeys: string | null
}

/** The settings an sshca snippet names (its first TrustedUserCAKeys and RevokedKeys lines). */
export function sshcaSnippetSettings(text: string): SshcaSettings | undefined {
  const first = (keyword: string): string | null => {
    const m = new RegExp(`^\\s*${keyword}\\s+(\\S+)\\s*$`, 'im').exec(text)
    return m ? m[1]! : null
  }
  const trusted = first('TrustedUserCAKeys')
  return trusted === null ? undefined : {trustedUserCaKeys: trusted, revokedKeys: first('RevokedKeys')}
}

/** Why sshd does not read sshca's settings (another value was read first), one sentence each; [] when it does. */
export function sshcaSettingsProblems(effective: Record<string, string[]>, want: SshcaSettings): string[] {
  const problems: string[] = []
  const trusted = effective.trustedusercakeys?.[0] ?? 'none'
  if (trusted !== want.trustedUserCaKeys)
    problems.push(
      `sshd reads TrustedUserCAKeys ${trusted}, not sshca's ${want.trustedUserCaKeys}: certificates from this CA do not log in, and whatever CA that file holds does`,
    )
  const revoked = effective.revokedkeys?.[0] ?? 'none'
  if (want.revokedKeys !== null && revoked !== want.revokedKeys)
    problems.push(
      `sshd reads RevokedKeys ${revoked}, not sshca's ${want.revokedKeys}: the CA's revocations do not apply here`,
    )
  return problems
}
