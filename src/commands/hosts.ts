import {Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {contextFlag} from '../cli/flags.ts'
import {table} from '../cli/format.ts'
import {loginSession} from '../cli/login-run.ts'
import {sshcaHome} from '../client/home/home.ts'
import {listHosts} from '../client/host/possession.ts'

export default class Hosts extends BaseCommand {
  static override summary = 'List the hosts that hold a current host certificate from the CA.'
  static override description = `step's ssh hosts: GET /ssh/hosts. Asked without credentials first (step-ca answers so); sshca's CA
shows its host inventory only to an identity its policy would give a certificate, so on its 401 your
saved sign-in (or a browser/device sign-in) is sent as a bearer token; --identity-token-file sends that
token at once. Reads sshca's answer (names, serial, key fingerprint, expiry) and step-ca's (hostname,
id, tags) alike.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    "<%= config.bin %> <%= command.id %> --json | jq -r '.hosts[].hostname'",
  ]
  static override flags = {
    context: contextFlag,
    provisioner: Flags.string({description: 'the CA provisioner to sign in with'}),
    console: Flags.boolean({description: 'sign in with a device code instead of a browser'}),
    'identity-token-file': Flags.string({
      description: 'an ID token (file, - for standard input) instead of signing in',
    }),
    timeout: Flags.integer({description: 'seconds to wait for a sign-in', default: 300, min: 1}),
  }

  async run() {
    const {flags} = await this.parse(Hosts)
    const session = await loginSession({
      identityTokenFile: flags['identity-token-file'],
      console: flags.console,
      timeout: flags.timeout,
    })
    try {
      const r = await listHosts(
        sshcaHome(),
        {
          ...(flags.context ? {context: flags.context} : {}),
          ...(flags.provisioner ? {provisioner: flags.provisioner} : {}),
          console: flags.console,
          ...(session.identityToken !== undefined ? {identityToken: session.identityToken} : {}),
        },
        session.deps,
      )
      session.done()
      this.out(
        r.hosts.length === 0
          ? `No host of "${r.context}" holds a current certificate.\n`
          : table([
              ['HOSTNAME', 'PRINCIPALS', 'VALID UNTIL', 'ID'],
              ...r.hosts.map((h) => [h.hostname, h.principals.join(','), h.validBefore ?? '-', h.id ?? '-']),
            ]),
      )
      return r
    } finally {
      session.done()
    }
  }
}
