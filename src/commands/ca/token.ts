import {Flags} from '@oclif/core'
import {BaseCommand} from '../../cli/base.ts'
import {caConfigFlag, caPasswordFileFlag, durationFlag} from '../../cli/flags.ts'
import {obtainPassword} from '../../cli/password.ts'

export default class CaToken extends BaseCommand {
  static override summary = 'Mint a one-time enrollment token for a host certificate (on the CA box).'
  static override description = `Signs a short-lived JWT with the CA's enrollment key, bound to HOSTNAME (and each --principal). The
host runs \`sshca certificate --host --sign --token-file FILE HOSTNAME KEY.pub\` with it (a 0600 file, - for
standard input, or $SSHCA_TOKEN: never on the command line, where other local users read it); the CA issues a host
certificate for names the token binds, once. The token is the last line printed.

--key binds the token to the host's public key (a .pub file or its SHA256: fingerprint): the CA then
refuses it for any other key, so a token seen in transit or on another user's screen enrols nothing.
Without --key, whoever presents the token first gets the certificate. Every token is audited (its id
and hash, never the token).`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --host web1.example.com --key SHA256:6cP5Fqkq0Dyu7bvr2VF3wCrQ3U9MzF7WgCjHfa0VL1c --config /etc/sshca/ca.yaml --password-file /root/ca-pw',
    '<%= config.bin %> <%= command.id %> --host web1.example.com --key web1_ssh_host_ed25519_key.pub --config /etc/sshca/ca.yaml --password-file /root/ca-pw',
    'TOKEN=$(<%= config.bin %> <%= command.id %> --host web1 --principal web1.example.com --principal 10.0.0.7 --ttl 30m --config ca.yaml --password-file pw | tail -1)',
  ]

  static override flags = {
    host: Flags.string({description: 'the host name the certificate is for (its first principal)', required: true}),
    principal: Flags.string({description: 'another name the host may claim (repeatable)', multiple: true}),
    key: Flags.string({description: 'bind the token to this host public key: a .pub file or SHA256:… (recommended)'}),
    ttl: durationFlag({description: 'how long the token stays usable', default: 600, defaultHelp: async () => '10m'}),
    config: caConfigFlag(),
    'password-file': caPasswordFileFlag(),
  }

  async run() {
    const {flags} = await this.parse(CaToken)
    const ttl = flags.ttl
    const password = await obtainPassword({file: flags['password-file']})
    const {hostToken} = await import('../../ca/admin.ts')
    const t = await hostToken({
      configPath: flags.config,
      password,
      hostname: flags.host,
      ...(flags.principal ? {principals: flags.principal} : {}),
      ...(flags.key ? {key: flags.key} : {}),
      ttlSeconds: ttl,
    })
    const binding = t.boundKey
      ? `bound to host key ${t.boundKey}`
      : 'UNBOUND: any key may use it (bind it with --key KEY.pub)'
    this.note(
      t.boundKey
        ? ''
        : 'warning: this token is not bound to a host key; whoever presents it first gets a host certificate for these names\n',
    )
    const extra = t.principals
      .filter((p) => p !== t.hostname)
      .map((p) => ` --principal ${p}`)
      .join('')
    this.out(
      `Enrollment token for ${t.principals.join(', ')}, ${binding}, usable once until ${new Date(t.expiresAt * 1000).toISOString()}.\nOn the host: sudo sshca certificate --host --sign --token-file FILE ${t.hostname} /etc/ssh/ssh_host_ed25519_key.pub${extra}   (FILE holds the token; - reads it from stdin)\n${t.token}\n`,
    )
    return {
      hostname: t.hostname,
      principals: t.principals,
      expiresAt: new Date(t.expiresAt * 1000).toISOString(),
      jti: t.jti,
      boundKey: t.boundKey,
      token: t.token,
    }
  }
}
