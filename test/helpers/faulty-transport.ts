import type { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import type { ChangeTransport, Delivery, SubscribeOptions } from '../../src/transport/transport.js'

export type Fate = 'deliver' | 'drop' | 'duplicate' | 'hold' | 'reverse'

/**
 * A transport that loses, repeats, reorders and scrambles deliveries, like a broker on a bad day.
 * It keeps its own cursor, as a broker does: what it drops is gone, a real gap for the replica to
 * find and heal from the log. `fate` decides what happens to each delivery.
 */
export function faultyTransport(inner: LongPollTransport, fate: (n: number) => Fate): ChangeTransport {
  return {
    name: 'faulty',
    async *subscribe(feed: string, options: SubscribeOptions): AsyncIterable<Delivery> {
      let held: Delivery | undefined
      let cursor = options.position()
      let n = 0
      for await (const d of inner.subscribe(feed, { ...options, position: () => cursor })) {
        const last = d.changes[d.changes.length - 1]
        if (last) cursor = last.seq
        const f = fate(++n)
        if (f === 'drop') continue
        if (f === 'hold' && !held) {
          held = d // delivered later, out of order
          continue
        }
        yield f === 'reverse' ? { ...d, changes: [...d.changes].reverse() } : d
        if (f === 'duplicate') yield d
        if (held) {
          yield held
          held = undefined
        }
      }
    },
  }
}
