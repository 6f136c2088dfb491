import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {
  ancestorArgvWarning,
  ARGV_WARNING,
  chooseTokenSource,
  readEnrollmentToken,
  TOKEN_ENV,
  tokenOnAncestorCommandLine,
} from '../cli/token-input.ts'
import {signHostKey} from '../client/host/host.ts'
import {sshcaHome} from '../client/home/home.ts'
import {SshcaError} from '../errors.ts'

export default class Certificate extends BaseCommand {
  static override summary = "Get a host certificate for this server's SSH host key, with an enrollment token."
  static override description = `Sends PUBKEYFILE to the CA with a one-time enrollment token from \`sshca ca token --host\`; the CA
signs a host certificate for HOSTNAME (and --principal names, all of which the token must bind) and
this writes it next to the key, as ssh-keygen names it (ssh_host_ed25519_key-cert.pub), atomically.
Then point sshd at it (sshca config --host) and renew it daily (sshca renew).

The token comes from exactly one of: --token-file FILE (readable by its owner only), --token-file -
(standard input), or $SSHCA_TOKEN. --token VALUE works too but warns: the command line is readable
by every local user while sshca runs, and whoever reads the token first can spend it with their key.
So is sudo's: \`sudo SSHCA_TOKEN=... sshca\` puts the token there (sshca warns when it finds it on a
command line above it); pipe it to --token-file - instead.`

  static override examples = [
    'sudo <%= config.bin %> <%= command.id %> --host --sign --token-file /root/enroll.token web1.example.com /etc/ssh/ssh_host_ed25519_key.pub',
    'ssh ca.example.com sudo sshca ca token --host web1 | sudo <%= config.bin %> <%= command.id %> --host --sign --token-file - web1 /etc/ssh/ssh_host_ed25519_key.pub',
    'printf %s "$TOKEN" | sudo <%= config.bin %> <%= command.id %> --host --sign --token-file - web1 /etc/ssh/ssh_host_ed25519_key.pub --principal web1.example.com',
  ]

  static override args = {
    hostname: Args.string({description: "the host's name (its first principal)", required: true, ignoreStdin: true}),
    pubkeyfile: Args.string({description: "the host's public key file", required: true, ignoreStdin: true}),
  }

  static override flags = {
    context: contextFlag,
    host: Flags.boolean({description: 'a host certificate (user certificates come from sshca login)', required: true}),
    sign: Flags.boolean({description: 'sign an existing key (the key never leaves the host)', required: true}),
    'token-file': Flags.string({
      description: 'read the enrollment token from this file (mode 0600; - for standard input)',
      exclusive: ['token'],
    }),
    token: Flags.string({
      description: 'the enrollment token itself (visible to other local users: prefer --token-file or $SSHCA_TOKEN)',
      exclusive: ['token-file'],
    }),
    principal: Flags.string({
      description: 'another name for the host (repeatable; the token must bind it)',
      multiple: true,
    }),
  }

  async run() {
    const {args, flags} = await this.parse(Certificate)
    if (!flags.host || !flags.sign)
      throw new SshcaError('ERR_USAGE', 'only --host --sign is supported; users get certificates with sshca login')
    const source = chooseTokenSource({token: flags.token, tokenFile: flags['token-file'], env: process.env[TOKEN_ENV]})
    if (source.kind === 'flag') this.warning(ARGV_WARNING)
    if (source.kind === 'env') {
      const shown = tokenOnAncestorCommandLine(source.value.trim())
      if (shown) this.warning(ancestorArgvWarning(shown))
    }
    const token = await readEnrollmentToken(source)
    const r = await signHostKey(sshcaHome(), {
      ...(flags.context ? {context: flags.context} : {}),
      token,
      hostname: args.hostname,
      pubkeyFile: args.pubkeyfile,
      ...(flags.principal ? {principals: flags.principal} : {}),
    })
    this.out(
      `Wrote ${r.certificate}: host certificate for ${r.principals.join(', ')} (serial ${r.serial}), valid until ${r.validBefore}.\nNext: sshca config --host (once), then renew daily: sshca renew ${r.certificate} ${args.pubkeyfile.replace(/\.pub$/, '')}\n`,
    )
    return r
  }
}
