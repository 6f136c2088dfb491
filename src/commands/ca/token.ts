import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {obtainPassword} from '../../cli/password.ts'
import {parseDuration} from '../../util/duration.ts'
import {SshcaError} from '../../errors.ts'

export default class CaToken extends BaseCommand {
  static override summary = 'Mint a one-time enrollment token for a host certificate (on the CA box).'
  static override description = `Signs a short-lived JWT with the CA's enrollment key, bound to HOSTNAME (and each --principal). The
host runs \`sshca certificate --host --sign --token-file FILE HOSTNAME KEY.pub\` with it (a 0600 file, - for
standard input, or $SSHCA_TOKEN: never on the command line, where other local users read it); the CA issues a host
certificate for names the token binds, once. The token is the last line printed.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --host web1.example.com --config /etc/sshca/ca.yaml --password-file /root/ca-pw',
    'TOKEN=$(<%= config.bin %> <%= command.id %> --host web1 --principal web1.example.com --principal 10.0.0.7 --ttl 30m --config ca.yaml --password-file pw | tail -1)',
  ]

  static override flags = {
    host: Flags.string({description: 'the host name the certificate is for (its first principal)', required: true}),
    principal: Flags.string({description: 'another name the host may claim (repeatable)', multiple: true}),
    ttl: Flags.string({description: 'how long the token stays usable', default: '10m'}),
    config: Flags.string({description: 'path of ca.yaml', default: '.sshca-ca/ca.yaml'}),
    'password-file': Flags.string({description: 'file whose first line is the CA password (else asked on the terminal)'}),
  }

  async run() {
    const {flags} = await this.parse(CaToken)
    const ttl = parseDuration(flags.ttl)
    if (ttl === undefined) throw new SshcaError('ERR_USAGE', `--ttl "${flags.ttl}" is not a duration (10m, 1h)`)
    const password = await obtainPassword({file: flags['password-file']})
    const {hostToken} = await import('../../ca/admin.ts')
    const t = await hostToken({configPath: flags.config, password, hostname: flags.host, ...(flags.principal ? {principals: flags.principal} : {}), ttlSeconds: ttl})
    this.out(`Enrollment token for ${t.principals.join(', ')}, usable once until ${new Date(t.expiresAt * 1000).toISOString()}.\nOn the host (the token in a 0600 file, or piped in with --token-file -): sshca certificate --host --sign --token-file FILE ${t.hostname} /etc/ssh/ssh_host_ed25519_key.pub\n${t.token}\n`)
    return {hostname: t.hostname, principals: t.principals, expiresAt: new Date(t.expiresAt * 1000).toISOString(), jti: t.jti, token: t.token}
  }
}
