import {Flags} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {canOpenBrowser, loginNotifier, openBrowser} from '../cli/interact.ts'
import {renderList} from '../cli/render.ts'

export default class Demo extends BaseCommand {
  static override summary = 'Try the whole flow on this machine in a minute: IdP, CA, sign-in, ssh-agent, ssh.'
  static override description = `Runs everything on 127.0.0.1 in a temporary directory, with nothing else to install: a development
identity provider (oidc-provider, which signs anyone in), a new CA, a "demo" context bootstrapped by its
fingerprint, a sign-in in your browser (with --auto, or where no browser can open, the demo completes
the sign-in page itself), the certificate in your ssh-agent (or a private one it starts), \`sshca
list\`, and, if sshd is installed, a login to a throwaway sshd whose host certificate is verified
through the known_hosts line \`sshca config\` writes. Each step prints its time; everything is stopped
and removed at the end, the demo certificate included. Your ~/.sshca is not touched.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --auto',
    '<%= config.bin %> <%= command.id %> --auto --json',
  ]

  static override flags = {
    auto: Flags.boolean({description: 'complete the development sign-in without a browser'}),
  }

  async run() {
    const {flags} = await this.parse(Demo)
    const {runDemo} = await import('../demo/demo.ts')
    this.out('sshca demo: an identity provider, a CA, a sign-in and an SSH login, all on 127.0.0.1\n\n')
    const ui = loginNotifier()
    const abort = new AbortController()
    const onInt = (): void => abort.abort()
    process.once('SIGINT', onInt)
    try {
      const r = await runDemo({
        env: process.env,
        auto: flags.auto,
        canOpenBrowser: canOpenBrowser(),
        openBrowser: (url) => openBrowser(url),
        notify: (e) => ui.notify(e),
        renderList: (l) => renderList(l, false),
        signal: abort.signal,
        onStep: (s) => {
          ui.done()
          const time = s.ms < 1000 ? `${s.ms} ms` : `${(s.ms / 1000).toFixed(1)} s`
          this.out(`✓ ${s.title.padEnd(58)} ${time.padStart(7)}\n${s.lines.map((l) => `    ${l}\n`).join('')}`)
        },
      })
      this.out(
        `\nThat is the whole product: short-lived certificates instead of keys. For real use:\n  sshca ca init --dir /etc/sshca --dns ca.example.com   (on the CA box)\n  sshca bootstrap --ca-url https://ca.example.com:9000 --fingerprint …   (on each laptop)\n`,
      )
      return r
    } finally {
      ui.done()
      process.off('SIGINT', onInt)
    }
  }
}
