/**
 * HttpFeedSource and LongPollTransport against the real feed server on 127.0.0.1: what the shared
 * contract test does not cover — bearer tokens, long listings streamed across many chunks, the
 * transport's loop over HTTP, and a server going away under a long-poll.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { TidemarkError } from '../../src/errors.js'
import type { StoredChange } from '../../src/protocol/encoded.js'
import type { WriteOp } from '../../src/protocol/types.js'
import { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import type { Delivery } from '../../src/transport/transport.js'
import { realServer } from './helpers.js'

describe('HttpFeedSource with the feed server', () => {
  it('sends its bearer token; without one the server refuses with unauthorized', async () => {
    const fx = await realServer({
      authorize: ({ token }) => {
        if (token !== 'reader-token') throw new TidemarkError('unauthorized', 'the bearer token is not one this feed server accepts')
      },
    })
    await fx.store.ensureFeed('customers')
    const good = fx.connect({ token: 'reader-token' })
    assert.equal((await good.info('customers')).name, 'customers')
    assert.ok(!good.description.includes('reader-token'))
    await assert.rejects(fx.connect().info('customers'), (e) => e instanceof TidemarkError && e.code === 'unauthorized')
    await assert.rejects(fx.connect({ token: 'wrong' }).changes('customers', { after: 0 }), (e) => e instanceof TidemarkError && e.code === 'unauthorized')
  })

  it('reads a long listing streamed in many chunks, every change checked and kept as sent', async () => {
    const fx = await realServer()
    await fx.store.ensureFeed('events')
    const txs = 3000
    for (let t = 0; t < txs; t++) {
      const ops: WriteOp[] = []
      for (let i = 0; i < 10; i++) ops.push({ op: 'upsert', key: `k${(t * 10 + i) % 997}`, data: { t, i, text: `payload ${'é😀'.repeat(i)}` } })
      await fx.store.write('events', ops)
    }
    const source = fx.connect()
    const page = await source.changes('events', { after: 0, limit: 100_000 })
    assert.equal(page.changes.length, txs * 10)
    assert.equal(page.last, txs * 10)
    const stored: StoredChange[] = []
    for await (const batch of fx.store.changes('events', 0)) stored.push(...(batch as StoredChange[]))
    for (let i = 0; i < stored.length; i++) {
      const got = page.changes[i] as StoredChange
      const want = stored[i] as StoredChange
      if (got.seq !== want.seq || got.key !== want.key || got.tx !== want.tx || got.dataText !== want.dataText) {
        assert.fail(`change ${i + 1} differs: ${JSON.stringify(got)} vs ${JSON.stringify(want)}`)
      }
    }
    // Paged by limit: every page ends at a transaction boundary and the next follows on.
    let after = 0
    let pages = 0
    while (after < txs * 10) {
      const p = await source.changes('events', { after, limit: 995 })
      assert.equal(p.changes.length % 10, 0)
      after = p.last
      pages++
    }
    assert.equal(pages, Math.ceil((txs * 10) / 1000))
  })
})

describe('LongPollTransport over HTTP', () => {
  it('delivers writes as they commit, and the head on a quiet long-poll', async () => {
    const fx = await realServer()
    const { epoch } = await fx.store.ensureFeed('orders')
    await fx.store.write('orders', [{ op: 'upsert', key: 'a', data: 1 }])
    const transport = new LongPollTransport(fx.connect(), { waitMs: 300, limit: 2 })
    const controller = new AbortController()
    let position = 0
    const seen: Array<[number, number[]]> = []
    setTimeout(() => void fx.store.write('orders', [{ op: 'upsert', key: 'b', data: 2 }, { op: 'upsert', key: 'c', data: 3 }, { op: 'delete', key: 'a' }]), 500)
    for await (const d of transport.subscribe('orders', { epoch, position: () => position, signal: controller.signal })) {
      seen.push([d.head ?? -1, d.changes.map((c) => c.seq)])
      position = d.changes.at(-1)?.seq ?? position
      if (position === 4) break
    }
    assert.deepEqual(seen[0], [1, [1]])
    assert.deepEqual(seen.at(-1), [4, [2, 3, 4]], 'a whole transaction even past the limit')
    assert.ok(seen.slice(1, -1).every(([head, seqs]) => head === 1 && seqs.length === 0), 'quiet long-polls come back empty, with the head')
  })

  it('ends with the abort reason when stopped mid-long-poll', async () => {
    const fx = await realServer()
    const { epoch } = await fx.store.ensureFeed('orders')
    const transport = new LongPollTransport(fx.connect(), { waitMs: 30_000 })
    const controller = new AbortController()
    const reason = new Error('replica stopping')
    setTimeout(() => controller.abort(reason), 100)
    const t0 = Date.now()
    await assert.rejects(async () => {
      for await (const _ of transport.subscribe('orders', { epoch, position: () => 0, signal: controller.signal })) assert.fail('nothing to deliver')
    }, (e) => e === reason)
    assert.ok(Date.now() - t0 < 5000)
  })

  it('sees the server go away: an answer at once when it closes, then store-unavailable', async () => {
    const fx = await realServer()
    const { epoch } = await fx.store.ensureFeed('orders')
    const transport = new LongPollTransport(fx.connect({ timeoutMs: 2000 }), { waitMs: 30_000, idlePauseMs: 10 })
    const deliveries: Delivery[] = []
    setTimeout(() => void fx.server.close(), 200)
    const t0 = Date.now()
    await assert.rejects(async () => {
      for await (const d of transport.subscribe('orders', { epoch, position: () => 0, signal: new AbortController().signal })) deliveries.push(d)
    }, (e) => e instanceof TidemarkError && e.code === 'store-unavailable')
    assert.ok(Date.now() - t0 < 10_000, 'the waiting long-poll was answered when the server closed')
    assert.ok(deliveries.every((d) => d.changes.length === 0))
  })
})
