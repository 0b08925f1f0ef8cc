/**
 * The snapshot fetched ahead on another thread (snapshot-prefetch.ts): the same pages as
 * `snapshot`, every row hashed as the store would hash it, at most `ahead` pages in front, and
 * every failure the worker meets arriving as the class the replica decides by.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { HashedRow } from '../../src/digest/hashed-row.js'
import { bucketOf, rowHashHex } from '../../src/digest/row-hash.js'
import { EpochChangedError, ProtocolError, TidemarkError, UnknownFeedError } from '../../src/errors.js'
import type { StoredRow } from '../../src/protocol/encoded.js'
import type { SnapshotPage } from '../../src/transport/feed-source.js'
import { prefetchSnapshot } from '../../src/transport/http/snapshot-prefetch.js'
import type { WriteOp } from '../../src/protocol/types.js'
import { fakeServer, realServer, v1Error, v1Head } from './helpers.js'

async function filled(rows: number) {
  const fx = await realServer()
  await fx.store.ensureFeed('items')
  for (let t = 0; t < rows; t += 500) {
    const ops: WriteOp[] = []
    for (let i = t; i < Math.min(rows, t + 500); i++) ops.push({ op: 'upsert', key: `k${String(i).padStart(5, '0')}`, data: { i, text: `row ${'é😀'.repeat(i % 7)}` } })
    await fx.store.write('items', ops)
  }
  await fx.store.write('items', [{ op: 'delete', key: 'k00007' }])
  return fx
}

async function collect(pages: AsyncIterable<SnapshotPage>): Promise<SnapshotPage[]> {
  const out: SnapshotPage[] = []
  for await (const p of pages) out.push(p)
  return out
}

describe('snapshot prefetched on another thread', () => {
  it('gives the pages snapshot gives, each row hashed as the store hashes it', async () => {
    const fx = await filled(2345)
    const source = fx.connect()
    const want: SnapshotPage[] = []
    for (let after: string | null = null; ; ) {
      const p = await source.snapshot('items', { after, limit: 400 })
      want.push(p)
      if (p.done || p.last === null) break
      after = p.last
    }
    const got = await collect(prefetchSnapshot(fx.url, {}, 'items', { after: null, limit: 400 }))
    assert.equal(got.length, want.length)
    for (let i = 0; i < got.length; i++) {
      const g = got[i] as SnapshotPage
      const w = want[i] as SnapshotPage
      assert.deepEqual({ epoch: g.epoch, head: g.head, last: g.last, done: g.done }, { epoch: w.epoch, head: w.head, last: w.last, done: w.done })
      assert.equal(g.rows.length, w.rows.length)
      for (let j = 0; j < g.rows.length; j++) {
        const r = g.rows[j] as HashedRow
        const s = w.rows[j] as StoredRow
        assert.ok(r instanceof HashedRow)
        assert.deepEqual([r.key, r.seq, r.dataText], [s.key, s.seq, s.dataText])
        assert.equal(r.bucket, bucketOf(r.key))
        assert.equal(r.hash === null ? null : r.hash.toString('hex'), r.dataText === null ? null : rowHashHex(r.key, r.seq, r.dataText))
      }
    }
    // Also through the client's own entry, from the middle.
    const from = await collect(source.snapshotPages('items', { after: 'k01999', limit: 400 }))
    assert.equal(from.flatMap((p) => p.rows).length, 2345 - 2000)
  })

  it('runs at most `ahead` pages in front of what was taken', async () => {
    // An endless snapshot: one row per page, never done.
    const server = await fakeServer((req, res) => {
      const after = new URL(req.url ?? '', 'http://x').searchParams.get('after')
      const key = `k${String(Number(after?.slice(1) ?? -1) + 1).padStart(6, '0')}`
      v1Head(res, 200, 'ndjson', 'e1')
      res.end(`{"key":"${key}","seq":1,"data":{}}\n{"end":true,"epoch":"e1","head":5,"last":"${key}","done":false,"rows":1}\n`)
    })
    const snapshots = () => server.requests.filter((r) => r.url.includes('/snapshot')).length
    const pages = prefetchSnapshot(server.url, {}, 'items', { after: null, limit: 1 }, 2)[Symbol.asyncIterator]()
    await pages.next()
    await new Promise((r) => setTimeout(r, 400))
    // The page taken, and two ahead of it.
    assert.equal(snapshots(), 3)
    await pages.next()
    await new Promise((r) => setTimeout(r, 400))
    assert.equal(snapshots(), 4)
    await pages.return?.(undefined)
    await new Promise((r) => setTimeout(r, 200))
    assert.equal(snapshots(), 4, 'the thread went on after the consumer stopped')
  })

  it("asks for the next chunk on the server's header hint, and a hint that lies costs a request, never a row", async () => {
    // 40 keys, 10 per chunk. Chunk bodies are slow, so a client that waits for the end line
    // would have one request open at a time; the hint lets it have two.
    const keys = Array.from({ length: 40 }, (_, i) => `k${String(i).padStart(2, '0')}`)
    let open = 0
    let mostOpen = 0
    const lie = new Set(['k19']) // the chunk after k19 says it ends at k35; its body ends at k29
    const server = await fakeServer((req, res) => {
      const after = new URL(req.url ?? '', 'http://x').searchParams.get('after')
      const from = after === null ? 0 : keys.indexOf(after) + 1
      const rows = keys.slice(from, from + 10)
      const last = rows[rows.length - 1] as string
      const done = from + 10 >= keys.length
      res.setHeader('tidemark-snapshot-last', encodeURIComponent(after !== null && lie.has(after) ? 'k35' : last))
      res.setHeader('tidemark-snapshot-done', String(done))
      v1Head(res, 200, 'ndjson', 'e1')
      open++
      mostOpen = Math.max(mostOpen, open)
      res.write(rows.map((k) => `{"key":"${k}","seq":1,"data":{}}\n`).join(''))
      setTimeout(() => {
        open--
        res.end(`{"end":true,"epoch":"e1","head":5,"last":"${last}","done":${done},"rows":${rows.length}}\n`)
      }, 150)
    })
    const pages = await collect(prefetchSnapshot(server.url, {}, 'items', { after: null, limit: 10 }, 4))
    assert.deepEqual(pages.flatMap((p) => p.rows.map((r) => r.key)), keys)
    assert.ok(mostOpen >= 2, `the next chunk was asked for before this one ended (at most ${mostOpen} open)`)
    const asked = server.requests.filter((r) => r.url.includes('/snapshot')).map((r) => new URL(r.url, 'http://x').searchParams.get('after'))
    assert.ok(asked.includes('k35'), 'the lying hint was followed')
    assert.ok(asked.includes('k29'), 'and then the chunk asked again from where the body really ended')
  })

  it('a feed the server does not know, a changed epoch and a lying server arrive as their classes', async () => {
    const fx = await filled(10)
    await assert.rejects(collect(prefetchSnapshot(fx.url, {}, 'nope', { after: null })), (e) => e instanceof UnknownFeedError && e.feed === 'nope')
    await assert.rejects(collect(prefetchSnapshot(fx.url, {}, 'items', { after: null, epoch: 'not-the-epoch' })), (e) => e instanceof EpochChangedError && e.expected === 'not-the-epoch')
    const liar = await fakeServer((_req, res) => {
      v1Head(res, 200, 'ndjson', 'e1')
      res.end('{"key":"b","seq":1,"data":{}}\n{"key":"a","seq":2,"data":{}}\n{"end":true,"epoch":"e1","head":5,"last":"a","done":true,"rows":2}\n')
    })
    await assert.rejects(collect(prefetchSnapshot(liar.url, {}, 'items', { after: null })), (e) => e instanceof ProtocolError && /keys must rise/.test(e.message))
    const refusing = await fakeServer((_req, res) => v1Error(res, 401, { error: 'unauthorized', message: 'no token' }))
    await assert.rejects(collect(prefetchSnapshot(refusing.url, {}, 'items', { after: null })), (e) => e instanceof TidemarkError && e.code === 'unauthorized')
  })

  it('a server that vanishes mid-snapshot is store-unavailable; an abort ends the thread', async () => {
    let served = 0
    const vanishing = await fakeServer((req, res) => {
      if (served++ === 0) {
        v1Head(res, 200, 'ndjson', 'e1')
        res.end('{"key":"a","seq":1,"data":{}}\n{"end":true,"epoch":"e1","head":5,"last":"a","done":false,"rows":1}\n')
      } else req.socket.destroy()
    })
    const pages = prefetchSnapshot(vanishing.url, { timeoutMs: 2000 }, 'items', { after: null, limit: 1 })
    await assert.rejects(collect(pages), (e) => e instanceof TidemarkError && e.code === 'store-unavailable' && /items\/snapshot/.test(e.message))

    const fx = await filled(3000)
    const abort = new AbortController()
    const it = prefetchSnapshot(fx.url, {}, 'items', { after: null, limit: 100, signal: abort.signal })[Symbol.asyncIterator]()
    await it.next()
    abort.abort(new Error('stopping'))
    await assert.rejects(it.next(), /stopping/)
  })
})
