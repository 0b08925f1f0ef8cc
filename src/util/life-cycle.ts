import { ConflictError } from '../errors.js'

/** The timers a long-running part uses (beside its `now`): injected, so tests can drive time. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
  setInterval(fn: () => void, ms: number): unknown
  clearInterval(handle: unknown): void
}

export const systemTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (handle) => clearInterval(handle as ReturnType<typeof setInterval>),
}

/**
 * One life cycle for every long-running part (the replica, the relay): `start` runs its loop
 * once at a time under a signal of its own, linked to the caller's; `stop` aborts it and waits
 * until the loop has ended; `abort` ends it from inside (a lost lease) with a reason.
 */
export class LifeCycle {
  private controller: AbortController | undefined
  private current: Promise<void> | undefined

  constructor(private readonly what: string) {}

  get running(): boolean {
    return this.current !== undefined
  }

  /** Runs `loop` until it returns (resolves) or throws (rejects); refuses a second start while one runs. */
  start(signal: AbortSignal | undefined, loop: (signal: AbortSignal) => Promise<void>): Promise<void> {
    if (this.current) throw new ConflictError(`${this.what} is already running`)
    const controller = new AbortController()
    this.controller = controller
    const onAbort = (): void => controller.abort(signal?.reason)
    if (signal?.aborted) controller.abort(signal.reason)
    else signal?.addEventListener('abort', onAbort, { once: true })
    this.current = loop(controller.signal).finally(() => {
      signal?.removeEventListener('abort', onAbort)
      this.current = undefined
    })
    return this.current
  }

  abort(reason: unknown): void {
    this.controller?.abort(reason)
  }

  /** Stops at the loop's next boundary; resolves once it has ended, however it ended. */
  async stop(): Promise<void> {
    this.controller?.abort(new Error('stopped'))
    await this.current?.catch(() => {})
  }
}
