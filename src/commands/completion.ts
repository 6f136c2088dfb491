import {Args} from '@oclif/core'
import {BaseCommand} from '../cli/base.ts'
import {COMPLETION_FILES, generate, type CompletionShell} from '../cli/completions.ts'

/** Where each shell looks for a completion file of the user's own (no root needed). */
const INSTALL: Record<CompletionShell, string> = {
  bash: 'sshca completion bash > ~/.local/share/bash-completion/completions/sshca',
  zsh: 'sshca completion zsh > ~/.zsh/completions/_sshca   (with fpath=(~/.zsh/completions $fpath) before compinit in ~/.zshrc)',
  fish: 'sshca completion fish > ~/.config/fish/completions/sshca.fish',
}

export default class Completion extends BaseCommand {
  static override summary = 'Print the shell completion script for bash, zsh or fish.'
  static override description = `Prints the completion script for SHELL (commands, flags and fixed choices of this sshca) on
standard output. Save it where your shell loads completions from, and open a new shell:

  bash  ~/.local/share/bash-completion/completions/sshca    (bash-completion 2.9+ loads it on demand;
        for every user: /usr/share/bash-completion/completions/sshca)
  zsh   a folder on $fpath, as _sshca: mkdir -p ~/.zsh/completions, then in ~/.zshrc before compinit:
        fpath=(~/.zsh/completions $fpath)   (for every user: /usr/local/share/zsh/site-functions/_sshca)
  fish  ~/.config/fish/completions/sshca.fish    (for every user: /usr/share/fish/vendor_completions.d/)

Run it again after upgrading sshca. The npm package also carries the three files, in its completions/
folder.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> bash > ~/.local/share/bash-completion/completions/sshca',
    'mkdir -p ~/.zsh/completions && <%= config.bin %> <%= command.id %> zsh > ~/.zsh/completions/_sshca',
    '<%= config.bin %> <%= command.id %> fish > ~/.config/fish/completions/sshca.fish',
  ]

  static override args = {
    shell: Args.string({description: 'the shell', required: true, options: ['bash', 'zsh', 'fish']}),
  }

  async run(): Promise<{shell: CompletionShell; file: string; install: string; script: string}> {
    const {args} = await this.parse(Completion)
    const shell = args.shell as CompletionShell
    // the commands this process knows (the manifest it loaded), so the script matches this version
    const commands = Object.fromEntries(this.config.commands.map((c) => [c.id, c])) as unknown as Parameters<
      typeof generate
    >[0]['commands']
    const script = generate({commands})[COMPLETION_FILES[shell]]!
    this.out(script)
    return {shell, file: COMPLETION_FILES[shell], install: INSTALL[shell], script}
  }
}
