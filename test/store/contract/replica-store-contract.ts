import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { addHash, bucketOf, rowHash } from '../../../src/digest/row-hash.js'
import type { Change, Json, StateRow } from '../../../src/protocol/types.js'
import type { ApplyHook, ReplicaStore } from '../../../src/store/replica-store.js'
import type { DigestLeaf } from '../../../src/store/store.js'
import { prng } from '../../../src/util/prng.js'

/**
 * The ReplicaStore contract, run against every backend (test/store/*replica-store*.test.ts). A
 * backend gives fresh stores over one database (two of them: two replicator processes) and a
 * projection: a hook writing the consumer's own table in the apply transaction, and a way to read
 * that table back.
 */
export interface ReplicaHarness<Tx> {
  /** A store over the harness's database; each call is another "process". */
  store(): Promise<ReplicaStore<Tx>>
  /** Mirrors every change into the consumer's table `projection(key, value)`. */
  hook: ApplyHook<Tx>
  /** A hook that writes the projection, then throws on the given key. */
  failingHook(key: string): ApplyHook<Tx>
  projection(): Promise<Map<string, string>>
  close(): Promise<void>
}

export interface ReplicaBackend<Tx> {
  name: string
  open(): Promise<ReplicaHarness<Tx>>
}

const FEED = 'customers'
const SOURCE = 'http://source.test'
const up = (seq: number, key: string, data: Json, tx = seq): Change => ({ seq, key, op: 'upsert', data, tx, ts: 1 })
const del = (seq: number, key: string, tx = seq): Change => ({ seq, key, op: 'delete', tx, ts: 1 })

async function copy<Tx>(store: ReplicaStore<Tx>, name = FEED): Promise<Map<string, { seq: number; data: string }>> {
  const out = new Map<string, { seq: number; data: string }>()
  let after: string | null = null
  for (;;) {
    const page = await store.rows(name, after, 7)
    for (const r of page) out.set(r.key, { seq: r.seq, data: JSON.stringify(r.data) })
    if (page.length < 7) return out
    after = (page[page.length - 1] as StateRow).key
  }
}

function digestOf(rows: Map<string, { seq: number; data: string }>): DigestLeaf[] {
  const leaves = new Map<number, DigestLeaf>()
  for (const [key, r] of rows) {
    const b = bucketOf(key)
    const l = leaves.get(b) ?? { bucket: b, count: 0, sum: 0n }
    leaves.set(b, { bucket: b, count: l.count + 1, sum: addHash(l.sum, rowHash(key, r.seq, r.data)) })
  }
  return [...leaves.values()].sort((a, b) => a.bucket - b.bucket)
}

