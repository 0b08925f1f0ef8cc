/**
 * HttpFeedSource's `digest`, `keys` and `traffic` against the real feed server (answers equal to
 * the source's own, and to LocalFeedSource's), and against a scripted server that tampers with
 * genuine answers: every kind of wrong answer must be a ProtocolError, never drift.
 */
import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { describe, it } from 'node:test'
import { nodesAt } from '../../src/digest/digest-tree.js'
import { bucketOf } from '../../src/digest/row-hash.js'
import { BadRequestError, EpochChangedError, ProtocolError, TidemarkError } from '../../src/errors.js'
import { encodeHash } from '../../src/protocol/digest-wire.js'
import type { BucketList, WriteOp } from '../../src/protocol/types.js'
import type { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import type { FeedSource } from '../../src/transport/feed-source.js'
import { LocalFeedSource } from '../../src/transport/local-feed-source.js'
import { keysInBucket, listOf, oracle } from '../helpers/digest-oracle.js'
import { fakeServer, httpSource, realServer, v1Head } from './helpers.js'

/** 3 keys sharing one bucket (for order checks), `n` more, some rewritten, two deleted. */
async function fill(store: SqliteSourceStore, feed: string, n: number): Promise<{ shared: number; sharedKeys: string[] }> {
  await store.ensureFeed(feed)
  const shared = 4242
  const sharedKeys = keysInBucket(shared, 3, 'same-')
  const ops: WriteOp[] = sharedKeys.map((key, i) => ({ op: 'upsert', key, data: { i } }))
  for (let i = 0; i < n; i++) ops.push({ op: 'upsert', key: `k${i}`, data: { i } })
  await store.write(feed, ops)
  await store.write(feed, [{ op: 'delete', key: sharedKeys[1]! }, { op: 'delete', key: 'k3' }, { op: 'upsert', key: 'k4', data: 'x' }])
  return { shared, sharedKeys }
}

async function collect(lists: AsyncIterable<BucketList>): Promise<BucketList[]> {
  const out: BucketList[] = []
  for await (const l of lists) out.push(l)
  return out
}

const protocol = (message: RegExp) => (e: unknown) => {
  assert.ok(e instanceof ProtocolError, `a ProtocolError, got ${String(e)}`)
  assert.match(e.message, message)
  return true
}

describe('HttpFeedSource.digest and keys against the feed server', () => {
  it('reads every level of the digest as the source has it, by GET and by POST, as LocalFeedSource does', async () => {
    const real = await realServer()
    await fill(real.store, 'customers', 2000)
    const o = await oracle(real.store, 'customers')
    const http = real.connect()
    const local = new LocalFeedSource(real.store)
    const { epoch } = await real.store.getFeed('customers')
    for (const source of [http, local] as FeedSource[]) {
      const root = await source.digest('customers', { level: 0, nodes: [0], epoch })
      assert.deepEqual(root, {
        epoch,
        seq: o.head,
        head: o.head,
        minSeq: 1,
        level: 0,
        nodes: [{ index: 0, node: o.tree.root, children: o.tree.children(0, 0) }],
      })
      const all2 = Array.from({ length: nodesAt(2) }, (_, i) => i)
      for (const [level, nodes] of [[1, [15, 0, 7]], [2, all2], [3, [4095, 1, 2]]] as const) {
        const page = await source.digest('customers', { level, nodes: [...nodes] })
        assert.equal(page.level, level)
        assert.deepEqual(page.nodes, nodes.map((index) => ({ index, node: o.tree.node(level, index), children: o.tree.children(level, index) })))
      }
      await assert.rejects(source.digest('customers', { level: 0, nodes: [0], epoch: 'old' }), EpochChangedError)
      await assert.rejects(source.digest('customers', { level: 4, nodes: [0] }), BadRequestError)
      await assert.rejects(source.digest('customers', { level: 1, nodes: [3, 3] }), BadRequestError)
    }
  })

  it('streams the key lists as the source has them, tombstones included, as LocalFeedSource does', async () => {
    const real = await realServer()
    const { shared, sharedKeys } = await fill(real.store, 'customers', 3000)
    const o = await oracle(real.store, 'customers')
    const { epoch } = await real.store.getFeed('customers')
    const buckets = [shared, ...[...o.lists.keys()].filter((b) => b !== shared).slice(0, 700), 65535]
    const expected = buckets.map((b) => listOf(o, b))
    for (const source of [real.connect(), new LocalFeedSource(real.store)] as FeedSource[]) {
      const listing = await source.keys('customers', { buckets, epoch })
      assert.equal(listing.epoch, epoch)
      assert.equal(listing.seq, o.head)
      const lists = await collect(listing.lists)
      assert.deepEqual(lists, expected)
      assert.equal(listing.minSeq, 1)
      assert.deepEqual(lists[0]?.entries.map((e) => [e.key, e.hash === null]), sharedKeys.map((k, i) => [k, i === 1]))
      await assert.rejects(source.keys('customers', { buckets: [1, 1] }), BadRequestError)
      await assert.rejects(source.keys('customers', { buckets: [65536] }), BadRequestError)
      await assert.rejects(source.keys('customers', { buckets: [1], epoch: 'old' }), EpochChangedError)
    }
  })

  it('releases the connection when the lists are left early', async () => {
    const real = await realServer()
    await fill(real.store, 'customers', 500)
    const source = real.connect({ connections: 1 })
    const listing = await source.keys('customers', { buckets: Array.from({ length: 65536 }, (_, i) => i) })
    for await (const _ of listing.lists) break
    // With one connection, this hangs unless the abandoned listing gave it back.
    const page = await source.digest('customers', { level: 0, nodes: [0] })
    assert.equal(page.nodes[0]?.node.count, 501)
  })

  it('stops a listing at once when its signal is aborted', async () => {
    const server = await fakeServer((_req, res) => {
      v1Head(res, 200, 'ndjson', 'e1')
      // The first line and one list, then nothing more: only the abort ends the wait.
      res.write(`${JSON.stringify({ epoch: 'e1', seq: 9, minSeq: 1 })}\n{"b":7,"n":0,"s":"","e":[]}\n`)
    })
    const source = httpSource(server.url)
    const controller = new AbortController()
    const listing = await source.keys('f', { buckets: [7, 8], signal: controller.signal })
    const seen: number[] = []
    const reason = new Error('stopped by the test')
    await assert.rejects(
      (async () => {
        for await (const list of listing.lists) {
          seen.push(list.bucket)
          controller.abort(reason)
        }
      })(),
      (e) => e === reason,
    )
    assert.deepEqual(seen, [7])
  })

  it('counts requests and the bytes of both ways, headers included: one root digest is under 2 KB', async () => {
    const real = await realServer()
    await fill(real.store, 'customers', 20_000)
    const source = real.connect({ token: 'a-bearer-token-of-forty-characters-long!' })
    assert.deepEqual(source.traffic(), { requests: 0, bytesSent: 0, bytesReceived: 0 })
    const page = await source.digest('customers', { level: 0, nodes: [0] })
    assert.equal(page.nodes[0]?.node.count, 20_001)
    const t = source.traffic()
    assert.equal(t.requests, 1)
    assert.ok(t.bytesSent > 100 && t.bytesReceived > 500, JSON.stringify(t))
    assert.ok(t.bytesSent + t.bytesReceived < 2048, JSON.stringify(t))
  })

  it('counts exactly what crossed the wire', async () => {
    const sockets = new Set<Socket>()
    const server = await fakeServer((req: IncomingMessage, res: ServerResponse) => {
      sockets.add(req.socket)
      v1Head(res, 200, 'json')
      res.end(JSON.stringify({ epoch: 'e1', seq: 0, head: 0, minSeq: 1, level: 0, nodes: [[0, 0, '', Array.from({ length: 16 }, () => [0, ''])]] }))
    })
    const source = httpSource(server.url)
    await source.digest('f', { level: 0, nodes: [0] })
    await source.digest('f', { level: 1, nodes: [0] }).catch(() => {})
    assert.equal(source.traffic().requests, 2)
    let [read, written] = [0, 0]
    for (const s of sockets) [read, written] = [read + s.bytesRead, written + s.bytesWritten]
    assert.deepEqual([source.traffic().bytesSent, source.traffic().bytesReceived], [read, written])
  })
})

describe('HttpFeedSource.digest and keys against a tampering server', () => {
  /** Genuine answers from a real server, served changed by `tamper`. */
  async function tampering() {
    const real = await realServer()
    const { shared } = await fill(real.store, 'customers', 300)
    const o = await oracle(real.store, 'customers')
    const other = [...o.lists.keys()].filter((b) => b !== shared).slice(0, 5)
    const buckets = [shared, ...other]
    let tamper: (text: string, url: string) => string = (t) => t
    const server = await fakeServer((req, res, body) => {
      void (async () => {
        const genuine = await real.server.app.inject({
          method: req.method as 'GET' | 'POST',
          url: req.url ?? '',
          payload: body === '' ? undefined : body,
          headers: body === '' ? {} : { 'content-type': 'application/json' },
        })
        const { 'content-length': _length, 'transfer-encoding': _chunked, connection: _c, 'keep-alive': _k, ...headers } = genuine.headers
        res.writeHead(genuine.statusCode, headers as Record<string, string>)
        res.end(tamper(genuine.body, req.url ?? ''))
      })()
    })
    const source = httpSource(server.url)
    return {
      source,
      buckets,
      shared,
      set(fn: (text: string, url: string) => string) {
        tamper = fn
      },
    }
  }

  /** Changes the JSON of the digest answer. */
  const digestDoc = (edit: (doc: { nodes: unknown[][] }) => void) => (text: string) => {
    const doc = JSON.parse(text) as { nodes: unknown[][] }
    edit(doc)
    return JSON.stringify(doc)
  }

  /** Changes line `i` of a keys listing (0 is the first line). */
  const keysLine = (i: number, edit: (line: Record<string, unknown>) => unknown) => (text: string) => {
    const lines = text.split('\n')
    lines[i] = JSON.stringify(edit(JSON.parse(lines[i]!) as Record<string, unknown>))
    return lines.join('\n')
  }

  it('refuses digest answers that do not add up or are not what was asked', async () => {
    const t = await tampering()
    const root = { level: 0, nodes: [0] }
    const child = (doc: { nodes: unknown[][] }, k: number): [number, string] => (doc.nodes[0]![3] as Array<[number, string]>)[k]!
    const cases: Array<[string, (text: string) => string, RegExp]> = [
      ['a child count off by one', digestDoc((d) => void (child(d, 3)[0] += 1)), /do not add up/],
      ['the parent count off by one', digestDoc((d) => void ((d.nodes[0] as number[])[1]! -= 1)), /do not add up/],
      ['a child sum changed', digestDoc((d) => void (child(d, 5)[1] = encodeHash(12345n))), /do not add up/],
      ['two children swapped sums', digestDoc((d) => {
        const [a, b] = [child(d, 0), child(d, 1)]
        ;[a[0], b[0]] = [b[0], a[0]]
        ;[a[1], b[1]] = [b[1], a[1]]
      }), /./],
      ['15 children', digestDoc((d) => void (d.nodes[0]![3] as unknown[]).pop()), /16 children/],
      ['another node', digestDoc((d) => void (d.nodes[0]![0] = 1)), /node 1 where node 0 was asked for/],
      ['a sum that is not base64url', digestDoc((d) => void (child(d, 2)[1] = 'not-a-sum')), /base64url/],
      ['a negative count', digestDoc((d) => void (child(d, 2)[0] = -1)), /not a whole number/],
      ['no nodes', digestDoc((d) => void (d.nodes = [])), /0 nodes where 1 were asked for/],
      ['not JSON', (text) => text.slice(0, 50), /not a JSON line/],
    ]
    for (const [what, fn, message] of cases) {
      t.set(fn)
      if (what === 'two children swapped sums') {
        // Swapping whole children keeps the sum: that is found one level down, by the reconciler; the shape still passes.
        const page = await t.source.digest('customers', root)
        assert.equal(page.nodes[0]?.children.length, 16)
        continue
      }
      await assert.rejects(t.source.digest('customers', root), protocol(message), what)
    }
  })

  it('refuses key lists whose entries do not make the count and sum, keys in the wrong bucket or order, lists out of place, cut listings', async () => {
    const t = await tampering()
    const entries = (line: Record<string, unknown>): unknown[][] => line.e as unknown[][]
    const cases: Array<[string, (text: string) => string, RegExp | ((e: unknown) => boolean)]> = [
      ['a count off by one', keysLine(1, (l) => ({ ...l, n: (l.n as number) + 1 })), /entries make 2 rows, but the list says 3/],
      ['a hash changed', keysLine(1, (l) => (entries(l)[0]![2] = encodeHash(7n), l)), /another sum/],
      ['a tombstone given a hash', keysLine(1, (l) => (entries(l)[1]![2] = encodeHash(7n), l)), /entries make 3 rows/],
      ['an entry dropped', keysLine(1, (l) => (entries(l).pop(), l)), /entries make/],
      ['a key of another bucket', keysLine(1, (l) => (entries(l)[2]![0] = 'k0', l)), new RegExp(`hashes into bucket ${bucketOf('k0')}`)],
      ['keys out of order', keysLine(1, (l) => (entries(l).reverse(), l)), /keys must rise/],
      ['a key twice', keysLine(1, (l) => (entries(l)[1] = entries(l)[0]!, l)), /keys must rise/],
      ['a list for another bucket', keysLine(2, (l) => ({ ...l, b: (l.b as number) + 1 })), /where bucket \d+ was due/],
      ['a bad hash', keysLine(1, (l) => (entries(l)[0]![2] = 'AAAA', l)), /base64url or null/],
      ['the end line miscounting', keysLine(7, (l) => ({ ...l, entries: (l.entries as number) - 1 })), /end line counts/],
      ['the end line of another epoch', keysLine(7, (l) => ({ ...l, epoch: 'other' })), (e) => e instanceof EpochChangedError],
      ['cut before the end line', (text) => text.split('\n').slice(0, 7).join('\n') + '\n', /cut after 6 of 6 bucket lists: the keys listing has no end line/],
      ['cut mid-line', (text) => text.slice(0, text.length - 60), /cut after \d of 6 bucket lists \(mid-line/],
      ['cut after the first line', (text) => text.split('\n')[0] + '\n', /cut after 0 of 6/],
      ['an error line instead of the end', (text) => text.split('\n').slice(0, 4).join('\n') + '\n{"error":"store-unavailable","message":"disk gone"}\n', (e) => e instanceof TidemarkError && e.code === 'store-unavailable'],
      ['a line after the end line', (text) => `${text}{"b":1}\n`, /follows the end line/],
      ['a first line without a position', keysLine(0, (l) => ({ epoch: l.epoch })), /first line needs epoch, seq and minSeq/],
    ]
    for (const [what, fn, check] of cases) {
      t.set(fn)
      const run = async (): Promise<void> => {
        const listing = await t.source.keys('customers', { buckets: t.buckets })
        await collect(listing.lists)
      }
      await assert.rejects(run(), check instanceof RegExp ? protocol(check) : check, what)
    }
    t.set((text) => text)
    assert.equal((await collect((await t.source.keys('customers', { buckets: t.buckets })).lists)).length, 6)
  })

  it('returns the listing after its first line, before the rest of the body has come', async () => {
    let release: () => void = () => {}
    const held = new Promise<void>((resolve) => (release = resolve))
    const server = await fakeServer((_req, res) => {
      v1Head(res, 200, 'ndjson', 'e1')
      res.write(`${JSON.stringify({ epoch: 'e1', seq: 9, minSeq: 2 })}\n`)
      void held.then(() => {
        res.end(`{"b":7,"n":0,"s":"","e":[]}\n${JSON.stringify({ end: true, epoch: 'e1', buckets: 1, entries: 0, minSeq: 3 })}\n`)
      })
    })
    const source = httpSource(server.url)
    const listing = await source.keys('f', { buckets: [7] })
    assert.deepEqual([listing.epoch, listing.seq, listing.minSeq], ['e1', 9, 2])
    release()
    assert.deepEqual(await collect(listing.lists), [{ bucket: 7, count: 0, sum: 0n, entries: [] }])
    assert.equal(listing.minSeq, 3)
  })
})
