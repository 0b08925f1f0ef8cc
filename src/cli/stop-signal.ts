import { EXIT } from '../errors.js'

/**
 * How long-running commands (`serve`, `replicate`) stop: the first SIGINT or SIGTERM asks them to
 * close cleanly; a second one exits at once (exit 130), for when closing itself hangs.
 */
export interface StopSignal {
  /** Resolves with the first SIGINT or SIGTERM received. */
  signalled: Promise<NodeJS.Signals>
  /** Stops listening for signals (a turn of the event loop later: a second signal while closing still forces the exit). */
  dispose(): void
}

export function stopSignal(note: (text: string) => void): StopSignal {
  let resolve: (signal: NodeJS.Signals) => void = () => {}
  const signalled = new Promise<NodeJS.Signals>((r) => (resolve = r))
  let count = 0
  const handler = (signal: NodeJS.Signals): void => {
    if (++count === 1) resolve(signal)
    else {
      note(`tidemark: ${signal} again: exiting without closing cleanly`)
      process.exit(EXIT.interrupted)
    }
  }
  process.on('SIGINT', handler)
  process.on('SIGTERM', handler)
  return {
    signalled,
    dispose() {
      setImmediate(() => {
        process.removeListener('SIGINT', handler)
        process.removeListener('SIGTERM', handler)
      }).unref()
    },
  }
}
