import { CommanderError } from 'commander'
import { EXIT, EXIT_CODE, isTidemarkError } from '../errors.js'
import { OutputClosedError } from './output.js'

/**
 * Ends a command with this exit code once it has said what it had to (e.g. `verify` found drift):
 * not an error to report, just the status a script or a cron job reads.
 */
export class CommandExit extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`)
    this.name = 'CommandExit'
  }
}

/**
 * Reports an error the way the CLI promises: one line `tidemark: <message>` on stderr — with the
 * cause when it says something the message does not — and the stack traces only with --verbose.
 * Returns the exit code: EXIT_CODE for a TidemarkError, EXIT.usage for commander's usage errors, EXIT.unexpected otherwise.
 */
export function reportError(error: unknown, options: { verbose: boolean; write: (text: string) => void }): number {
  // Commander has already printed its message (through configureOutput); help and version exit 0,
  // and every other exit of commander's (its own 1) is a usage error.
  if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage
  if (error instanceof CommandExit) return error.exitCode
  // The reader closed the pipe (`tidemark dump … | head`): that is how such a pipeline ends.
  if (error instanceof OutputClosedError) return 0

  const known = isTidemarkError(error)
  const message = oneLine(error instanceof Error ? error.message : String(error))
  let line = known ? message : `unexpected error: ${message}`
  const cause = error instanceof Error ? causeText(error.cause, message) : undefined
  if (cause) line += ` (cause: ${cause})`
  if (!known && !options.verbose) line += ' (run again with --verbose for the stack trace)'
  options.write(`tidemark: ${line}\n`)

  if (options.verbose) {
    let e: unknown = error
    for (let depth = 0; e instanceof Error && depth < 5; depth++, e = e.cause) {
      options.write(`${depth === 0 ? '' : 'caused by: '}${e.stack ?? e.message}\n`)
    }
  }
  if (known) return EXIT_CODE[error.code]
  return EXIT.unexpected
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim()
}

/** The cause's message, unless the error's own message already says it. */
function causeText(cause: unknown, message: string): string | undefined {
  if (cause === undefined || cause === null) return undefined
  const text = oneLine(cause instanceof Error ? cause.message : String(cause))
  if (text === '' || message.includes(text)) return undefined
  const code = (cause as { code?: unknown }).code
  return typeof code === 'string' && !text.includes(code) ? `${code}: ${text}` : text
}
