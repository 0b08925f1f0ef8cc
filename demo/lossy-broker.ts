import type { Seq } from '../src/protocol/types.js'
import type { FeedSource } from '../src/transport/feed-source.js'
import type { ChangeTransport, Delivery, SubscribeOptions } from '../src/transport/transport.js'

export interface DroppedDelivery {
  first: Seq
  last: Seq
  changes: number
  transactions: number
}

/**
 * A transport that behaves like a broker pushing to a subscriber: it keeps its own cursor and moves
 * on after each delivery whatever the replica did with it — and, when asked, loses one delivery on
 * the way. (The default long-poll transport asks from the replica's checkpoint each time, so it
 * cannot lose anything; a broker can.)
 */
export class LossyBroker implements ChangeTransport {
  readonly name = 'demo-broker'
  private dropping: ((d: DroppedDelivery) => void) | undefined

  constructor(
    private readonly source: FeedSource,
    private readonly options: { waitMs?: number; limit?: number } = {},
  ) {}

  /** Loses the next delivery that carries changes; resolves with what was lost. */
  dropNext(): Promise<DroppedDelivery> {
    return new Promise((resolve) => (this.dropping = resolve))
  }

  async *subscribe(feed: string, options: SubscribeOptions): AsyncGenerator<Delivery> {
    const { epoch, signal } = options
    let cursor = options.position()
    for (;;) {
      signal.throwIfAborted()
      const page = await this.source.changes(feed, { after: cursor, limit: this.options.limit ?? 200, waitMs: this.options.waitMs ?? 5000, epoch, signal })
      cursor = page.last
      const lose = this.dropping
      if (lose && page.changes.length > 0) {
        this.dropping = undefined
        const first = page.changes[0]?.seq as Seq
        lose({ first, last: page.last, changes: page.changes.length, transactions: new Set(page.changes.map((c) => c.tx)).size })
        continue
      }
      yield { epoch: page.epoch, changes: page.changes, head: page.head }
    }
  }
}
