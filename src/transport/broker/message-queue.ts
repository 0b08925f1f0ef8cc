/**
 * The broker messages a transport has received and its replica has not taken yet. The replica
 * takes what is there all at once — every message waiting, up to `maxChanges` changes — as one
 * delivery, so a replica that is behind (or a burst of messages) costs one apply transaction for
 * several messages instead of one each. Merging changes nothing the replica checks: the messages
 * keep their order, and `planDelivery` finds a gap, a repeat or a reordering between two of them
 * exactly as it would across two deliveries.
 *
 * Bounded: `room()` resolves once the queue holds fewer than `maxChanges` changes, so a pump that
 * waits on it leaves the rest with the broker (or its client's own small buffer).
 */
import type { Change } from '../../protocol/types.js'

/** Changes per merged delivery, at most (a single larger message is delivered whole). */
export const MERGE_MAX_CHANGES = 10_000

export interface Queued {
  changes: readonly Change[]
}

export class MessageQueue<T extends Queued> {
  private items: T[] = []
  private changes = 0
  private closed = false
  private wakeTaker: (() => void) | undefined
  private wakePump: (() => void) | undefined

  constructor(private readonly maxChanges = MERGE_MAX_CHANGES) {}

  get size(): number {
    return this.items.length
  }

  push(item: T): void {
    this.items.push(item)
    this.changes += item.changes.length
    this.wakeTaker?.()
  }

  /** No more messages will come: `take` returns what is left, then nothing. */
  close(): void {
    this.closed = true
    this.wakeTaker?.()
    this.wakePump?.()
  }

  /** Resolves when the queue has room again (or is closed). */
  async room(): Promise<void> {
    while (this.changes >= this.maxChanges && !this.closed) await new Promise<void>((resolve) => (this.wakePump = resolve))
    this.wakePump = undefined
  }

  /**
   * Waits for at least one message (or the end, or `signal`), then takes the waiting messages in
   * order while they hold at most `maxChanges` changes together — the first one always. An empty
   * array means the queue is closed and empty, or the signal was aborted.
   */
  async take(signal: AbortSignal): Promise<T[]> {
    if (this.items.length === 0 && !this.closed && !signal.aborted) {
      const onAbort = (): void => this.wakeTaker?.()
      signal.addEventListener('abort', onAbort, { once: true })
      try {
        while (this.items.length === 0 && !this.closed && !signal.aborted) await new Promise<void>((resolve) => (this.wakeTaker = resolve))
      } finally {
        this.wakeTaker = undefined
        signal.removeEventListener('abort', onAbort)
      }
    }
    if (signal.aborted) return []
    let n = 0
    let total = 0
    while (n < this.items.length) {
      const size = (this.items[n] as T).changes.length
      if (n > 0 && total + size > this.maxChanges) break
      total += size
      n++
    }
    const taken = this.items.splice(0, n)
    this.changes -= total
    if (this.changes < this.maxChanges) this.wakePump?.()
    return taken
  }
}

/** The changes of several messages, in their order, as one array (one message: its own). */
export function mergedChanges(items: readonly Queued[]): Change[] {
  if (items.length === 1) return (items[0] as Queued).changes as Change[]
  const out: Change[] = []
  for (const item of items) for (const c of item.changes) out.push(c)
  return out
}
