/**
 * Capped exponential backoff with full jitter: the n-th pause in a row is a uniform random time in
 * `[0, min(capMs, baseMs · 2^n))`. Full jitter spreads replicas that lost the same source at the
 * same moment, so they do not all come back at once. Randomness and sleeping are injectable, so a
 * retry loop can be tested without waiting.
 */

export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>

export interface BackoffOptions {
  /** The first pause is below this, in ms (default 100). */
  baseMs?: number
  /** No pause is longer than this, in ms (default 10 000). */
  capMs?: number
  /** A uniform random number in [0, 1) (default Math.random). */
  random?: () => number
  /** How to wait (default: a timer that an AbortSignal cuts short). */
  sleep?: Sleep
}

export class Backoff {
  readonly baseMs: number
  readonly capMs: number
  private readonly random: () => number
  private readonly sleeper: Sleep
  private failures = 0

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? 100
    this.capMs = options.capMs ?? 10_000
    if (!(this.baseMs > 0) || !(this.capMs >= this.baseMs)) {
      throw new RangeError(`backoff needs 0 < baseMs ≤ capMs, got baseMs ${this.baseMs} and capMs ${this.capMs}`)
    }
    this.random = options.random ?? Math.random
    this.sleeper = options.sleep ?? sleep
  }

  /** Pauses taken since the last reset(). */
  get attempts(): number {
    return this.failures
  }

  /** The upper bound of the next pause, in ms. */
  get ceilingMs(): number {
    // 2^n overflows to Infinity long before n is a concern; min() then gives the cap.
    return Math.min(this.capMs, this.baseMs * 2 ** this.failures)
  }

  /** The next pause, in whole ms; each call counts as one more failure in a row. */
  next(): number {
    const ceiling = this.ceilingMs
    this.failures++
    const r = this.random()
    const unit = r >= 0 && r < 1 ? r : 0
    return Math.floor(unit * ceiling)
  }

  /** Back to the first, shortest pause: call it after a success. */
  reset(): void {
    this.failures = 0
  }

  /** Waits `ms`; rejects with the signal's reason as soon as it aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return this.sleeper(ms, signal)
  }

  /** next() then sleep(): waits one backoff step and resolves with the pause taken. */
  async wait(signal?: AbortSignal): Promise<number> {
    const ms = this.next()
    await this.sleep(ms, signal)
    return ms
  }
}

/** Waits `ms` on a timer; rejects with the signal's reason when it aborts (at once if it already has). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason)
      return
    }
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, Math.max(0, ms))
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
