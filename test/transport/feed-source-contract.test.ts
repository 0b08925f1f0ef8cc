/**
 * One set of happy-path (and refusal) expectations, run against both FeedSources: the HTTP client
 * talking to the real feed server over 127.0.0.1, and LocalFeedSource over the same kind of store.
 * A replica must not be able to tell them apart.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { EpochChangedError, LogTruncatedError, UnknownFeedError } from '../../src/errors.js'
import { StoredChange, StoredRow } from '../../src/protocol/encoded.js'
import type { Change } from '../../src/protocol/types.js'
import type { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import type { FeedSource } from '../../src/transport/feed-source.js'
import { LocalFeedSource } from '../../src/transport/local-feed-source.js'
import { SqliteSourceStore as Store } from '../../src/store/sqlite/sqlite-source-store.js'
import { tmpDb } from '../helpers/tmp.js'
import { realServer } from './helpers.js'
import { after } from 'node:test'

interface Subject {
  store: SqliteSourceStore
  source: FeedSource
}

const subjects: Array<[string, () => Promise<Subject>]> = [
  [
    'HttpFeedSource + feed server',
    async () => {
      const server = await realServer()
      return { store: server.store, source: server.connect() }
    },
  ],
  [
    'LocalFeedSource',
    async () => {
      const store = Store.open(tmpDb())
      after(() => store.close())
      return { store, source: new LocalFeedSource(store) }
    },
  ],
]

const DATA = [
  { name: 'Ada', note: 'é\u2028😀 "quoted" \\ back', n: 1.5, deep: [[{ a: null }]] },
  'a plain string',
  42,
  null,
  [true, false],
]

async function fill(store: SqliteSourceStore): Promise<void> {
  await store.ensureFeed('customers')
  // seq 1–3 one transaction, 4 alone, 5–6 one transaction (a delete and an upsert), 7 alone.
  await store.write('customers', [
    { op: 'upsert', key: 'a', data: DATA[0]! },
    { op: 'upsert', key: 'b', data: DATA[1]! },
    { op: 'upsert', key: 'c"q', data: DATA[2]! },
  ])
  await store.write('customers', [{ op: 'upsert', key: 'd', data: DATA[3]! }])
  await store.write('customers', [
    { op: 'delete', key: 'a' },
    { op: 'upsert', key: 'é', data: DATA[4]! },
  ])
  await store.write('customers', [{ op: 'upsert', key: 'b', data: { v: 2 } }])
}

async function storeChanges(store: SqliteSourceStore, after = 0): Promise<StoredChange[]> {
  const out: StoredChange[] = []
  for await (const batch of store.changes('customers', after)) out.push(...(batch as StoredChange[]))
  return out
}

const shape = (c: Change): unknown[] => [c.seq, c.key, c.op, c.tx, c.ts, (c as StoredChange).dataText]

for (const [name, make] of subjects) {
  describe(`FeedSource contract: ${name}`, () => {
    it('describes the feed like the store', async () => {
      const { store, source } = await make()
      await fill(store)
      assert.deepEqual(await source.info('customers'), await store.getFeed('customers'))
      assert.ok(!source.description.includes('token'))
    })

    it('lists changes as whole transactions, data text as stored', async () => {
      const { store, source } = await make()
      await fill(store)
      const { epoch } = await store.getFeed('customers')
      const all = await source.changes('customers', { after: 0, epoch })
      assert.equal(all.epoch, epoch)
      assert.equal(all.head, 7)
      assert.equal(all.last, 7)
      assert.deepEqual(all.changes.map(shape), (await storeChanges(store)).map(shape))
      assert.ok(all.changes.every((c) => c instanceof StoredChange))
      assert.deepEqual(all.changes[0]?.data, DATA[0])

      // limit stops at the first transaction boundary at or after it: never part of a transaction.
      const one = await source.changes('customers', { after: 0, limit: 1 })
      assert.deepEqual(one.changes.map((c) => c.seq), [1, 2, 3])
      assert.equal(one.last, 3)
      const next = await source.changes('customers', { after: 3, limit: 2 })
      assert.deepEqual(next.changes.map((c) => c.seq), [4, 5, 6])
      const rest = await source.changes('customers', { after: 6, limit: 1000 })
      assert.deepEqual(rest.changes.map((c) => [c.seq, c.key, c.data]), [[7, 'b', { v: 2 }]])
    })

    it('answers at once, empty, at or past the head without wait', async () => {
      const { store, source } = await make()
      await fill(store)
      assert.deepEqual(await source.changes('customers', { after: 7 }), { epoch: (await store.getFeed('customers')).epoch, head: 7, changes: [], last: 7 })
      const past = await source.changes('customers', { after: 20, waitMs: 5000 })
      assert.deepEqual([past.head, past.last, past.changes.length], [7, 20, 0])
    })

    it('long-polls at the head: wakes on a write, or answers empty when the wait is up', async () => {
      const { store, source } = await make()
      await fill(store)
      let t0 = Date.now()
      const timedOut = await source.changes('customers', { after: 7, waitMs: 200 })
      assert.ok(Date.now() - t0 >= 150, 'held for the wait')
      assert.deepEqual([timedOut.head, timedOut.last, timedOut.changes.length], [7, 7, 0])

      t0 = Date.now()
      const woken = source.changes('customers', { after: 7, waitMs: 20_000 })
      setTimeout(() => void store.write('customers', [{ op: 'delete', key: 'd' }]), 50)
      const page = await woken
      assert.ok(Date.now() - t0 < 10_000)
      assert.deepEqual(page.changes.map((c) => [c.seq, c.op, c.key]), [[8, 'delete', 'd']])
      assert.equal(page.head, 8)
    })

    it('stops a long-poll at once when its signal aborts', async () => {
      const { store, source } = await make()
      await fill(store)
      const controller = new AbortController()
      const reason = new Error('replica stopping')
      const t0 = Date.now()
      const pending = source.changes('customers', { after: 7, waitMs: 30_000, signal: controller.signal })
      setTimeout(() => controller.abort(reason), 50)
      await assert.rejects(pending, (e) => e === reason)
      assert.ok(Date.now() - t0 < 5000)
      // The source is still usable afterwards.
      assert.equal((await source.info('customers')).head, 7)
    })

    it('refuses another epoch, a truncated position and an unknown feed', async () => {
      const { store, source } = await make()
      await fill(store)
      const { epoch } = await store.getFeed('customers')
      await assert.rejects(source.changes('customers', { after: 0, epoch: 'not-it' }), (e) => {
        assert.ok(e instanceof EpochChangedError)
        assert.deepEqual([e.feed, e.expected, e.actual], ['customers', 'not-it', epoch])
        return true
      })
      await assert.rejects(source.snapshot('customers', { after: null, epoch: 'not-it' }), EpochChangedError)

      await store.ensureFeed('customers', { retention: { changes: 2 } })
      await store.maintain()
      const { minSeq } = await store.getFeed('customers')
      assert.ok(minSeq > 1)
      await assert.rejects(source.changes('customers', { after: 0, epoch }), (e) => {
        assert.ok(e instanceof LogTruncatedError)
        assert.deepEqual([e.feed, e.after, e.minSeq], ['customers', 0, minSeq])
        return true
      })
      assert.equal((await source.changes('customers', { after: minSeq - 1, epoch })).last, 7)

      await assert.rejects(source.info('nope'), UnknownFeedError)
      await assert.rejects(source.changes('nope', { after: 0 }), UnknownFeedError)
      await assert.rejects(source.snapshot('nope', { after: null }), UnknownFeedError)
      await assert.rejects(source.rows('nope', ['a']), UnknownFeedError)
    })

    it('reads the snapshot in key-ordered chunks to the end, data text as stored', async () => {
      const { store, source } = await make()
      await fill(store)
      const { epoch } = await store.getFeed('customers')
      const rows: StoredRow[] = []
      let after: string | null = null
      let chunks = 0
      for (;;) {
        const page = await source.snapshot('customers', { after, limit: 2, epoch })
        chunks++
        assert.equal(page.epoch, epoch)
        assert.equal(page.head, 7)
        rows.push(...(page.rows as StoredRow[]))
        after = page.last
        if (page.done) break
      }
      assert.equal(chunks, 2)
      const expected = (await store.snapshot('customers', null, 100)).rows as StoredRow[]
      assert.deepEqual(
        rows.map((r) => [r.key, r.seq, r.dataText]),
        expected.map((r) => [r.key, r.seq, r.dataText]),
      )
      assert.deepEqual(rows.map((r) => r.key), ['b', 'c"q', 'd', 'é'])
      const empty = await source.snapshot('customers', { after: 'é', limit: 5 })
      assert.deepEqual([empty.rows.length, empty.last, empty.done], [0, 'é', true])
    })

    it('reads rows by key: tombstones included, unknown keys left out', async () => {
      const { store, source } = await make()
      await fill(store)
      const { epoch } = await store.getFeed('customers')
      const page = await source.rows('customers', ['a', 'zzz', 'é', 'b', 'b'])
      assert.equal(page.epoch, epoch)
      assert.equal(page.head, 7)
      const expected = (await store.rows('customers', ['a', 'é', 'b'])).rows as StoredRow[]
      assert.deepEqual(
        (page.rows as StoredRow[]).map((r) => [r.key, r.seq, r.dataText, r.deleted]),
        expected.map((r) => [r.key, r.seq, r.dataText, r.deleted]),
      )
      assert.equal(page.rows[0]?.deleted, true)
      assert.deepEqual(await source.rows('customers', []), { epoch, head: 7, rows: [] })
    })
  })
}
