import type { Seq } from '../protocol/types.js'

/** Callers waiting for a position to be reached: a replica's checkpoint (`caughtUp`), what a relay's broker confirmed. */
export class PositionWaiters {
  private waiters: Array<{ seq: Seq; resolve: () => void; reject: (e: unknown) => void }> = []

  /** Resolves once `settle` is called at or past `seq`; rejects with `signal`'s reason or `rejectAll`'s error. */
  wait(seq: Seq, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((w) => w !== waiter)
        reject(signal?.reason)
      }
      const waiter = {
        seq,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort)
          resolve()
        },
        reject: (error: unknown) => {
          signal?.removeEventListener('abort', onAbort)
          reject(error)
        },
      }
      this.waiters.push(waiter)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  settle(checkpoint: Seq): void {
    const ready = this.waiters.filter((w) => w.seq <= checkpoint)
    this.waiters = this.waiters.filter((w) => w.seq > checkpoint)
    for (const w of ready) w.resolve()
  }

  rejectAll(error: unknown): void {
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w.reject(error)
  }
}
