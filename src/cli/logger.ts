import { pino, type Logger as PinoLogger } from 'pino'

export type { PinoLogger }

export interface CliLoggerOptions {
  /** `debug` with --verbose, else `info`. */
  verbose?: boolean
  /** File descriptor to write to (default 2, stderr: stdout is for the command's output). */
  fd?: number
}

/**
 * The CLI's and the server's logger: pino JSON lines on stderr, written synchronously so that the
 * last lines before an exit are not lost. Parts of the program take a `child({ component })`.
 * (Pipe stderr through `pino-pretty` to read it as text; tidemark does not depend on it.)
 */
export function createCliLogger(options: CliLoggerOptions = {}): PinoLogger {
  return pino(
    { name: 'tidemark', level: options.verbose ? 'debug' : 'info', base: { pid: process.pid } },
    pino.destination({ dest: options.fd ?? 2, sync: true }),
  )
}
