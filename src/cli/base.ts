/**
 * The base of every oclif command: --json on all of them, and one place where a thrown SshcaError
 * becomes a message (stderr) or an error document (--json, stdout) and an exit code.
 */
import {Command, type Interfaces} from '@oclif/core'
import {retryNote, showRetryWaits} from '../client/ca-api/retry.ts'
import {isSshcaError} from '../errors.ts'
import {jsonText, terminalText} from '../util/text.ts'
import {errorJson, errorText, exitCodeFor, toSshcaError} from './errors.ts'
import {isOclifUsageError, usageError} from './usage.ts'

export abstract class BaseCommand extends Command {
  static override enableJsonFlag = true

  override async init(): Promise<void> {
    await super.init()
    // a CA that sheds load says when to come back: the wait is shown, as every wait is
    showRetryWaits((w, caUrl) => this.note(retryNote(w, caUrl)))
  }

  /**
   * Writes human output; suppressed under --json, where the returned value is the output. What any
   * command prints goes through terminalText or jsonText (src/util/text.ts): nothing it shows, from
   * a certificate, an agent or an identity provider, can drive the terminal.
   */
  protected out(text: string): void {
    if (!this.jsonEnabled()) process.stdout.write(terminalText(text))
  }

  /** Progress and prompts go to stderr so stdout stays parseable. */
  protected note(text: string): void {
    if (!this.jsonEnabled()) process.stderr.write(terminalText(text))
  }

  /** A warning a person must see even with --json (which keeps stdout for the document): stderr. */
  protected warning(text: string): void {
    process.stderr.write(terminalText(`Warning: ${text}\n`))
  }

  /** --json's document (oclif's own printer leaves DEL, C1 and bidirectional controls raw). */
  override logJson(json: unknown): void {
    process.stdout.write(jsonText(json))
  }

  protected override async catch(err: Interfaces.CommandError): Promise<unknown> {
    // oclif's own parse errors (unknown flag, missing argument, bad option) become ERR_USAGE with the
    // command's usage line: one short message, or under --json the same error document as any other
    // a custom flag's parse (src/cli/flags.ts) throws an SshcaError that oclif wraps in its own words: unwrap
    const flagValue = isSshcaError(err) && /^Parsing --\S+ \n\t/.test(err.message)
    const e = flagValue
      ? usageError(
          err,
          this.config.bin,
          this.ctor,
          err.message.replace(/^Parsing --\S+ \n\t/, '').replace(/\nSee more help with --help$/, ''),
        )
      : !isSshcaError(err) && isOclifUsageError(err)
        ? usageError(err, this.config.bin, this.ctor)
        : toSshcaError(err)
    if (this.jsonEnabled()) process.stdout.write(jsonText(errorJson(e)))
    else process.stderr.write(errorText(e))
    process.exitCode = exitCodeFor(e)
    return undefined
  }
}
