import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { EpochChangedError, TidemarkError } from '../../src/errors.js'
import type { Change, FeedInfo } from '../../src/protocol/types.js'
import type { ChangesPage, ChangesRequest, FeedSource } from '../../src/transport/feed-source.js'
import { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import { LocalFeedSource } from '../../src/transport/local-feed-source.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import type { Delivery } from '../../src/transport/transport.js'
import { tmpDb } from '../helpers/tmp.js'

/** A FeedSource that answers `changes` from a script and records every request. */
class ScriptedSource implements FeedSource {
  readonly description = 'scripted'
  readonly requests: ChangesRequest[] = []
  constructor(private readonly answer: (req: ChangesRequest, n: number) => Promise<ChangesPage>) {}
  async info(): Promise<FeedInfo> {
    throw new Error('not scripted')
  }
  async changes(_feed: string, req: ChangesRequest): Promise<ChangesPage> {
    this.requests.push(req)
    return this.answer(req, this.requests.length)
  }
  async snapshot(): Promise<never> {
    throw new Error('not scripted')
  }
  async rows(): Promise<never> {
    throw new Error('not scripted')
  }
  async digest(): Promise<never> {
    throw new Error('not scripted')
  }
  async keys(): Promise<never> {
    throw new Error('not scripted')
  }
}

function upsert(seq: number): Change {
  return { seq, key: `k${seq}`, op: 'upsert', data: seq, tx: seq, ts: 0 }
}

function page(after: number, count: number, head = after + count): ChangesPage {
  const changes = Array.from({ length: count }, (_, i) => upsert(after + i + 1))
  return { epoch: 'e1', head, changes, last: after + count }
}

describe('LongPollTransport', () => {
  it('asks from the position at each request and yields every page, empty ones too', async () => {
    let position = 0
    const source = new ScriptedSource(async (req, n) => (n === 2 ? page(req.after, 0, 7) : page(req.after, n === 1 ? 3 : 4)))
    const transport = new LongPollTransport(source, { waitMs: 500, limit: 50, now: (() => { let t = 0; return () => (t += 300) })() })
    assert.equal(transport.name, 'http')
    const controller = new AbortController()
    const seen: Delivery[] = []
    for await (const d of transport.subscribe('customers', { epoch: 'e1', position: () => position, signal: controller.signal })) {
      seen.push(d)
      position = d.changes.at(-1)?.seq ?? position
      if (seen.length === 3) break
    }
    assert.deepEqual(
      seen.map((d) => [d.epoch, d.head, d.changes.map((c) => c.seq)]),
      [
        ['e1', 3, [1, 2, 3]],
        ['e1', 7, []],
        ['e1', 7, [4, 5, 6, 7]],
      ],
    )
    assert.deepEqual(
      source.requests.map((r) => [r.after, r.limit, r.waitMs, r.epoch, r.signal === controller.signal]),
      [
        [0, 50, 500, 'e1', true],
        [3, 50, 500, 'e1', true],
        [3, 50, 500, 'e1', true],
      ],
    )
  })

  it('uses waitMs 25 000 and limit 5 000 by default', async () => {
    const source = new ScriptedSource(async (req) => page(req.after, 1))
    const transport = new LongPollTransport(source)
    for await (const _ of transport.subscribe('f', { epoch: 'e1', position: () => 0, signal: new AbortController().signal })) break
    assert.equal(source.requests[0]?.waitMs, 25_000)
    assert.equal(source.requests[0]?.limit, 5000)
  })

  it('lets errors through to the consumer', async () => {
    const source = new ScriptedSource(async (_req, n) => {
      if (n === 2) throw new EpochChangedError('f', 'e1', 'e2')
      return page(0, 1)
    })
    const transport = new LongPollTransport(source, { waitMs: 10 })
    const seen: number[] = []
    await assert.rejects(async () => {
      for await (const d of transport.subscribe('f', { epoch: 'e1', position: () => 0, signal: new AbortController().signal })) seen.push(d.changes.length)
    }, EpochChangedError)
    assert.deepEqual(seen, [1])
  })

  it('throws the abort reason once the signal aborts, also between deliveries', async () => {
    const reason = new TidemarkError('internal', 'stopped by the test')
    const controller = new AbortController()
    const source = new ScriptedSource(
      (req) =>
        new Promise<ChangesPage>((resolve, reject) => {
          if (req.after === 0) return resolve(page(0, 1))
          req.signal?.addEventListener('abort', () => reject(req.signal?.reason))
        }),
    )
    const transport = new LongPollTransport(source, { waitMs: 60_000 })
    const iterator = transport.subscribe('f', { epoch: 'e1', position: () => source.requests.length, signal: controller.signal })[Symbol.asyncIterator]()
    assert.equal((await iterator.next()).done, false)
    const pending = iterator.next()
    setTimeout(() => controller.abort(reason), 10)
    await assert.rejects(pending, (e) => e === reason)

    const already = new LongPollTransport(source).subscribe('f', { epoch: 'e1', position: () => 0, signal: AbortSignal.abort(reason) })
    await assert.rejects(already[Symbol.asyncIterator]().next(), (e) => e === reason)
    assert.equal(source.requests.length, 2, 'no request once aborted')
  })

  it('pauses after an empty answer the server did not hold, so it never spins', async () => {
    let clock = 0
    const pauses: number[] = []
    const source = new ScriptedSource(async (req) => page(req.after, 0, 0))
    const transport = new LongPollTransport(source, {
      waitMs: 1000,
      idlePauseMs: 250,
      now: () => clock,
      sleep: async (ms) => void pauses.push(ms),
    })
    let n = 0
    for await (const _ of transport.subscribe('f', { epoch: 'e1', position: () => 0, signal: new AbortController().signal })) {
      if (++n === 3) break
    }
    assert.deepEqual(pauses, [250, 250], 'answered at once: pause before asking again')

    // A long-poll that was held (timed out at the server) is followed by the next one at once.
    pauses.length = 0
    const held = new ScriptedSource(async (req) => {
      clock += 1000
      return page(req.after, 0, 0)
    })
    const t2 = new LongPollTransport(held, { waitMs: 1000, now: () => clock, sleep: async (ms) => void pauses.push(ms) })
    n = 0
    for await (const _ of t2.subscribe('f', { epoch: 'e1', position: () => 0, signal: new AbortController().signal })) {
      if (++n === 3) break
    }
    assert.deepEqual(pauses, [])
  })

  it('reads the page after a full one while the replica applies it, and drops it when the checkpoint went elsewhere', async () => {
    const aborted: number[] = []
    const source = new ScriptedSource(async (req) => {
      req.signal?.addEventListener('abort', () => aborted.push(req.after))
      return page(req.after, req.after < 8 ? 4 : 1, 20)
    })
    const transport = new LongPollTransport(source, { waitMs: 10, limit: 4, idlePauseMs: 0 })
    let position = 0
    const seen: number[][] = []
    for await (const d of transport.subscribe('f', { epoch: 'e1', position: () => position, signal: new AbortController().signal })) {
      seen.push(d.changes.map((c) => c.seq))
      // The asked-ahead page (after 4) was requested before this one was applied.
      if (seen.length === 1) assert.deepEqual(source.requests.map((r) => r.after), [0, 4])
      // After the second page the replica jumps (a gap healed from the log, say): the page read ahead is not delivered.
      position = seen.length === 2 ? 10 : (d.changes.at(-1)?.seq ?? position)
      if (seen.length === 3) break
    }
    assert.deepEqual(seen, [[1, 2, 3, 4], [5, 6, 7, 8], [11]])
    assert.deepEqual(source.requests.map((r) => r.after), [0, 4, 8, 10])
    assert.deepEqual(aborted, [8])
  })

  it('follows a real store through LocalFeedSource, waking on a write', async () => {
    const store = SqliteSourceStore.open(tmpDb())
    try {
      const info = await store.ensureFeed('orders')
      await store.write('orders', [{ op: 'upsert', key: 'a', data: 1 }, { op: 'upsert', key: 'b', data: 2 }])
      const transport = new LongPollTransport(new LocalFeedSource(store), { waitMs: 10_000 })
      let position = 0
      const controller = new AbortController()
      const got: number[][] = []
      const started = Date.now()
      setTimeout(() => void store.write('orders', [{ op: 'delete', key: 'a' }]), 50)
      for await (const d of transport.subscribe('orders', { epoch: info.epoch, position: () => position, signal: controller.signal })) {
        got.push(d.changes.map((c) => c.seq))
        position = d.changes.at(-1)?.seq ?? position
        if (position === 3) break
      }
      assert.deepEqual(got, [[1, 2], [3]])
      assert.ok(Date.now() - started < 5000, 'woken by the write, not by the wait running out')
    } finally {
      await store.close()
    }
  })
})