export function replicaStoreContract<Tx>(backend: ReplicaBackend<Tx>): void {
  describe(`ReplicaStore contract (${backend.name})`, () => {
    const withHarness = async (fn: (h: ReplicaHarness<Tx>, store: ReplicaStore<Tx>) => Promise<void>): Promise<void> => {
      const h = await backend.open()
      const store = await h.store()
      try {
        await store.claim(FEED, FEED, SOURCE)
        await fn(h, store)
      } finally {
        await store.close()
        await h.close()
      }
    }

    it('bootstraps, keeping the higher seq between snapshot rows and log changes (deletes included), then applies live changes once', () =>
      withHarness(async (h, store) => {
        assert.equal((await store.state(FEED))?.gen, 0)
        await assert.rejects(store.apply(FEED, [up(1, 'a', 1)], 1), { code: 'bad-request' })
        await store.beginBootstrap(FEED, 'e1', 10)
        await store.writeSnapshotChunk(FEED, [{ key: 'a', seq: 8, data: { v: 'a8' } }, { key: 'b', seq: 9, data: { v: 'b9' } }], { afterKey: 'b', readHead: 12, done: false })
        // The log from s0: a newer delete of b, a newer a; then a snapshot row older than the log's b.
        await store.applyToBootstrap(FEED, [del(11, 'b'), up(12, 'a', { v: 'a12' })], 12)
        await store.writeSnapshotChunk(FEED, [{ key: 'b', seq: 9, data: { v: 'b9' } }, { key: 'c', seq: 5, data: { v: 'c5' } }], { afterKey: 'c', readHead: 12, done: true })
        const state = await store.finishBootstrap(FEED, h.hook)
        assert.deepEqual([state.epoch, state.seq, state.keys], ['e1', 12, 2])
        assert.deepEqual([...(await copy(store))], [['a', { seq: 12, data: '{"v":"a12"}' }], ['c', { seq: 5, data: '{"v":"c5"}' }]])
        assert.deepEqual(await h.projection(), new Map([['a', '{"v":"a12"}'], ['c', '{"v":"c5"}']]))
        // Live: the same transaction twice has one effect; a delete of a key never held still reaches the hook.
        const tx = [up(13, 'd', { v: 'd13' }, 14), del(14, 'a', 14)]
        await store.apply(FEED, tx, 14, h.hook)
        const again = await store.apply(FEED, tx, 14, h.hook)
        assert.equal(again.seq, 14)
        await store.apply(FEED, [del(15, 'zz')], 15, h.hook)
        assert.deepEqual([...(await copy(store)).keys()], ['c', 'd'])
        assert.deepEqual(await h.projection(), new Map([['c', '{"v":"c5"}'], ['d', '{"v":"d13"}']]))
        assert.deepEqual((await store.get(FEED, 'd'))?.data, { v: 'd13' })
        assert.equal(await store.get(FEED, 'a'), undefined)
        const { seq, leaves } = await store.digestLeaves(FEED)
        assert.equal(seq, 15)
        assert.deepEqual(leaves, digestOf(await copy(store)))
      }))

    it('keeps the JSON text byte for byte', () =>
      withHarness(async (_h, store) => {
        await store.beginBootstrap(FEED, 'e1', 0)
        await store.writeSnapshotChunk(FEED, [], { afterKey: null, readHead: 0, done: true })
        await store.finishBootstrap(FEED)
        const text = '{"b":1.50,"a":"\\u00e9","n":[1e3]}'
        const change = Object.assign(Object.create({ dataText: text }) as object, up(1, 'k', JSON.parse(text) as Json)) as Change
        await store.apply(FEED, [change], 1)
        assert.equal((await store.get(FEED, 'k') as unknown as { dataText: string }).dataText, text)
        assert.deepEqual((await store.digestLeaves(FEED)).leaves, [{ bucket: bucketOf('k'), count: 1, sum: rowHash('k', 1, text) }])
      }))

    it('rolls everything back when the hook throws, naming seq and key', () =>
      withHarness(async (h, store) => {
        await store.beginBootstrap(FEED, 'e1', 0)
        await store.writeSnapshotChunk(FEED, [], { afterKey: null, readHead: 0, done: true })
        await store.finishBootstrap(FEED, h.hook)
        await store.apply(FEED, [up(1, 'a', 1)], 1, h.hook)
        const error = await store.apply(FEED, [up(2, 'b', 2, 3), up(3, 'bad', 3, 3)], 3, h.failingHook('bad')).then(
          () => assert.fail('applied'),
          (e: unknown) => e as { code: string; seq: number; key: string },
        )
        assert.deepEqual([error.code, error.seq, error.key], ['apply-failed', 3, 'bad'])
        assert.equal((await store.state(FEED))?.seq, 1)
        assert.deepEqual([...(await copy(store)).keys()], ['a'])
        assert.deepEqual(await h.projection(), new Map([['a', '1']]))
      }))

    it('re-bootstraps beside the old copy, readable until the swap; the hook sees exactly the difference; old generations go', () =>
      withHarness(async (h, store) => {
        const seen: Change[] = []
        const watch: ApplyHook<Tx> = (c, tx, context) => {
          seen.push(c)
          return h.hook(c, tx, context)
        }
        await store.beginBootstrap(FEED, 'e1', 3)
        await store.writeSnapshotChunk(FEED, [{ key: 'a', seq: 1, data: 1 }, { key: 'b', seq: 2, data: 2 }, { key: 'c', seq: 3, data: 3 }], { afterKey: 'c', readHead: 3, done: true })
        await store.finishBootstrap(FEED, watch)
        seen.length = 0
        await store.beginBootstrap(FEED, 'e2', 9)
        await store.writeSnapshotChunk(FEED, [{ key: 'a', seq: 1, data: 1 }, { key: 'c', seq: 7, data: 'c7' }, { key: 'd', seq: 8, data: 4 }], { afterKey: 'd', readHead: 9, done: true })
        assert.deepEqual([...(await copy(store)).keys()], ['a', 'b', 'c'], 'the old copy until the swap')
        const state = await store.finishBootstrap(FEED, watch)
        assert.equal(state.epoch, 'e2')
        assert.deepEqual(seen.map((c) => [c.op, c.key]), [['delete', 'b'], ['upsert', 'c'], ['upsert', 'd']])
        assert.deepEqual(await h.projection(), new Map([['a', '1'], ['c', '"c7"'], ['d', '4']]))
        assert.ok((await store.collectGarbage(FEED)) >= 3)
        assert.equal(await store.collectGarbage(FEED), 0)
        assert.deepEqual((await store.digestLeaves(FEED)).leaves, digestOf(await copy(store)))
      }))

    it('claims: one replicator at a time, a rebind only when forced, a released claim free again', () =>
      withHarness(async (h, store) => {
        const other = await h.store()
        try {
          await assert.rejects(other.claim(FEED, FEED, SOURCE), { code: 'conflict' })
          await assert.rejects(other.apply(FEED, [], 0), /claim/)
          await store.release(FEED)
          await assert.rejects(other.claim(FEED, 'elsewhere', SOURCE), /copies feed "customers"/)
          const taken = await other.claim(FEED, 'elsewhere', SOURCE, { force: true })
          assert.equal(taken.feed, 'elsewhere')
          await assert.rejects(store.renew(FEED), { code: 'conflict' })
          await assert.rejects(store.claim('../x', FEED, SOURCE), { code: 'bad-request' })
          assert.deepEqual((await other.list()).map((s) => s.name), [FEED])
        } finally {
          await other.close()
        }
      }))

    it('tracks the source head and since when the replica is behind', () =>
      withHarness(async (_h, store) => {
        await store.beginBootstrap(FEED, 'e1', 0)
        await store.writeSnapshotChunk(FEED, [], { afterKey: null, readHead: 0, done: true })
        await store.finishBootstrap(FEED)
        await store.noteSourceHead(FEED, 5)
        const behind = await store.state(FEED)
        assert.equal(behind?.sourceHead, 5)
        assert.notEqual(behind?.behindSince, null)
        const caught = await store.apply(FEED, [up(5, 'a', 1)], 5)
        assert.equal(caught.behindSince, null)
      }))

    it('after random operations the digest equals one recomputed from the copy, and the projection equals the copy', () =>
      withHarness(async (h, store) => {
        const random = prng(Number(process.env.TIDEMARK_SEED ?? 7))
        let seq = 0
        let epoch = 0
        const bootstrapAt = async () => {
          await store.beginBootstrap(FEED, `e${++epoch}`, seq)
          const rows = [...(await copy(store))].map(([key, r]) => ({ key, seq: r.seq, data: JSON.parse(r.data) as Json }))
          await store.writeSnapshotChunk(FEED, rows.filter(() => random() < 0.8), { afterKey: null, readHead: seq, done: true })
          await store.finishBootstrap(FEED, h.hook)
        }
        await bootstrapAt()
        for (let t = 0; t < 40; t++) {
          if (random() < 0.1) {
            await bootstrapAt()
            continue
          }
          const n = 1 + Math.floor(random() * 4)
          const tx: Change[] = []
          for (let i = 0; i < n; i++) {
            seq++
            const key = `k${Math.floor(random() * 15)}`
            tx.push(random() < 0.3 ? del(seq, key, seq) : up(seq, key, { t, i }, seq))
          }
          for (const c of tx) c.tx = seq
          await store.apply(FEED, tx, seq, h.hook)
        }
        const rows = await copy(store)
        assert.deepEqual((await store.digestLeaves(FEED)).leaves, digestOf(rows))
        assert.deepEqual(await h.projection(), new Map([...rows].map(([k, r]) => [k, r.data])))
        assert.equal((await store.state(FEED))?.keys, rows.size)
      }))
  })
}
