import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Change } from '../../src/protocol/types.js'
import { planDelivery } from '../../src/replica/delivery-plan.js'
import { mergedChanges, MessageQueue } from '../../src/transport/broker/message-queue.js'

/** A message of whole one-change transactions first … last. */
const message = (first: number, last = first) => ({
  changes: Array.from({ length: last - first + 1 }, (_, i): Change => ({ seq: first + i, key: `k${first + i}`, op: 'upsert', data: 1, tx: first + i, ts: 0 })),
})
const seqs = (changes: readonly Change[]) => changes.map((c) => c.seq)

describe('MessageQueue (merged broker deliveries)', () => {
  it('takes every message waiting, in order, up to maxChanges — the first one always, however large', async () => {
    const q = new MessageQueue(5)
    const signal = new AbortController().signal
    q.push(message(1, 2))
    q.push(message(3, 4))
    q.push(message(5, 6))
    assert.deepEqual(seqs(mergedChanges(await q.take(signal))), [1, 2, 3, 4])
    q.push(message(7, 14))
    assert.deepEqual(seqs(mergedChanges(await q.take(signal))), [5, 6])
    assert.deepEqual(seqs(mergedChanges(await q.take(signal))), [7, 8, 9, 10, 11, 12, 13, 14])
  })

  it('waits for a message; returns nothing once closed and empty, or aborted', async () => {
    const q = new MessageQueue(5)
    const signal = new AbortController().signal
    const waiting = q.take(signal)
    setTimeout(() => q.push(message(1)), 5)
    assert.deepEqual(seqs(mergedChanges(await waiting)), [1])
    q.push(message(2))
    q.close()
    assert.deepEqual(seqs(mergedChanges(await q.take(signal))), [2], 'what was queued before the end is still taken')
    assert.deepEqual(await q.take(signal), [])
    const aborted = new AbortController()
    const open = new MessageQueue(5)
    const taking = open.take(aborted.signal)
    aborted.abort()
    assert.deepEqual(await taking, [])
  })

  it('holds the pump back while full, and lets it go once a delivery is taken', async () => {
    const q = new MessageQueue(4)
    q.push(message(1, 2))
    let roomy = false
    await q.room()
    q.push(message(3, 4))
    const room = q.room().then(() => (roomy = true))
    await new Promise((r) => setTimeout(r, 5))
    assert.equal(roomy, false)
    await q.take(new AbortController().signal)
    await room
    assert.equal(roomy, true)
  })

  it('leaves gaps, repeats and reorderings between merged messages to planDelivery, which finds them as across deliveries', () => {
    // 1–2 then 5–6: a message lost between them. 3–4 twice: a redelivery (duplicates, as in a
    // later delivery: nothing to pull). 4 before 3: reordered.
    const gap = planDelivery(0, mergedChanges([message(1, 2), message(5, 6)]))
    assert.deepEqual([seqs(gap.apply), gap.gap, gap.highest], [[1, 2], true, 6])
    const twice = planDelivery(2, mergedChanges([message(3, 4), message(3, 4), message(5)]))
    assert.deepEqual([seqs(twice.apply), twice.duplicates, twice.gap], [[3, 4, 5], 2, false])
    const reordered = planDelivery(2, mergedChanges([message(4), message(3), message(5)]))
    assert.deepEqual([seqs(reordered.apply), reordered.gap, reordered.highest], [[], true, 5])
  })
})
