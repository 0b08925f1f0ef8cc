/**
 * The changes of a fan-out measurement, as the owner writes them and as a relay would publish
 * them: `changes` upserts in transactions of `txSize` over 10,000 keys, cut into broker messages
 * with the relay's defaults. The raw broker figures publish these messages, and the apply-only
 * figure applies them.
 */
import type { Change, Json } from '../../src/protocol/types.js'
import { MESSAGE_DEFAULTS } from '../../src/relay/relay.js'
import { encodeBatch, splitIntoBatches, type EncodedBatch } from '../../src/transport/broker/broker-message.js'

export const FAN_OUT_KEYS = 10_000

export const fanOutData = (i: number): Json => ({ name: `Customer ${i}`, email: `c${i}@example.com`, tier: i % 3 })

/** The owner's transactions: upserts of `c<n mod 10,000>`. */
export function* fanOutTransactions(changes: number, txSize: number): Generator<Array<{ op: 'upsert'; key: string; data: Json }>> {
  for (let written = 0; written < changes; written += txSize) {
    yield Array.from({ length: Math.min(txSize, changes - written) }, (_, i) => {
      const n = written + i
      return { op: 'upsert' as const, key: `c${n % FAN_OUT_KEYS}`, data: fanOutData(n) }
    })
  }
}

/** The messages a relay would publish for the same changes (seq 1 on, in `epoch`). */
export function fanOutMessages(feed: string, epoch: string, changes: number, txSize: number): EncodedBatch[] {
  const all: Change[] = []
  const ts = Date.now()
  for (let seq = 1; seq <= changes; seq++) {
    const tx = Math.min(changes, Math.ceil(seq / txSize) * txSize)
    all.push({ seq, key: `c${(seq - 1) % FAN_OUT_KEYS}`, op: 'upsert', data: fanOutData(seq - 1), tx, ts })
  }
  return splitIntoBatches(feed, epoch, all, MESSAGE_DEFAULTS.maxChanges, MESSAGE_DEFAULTS.maxBytes).map(encodeBatch)
}
