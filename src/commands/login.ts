import {Args, Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {runLogin} from '../cli/login-run.ts'
import type {LoginResult} from '../client/login/login.ts'

export default class Login extends BaseCommand {
  static override summary = 'Sign in and get a short-lived SSH certificate into your ssh-agent.'
  static override description = `Signs in with the CA's identity provider (browser with a loopback redirect on 127.0.0.1, PKCE, state
and nonce; --console for the device-code flow on machines without a browser), generates an ephemeral key
in memory, has the CA sign it, and adds key + certificate to ssh-agent for exactly the certificate's
lifetime. The authorization URL is always printed. A saved refresh token (OS keyring, else a 0600 file)
signs you in again without a browser while your identity provider session lives. If the agent already
holds a certificate from this CA with more than 10 minutes left, nothing is done unless --force.

For machines: --identity-token-file F|- uses an ID token obtained elsewhere, --github-actions fetches
the job's OIDC token (needs "permissions: id-token: write"). The CA's policy decides principals,
lifetime and options; the request cannot widen them.

Before adding the new certificate, login removes this context's expired certificates from the agent,
and after it, the ones the new one supersedes (sshd counts every key offered against MaxAuthTries). It
reads the agent back: an agent that cannot hold certificates (gpg-agent), refuses lifetimes, or keeps
keys past their lifetime gets nothing; the key and certificate go to 0600 files in the context's folder
instead, named by the managed ssh_config (IdentityFile, CertificateFile), and login says so.

--ensure is what ssh runs from the managed ssh_config (Match exec) before it connects: it returns at
once, without a network request, when a certificate of the context valid for more than a minute is in
the agent (or its files), and signs in otherwise, one login at a time per context. --quiet prints
nothing on stdout; the sign-in's URL, code and prompts go to the terminal (/dev/tty when stderr is not one).`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> alice@example.com --provisioner sso',
    '<%= config.bin %> <%= command.id %> --console                      # device code, for a machine without a browser',
    '<%= config.bin %> <%= command.id %> --github-actions               # in a GitHub Actions job',
    'gcloud auth print-identity-token | <%= config.bin %> <%= command.id %> --identity-token-file -',
    '<%= config.bin %> <%= command.id %> --no-agent --out ./deploy_key   # writes deploy_key (0600) and deploy_key-cert.pub',
    '<%= config.bin %> <%= command.id %> --ensure --quiet --context prod   # what ssh runs before connecting (managed ssh_config)',
  ]

  static override args = {
    identity: Args.string({
      description: 'who to sign in as (a login hint; also which existing certificate counts)',
      ignoreStdin: true,
    }),
  }

  static override flags = {
    context: contextFlag,
    provisioner: Flags.string({
      description:
        'the CA provisioner to sign in with, remembered by the context (when several and none named: the one last used, else asked on a terminal)',
    }),
    console: Flags.boolean({description: 'use the device-code flow instead of a browser on this machine'}),
    force: Flags.boolean({description: 'get a new certificate even if a valid one is in the agent'}),
    kty: Flags.string({description: 'type of the ephemeral key', options: ['ed25519', 'ecdsa'], default: 'ed25519'}),
    'no-agent': Flags.boolean({
      description: 'do not use ssh-agent; write the key and certificate to --out',
      dependsOn: ['out'],
    }),
    out: Flags.string({
      description: 'with --no-agent: private key file (0600); the certificate goes to FILE-cert.pub',
      dependsOn: ['no-agent'],
    }),
    'identity-token-file': Flags.string({
      description:
        'read the ID token from this file, which only you may read (chmod 600; - for standard input), instead of signing in',
      exclusive: ['github-actions', 'console'],
    }),
    'github-actions': Flags.boolean({
      description: "use the GitHub Actions job's OIDC token",
      exclusive: ['identity-token-file', 'console'],
    }),
    audience: Flags.string({
      description: "with --github-actions: the audience to request (default: the CA's CI provisioner's)",
    }),
    timeout: Flags.integer({description: 'seconds to wait for the sign-in', default: 300, min: 1}),
    ensure: Flags.boolean({
      description: 'only sign in when no valid certificate of the context is at hand (no network request otherwise)',
    }),
    quiet: Flags.boolean({
      char: 'q',
      description: 'print nothing on stdout; the sign-in URL and prompts still reach the terminal',
    }),
  }

  async run(): Promise<LoginResult> {
    const {args, flags} = await this.parse(Login)
    const {result, text} = await runLogin({
      context: flags.context,
      identity: args.identity,
      provisioner: flags.provisioner,
      console: flags.console,
      force: flags.force,
      kty: flags.kty as 'ed25519' | 'ecdsa',
      out: flags.out,
      identityTokenFile: flags['identity-token-file'],
      githubActions: flags['github-actions'],
      audience: flags.audience,
      timeout: flags.timeout,
      ensure: flags.ensure,
      quiet: flags.quiet,
    })
    this.out(text)
    return result
  }
}
