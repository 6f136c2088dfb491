/**
 * oclif's help, with one change: `sshca NAME --help` for a NAME that is no command is the usage error
 * the command_not_found hook gives without --help (src/cli/not-found.ts). oclif's own "Command NAME
 * not found." would print the name as it was typed, escape sequences and all.
 */
import {Errors, Help} from '@oclif/core'
import {reportUnknownCommand} from './not-found.ts'

export default class SshcaHelp extends Help {
  override async showHelp(argv: string[]): Promise<void> {
    try {
      await super.showHelp(argv)
    } catch (err) {
      // the one error oclif's showHelp raises itself (@oclif/core help/index.js)
      const unknown = err instanceof Errors.CLIError ? /^Command ([\s\S]*) not found\.$/.exec(err.message) : null
      if (!unknown) throw err
      reportUnknownCommand(unknown[1]!, this.config, argv)
    }
  }
}
