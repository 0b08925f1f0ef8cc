import { EXIT } from '../errors.js'
import type { Cli } from './cli.js'
import { stopSignal } from './stop-signal.js'

export interface Interrupt {
  /** Aborted by the first SIGINT or SIGTERM (a second one exits at once). */
  readonly signal: AbortSignal
  /**
   * Call with the command's failure once it has cleaned up: when a signal caused it, says what was
   * left (one line) and exits EXIT.interrupted (130), as a shell expects of an interrupted command; otherwise rethrows.
   */
  fail(error: unknown, left: string): never
  dispose(): void
}

/** For commands that run until done (export, import): Ctrl-C stops them and undoes their work. */
export function interruptible(cli: Cli): Interrupt {
  const stop = stopSignal(cli.note.bind(cli))
  const controller = new AbortController()
  let by: NodeJS.Signals | undefined
  void stop.signalled.then((signal) => {
    by = signal
    controller.abort(new Error(`stopped by ${signal}`))
  })
  return {
    signal: controller.signal,
    fail(error, left) {
      if (by === undefined) throw error
      cli.note(`tidemark: stopped by ${by}: ${left}`)
      process.exit(EXIT.interrupted)
    },
    dispose: () => stop.dispose(),
  }
}
