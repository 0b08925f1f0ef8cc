import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { addHash, bucketOf, rowHash } from '../../../src/digest/row-hash.js'
import type { Change, Json, StateRow } from '../../../src/protocol/types.js'
import type { ApplyHook, ReplicaStore } from '../../../src/store/replica-store.js'
import type { DigestLeaf } from '../../../src/store/store.js'
import { prng } from '../../../src/util/prng.js'
import { compareKeys } from '../../../src/protocol/key-order.js'
import { spawn } from 'node:child_process'
import { hostname } from 'node:os'

/**
 * The ReplicaStore contract, run against every backend (test/store/*replica-store*.test.ts). A
 * backend gives fresh stores over one database (two of them: two replicator processes) and a
 * projection: a hook writing the consumer's own table in the apply transaction, and a way to read
 * that table back.
 */
export interface ReplicaHarness<Tx> {
  /** A store over the harness's database; each call is another "process". */
  store(options?: { clock?: () => number }): Promise<ReplicaStore<Tx>>
  /** Records another holder's claim in the replica's row, as a replicator elsewhere would have. */
  setOwner(name: string, owner: { id: string; pid: number; host: string; expires: number }): Promise<void>
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
const row = (key: string, seq: number, data: Json): StateRow => ({ key, seq, data })

/** Bootstraps `rows` at s0 and finishes. */
async function bootstrap<Tx>(store: ReplicaStore<Tx>, rows: StateRow[], s0: number, hook?: ApplyHook<Tx>, name = FEED) {
  await store.beginBootstrap(name, 'epoch-1', s0)
  await store.writeSnapshotChunk(name, rows, { afterKey: rows.at(-1)?.key ?? null, readHead: s0, done: true })
  return store.finishBootstrap(name, hook)
}

/** The copy as [key, seq, data] in the order `rows` pages it. */
export async function listed<Tx>(store: ReplicaStore<Tx>, name = FEED): Promise<Array<[string, number, Json | undefined]>> {
  const out: Array<[string, number, Json | undefined]> = []
  let after: string | null = null
  for (;;) {
    const page = await store.rows(name, after, 3)
    for (const r of page) out.push([r.key, r.seq, r.data])
    if (page.length < 3) return out
    after = (page[page.length - 1] as StateRow).key
  }
}

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

    it('refuses to make an incomplete bootstrap current: the snapshot all copied, the log applied up to every chunk\'s read head', () =>
      withHarness(async (_h, store) => {
        await store.beginBootstrap(FEED, 'e', 5)
        await store.writeSnapshotChunk(FEED, [row('a', 1, 1)], { afterKey: 'a', readHead: 5, done: false })
        await assert.rejects(store.finishBootstrap(FEED), { code: 'bad-request', message: /not complete \(snapshot copied up to key "a"/ })
        await store.writeSnapshotChunk(FEED, [], { afterKey: 'a', readHead: 8, done: true })
        await assert.rejects(store.finishBootstrap(FEED), /log applied to 5 of at least 8/)
        await store.applyToBootstrap(FEED, [], 8)
        assert.equal((await store.finishBootstrap(FEED)).seq, 8)
      }))

    it('keeps the higher seq between snapshot rows and log changes in any order, deletes as tombstones until the swap', () =>
      withHarness(async (_h, store) => {
        await store.beginBootstrap(FEED, 'e', 10)
        // The log arrives before the snapshot's (older) rows of the same keys.
        await store.applyToBootstrap(FEED, [up(11, 'a', 'log'), del(12, 'b'), up(13, 'x', 'x'), del(14, 'x')], 14)
        await store.writeSnapshotChunk(FEED, [row('a', 5, 'snap'), row('b', 6, 'snap'), row('c', 7, 'snap'), row('d', 15, 'snap'), row('x', 3, 'snap')], {
          afterKey: 'x',
          readHead: 15,
          done: true,
        })
        // And the log goes on: an older delete does not remove the newer snapshot row.
        await store.applyToBootstrap(FEED, [up(15, 'd', 'log15'), del(16, 'c')], 16)
        await store.applyToBootstrap(FEED, [del(15, 'd')], 16)
        await assert.rejects(store.applyToBootstrap(FEED, [up(18, 'e', 1)], 17), { code: 'bad-request', message: /above the position 17/ })
        const state = await store.finishBootstrap(FEED)
        assert.deepEqual(await listed(store), [['a', 11, 'log'], ['d', 15, 'snap']])
        assert.equal(state.keys, 2)
        assert.deepEqual((await store.digestLeaves(FEED)).leaves, digestOf(await copy(store)))
      }))

    it('applies live changes once: the same changes twice are one effect and one hook call; an overlapping batch applies what is above the checkpoint', () =>
      withHarness(async (h, store) => {
        await bootstrap(store, [row('a', 1, 1)], 1, h.hook)
        const calls: number[] = []
        const hook: ApplyHook<Tx> = (c, tx, context) => {
          calls.push(c.seq)
          return h.hook(c, tx, context)
        }
        const batch = [up(2, 'b', 'b', 3), up(3, 'a', 'a3', 3), del(4, 'b'), up(5, 'c', { c: 1 })]
        const s1 = await store.apply(FEED, batch, 5, hook)
        const s2 = await store.apply(FEED, batch, 5, hook)
        const s3 = await store.apply(FEED, batch.slice(2), 5, hook)
        assert.deepEqual(calls, [2, 3, 4, 5])
        assert.deepEqual([s1.seq, s1.keys], [5, 2])
        assert.deepEqual(s2, s1)
        assert.deepEqual(s3, s1)
        assert.deepEqual(await listed(store), [['a', 3, 'a3'], ['c', 5, { c: 1 }]])
        assert.deepEqual(await h.projection(), new Map([['a', '"a3"'], ['c', '{"c":1}']]))
        await store.apply(FEED, [up(5, 'c', 'stale'), up(6, 'd', 'd')], 6, hook)
        assert.deepEqual(calls, [2, 3, 4, 5, 6])
        assert.deepEqual((await store.get(FEED, 'c'))?.data, { c: 1 })
        const digest = await store.digestLeaves(FEED)
        assert.equal(digest.seq, 6)
        assert.deepEqual(digest.leaves, digestOf(await copy(store)))
      }))

    it('rolls the swap back when the hook throws in finishBootstrap: the old copy stays current, the bootstrap can finish later', () =>
      withHarness(async (h, store) => {
        await bootstrap(store, [row('a', 1, 1)], 1, h.hook)
        await store.beginBootstrap(FEED, 'e2', 3)
        await store.writeSnapshotChunk(FEED, [row('b', 3, 3)], { afterKey: 'b', readHead: 3, done: true })
        const error = await store.finishBootstrap(FEED, h.failingHook('b')).then(
          () => assert.fail('swapped'),
          (e: unknown) => e as { code: string; seq: number; key: string },
        )
        assert.deepEqual([error.code, error.seq, error.key], ['apply-failed', 3, 'b'])
        const state = await store.state(FEED)
        assert.deepEqual([state?.gen, state?.epoch, state?.bootstrap?.epoch], [1, 'epoch-1', 'e2'])
        assert.deepEqual(await listed(store), [['a', 1, 1]])
        assert.deepEqual(await h.projection(), new Map([['a', '1']]))
        const done = await store.finishBootstrap(FEED, h.hook)
        assert.deepEqual([done.epoch, done.seq], ['e2', 3])
        assert.deepEqual(await h.projection(), new Map([['b', '3']]))
      }))

    it('resumes a bootstrap after the store is closed and reopened, where its last committed chunk left it', () =>
      withHarness(async (h, store) => {
        await store.release(FEED)
        const first = await h.store()
        await first.claim(FEED, FEED, SOURCE)
        const p = await first.beginBootstrap(FEED, 'e', 5)
        await first.writeSnapshotChunk(FEED, [row('a', 1, 1), row('b', 2, 2)], { afterKey: 'b', readHead: 6, done: false })
        await first.applyToBootstrap(FEED, [up(6, 'a', 'a6')], 6)
        await first.close()
        const second = await h.store()
        try {
          await second.claim(FEED, FEED, SOURCE)
          const state = await second.state(FEED)
          assert.deepEqual({ ...state?.bootstrap, startedAt: 0 }, { gen: p.gen, epoch: 'e', s0: 5, afterKey: 'b', snapshotDone: false, readHead: 6, seq: 6, startedAt: 0 })
          await second.writeSnapshotChunk(FEED, [row('c', 3, 3)], { afterKey: 'c', readHead: 6, done: true })
          const done = await second.finishBootstrap(FEED)
          assert.deepEqual([done.seq, done.keys], [6, 3])
          assert.deepEqual(await listed(second), [['a', 6, 'a6'], ['b', 2, 2], ['c', 3, 3]])
          assert.deepEqual((await second.digestLeaves(FEED)).leaves, digestOf(await copy(second)))
        } finally {
          await second.close()
        }
      }))

    it('walks keys in UTF-8 byte order (compareKeys) when listing and when diffing two generations', () =>
      withHarness(async (_h, store) => {
        const keys = ['a', 'z', '\u{e000}', '\u{fffd}', '\u{1f600}', '\u{10000}', 'é', 'ab']
        const sorted = [...keys].sort(compareKeys)
        const before = keys.filter((_, i) => i % 2 === 0)
        const after = keys.filter((_, i) => i % 3 === 0)
        await bootstrap(store, before.sort(compareKeys).map((k) => row(k, 1, 'old')), 1)
        assert.deepEqual((await listed(store)).map(([k]) => k), [...before].sort(compareKeys))
        const seen: string[] = []
        await bootstrap(store, after.sort(compareKeys).map((k) => row(k, 1, 'old')), 2, (c) => void seen.push(`${c.op} ${c.key}`))
        const was = new Set(before)
        const now = new Set(after)
        const expected = sorted.flatMap((k) => (was.has(k) && !now.has(k) ? [`delete ${k}`] : !was.has(k) && now.has(k) ? [`upsert ${k}`] : []))
        assert.deepEqual(seen, expected)
      }))

    it('holds several replicas in one store, each claimed, bootstrapped and read under its own name', () =>
      withHarness(async (_h, store) => {
        await store.claim('a', 'customers', SOURCE)
        await store.claim('b', 'orders', SOURCE)
        await bootstrap(store, [row('k', 1, 'customer')], 1, undefined, 'a')
        await bootstrap(store, [row('k', 1, 'order')], 1, undefined, 'b')
        await store.apply('b', [up(2, 'j', 'order j')], 2)
        assert.deepEqual((await store.list()).map((s) => [s.name, s.feed, s.keys, s.seq]), [['a', 'customers', 1, 1], ['b', 'orders', 2, 2], [FEED, FEED, 0, 0]])
        assert.deepEqual((await store.get('b', 'k'))?.data, 'order')
        assert.deepEqual((await store.get('a', 'k'))?.data, 'customer')
        assert.equal(await store.get('a', 'j'), undefined)
        await assert.rejects(store.get('nope', 'k'), { code: 'bad-request', message: /no replica "nope"/ })
      }))

    describe('claims', () => {
      it('refuses a second replicator while the first holds the replica, and lets it in once released', () =>
        withHarness(async (h, first) => {
          const second = await h.store()
          try {
            await assert.rejects(second.claim(FEED, FEED, SOURCE), {
              code: 'conflict',
              message: new RegExp(`replica "customers" in .* is being replicated by pid ${process.pid} on host .* \\(lease until .*\\): stop it first`),
            })
            // Writing without a claim is refused as well.
            await assert.rejects(second.beginBootstrap(FEED, 'e', 0), { code: 'conflict', message: /not claimed/ })
            await first.release(FEED)
            await second.claim(FEED, FEED, SOURCE)
            await assert.rejects(first.beginBootstrap(FEED, 'e', 0), { code: 'conflict', message: /not claimed/ })
          } finally {
            await second.close()
          }
        }))

      it('refuses while another live process on this host holds the lease, and takes over at once when it is gone', () =>
        withHarness(async (h, store) => {
          await store.release(FEED)
          const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
          try {
            await h.setOwner(FEED, { id: 'other', pid: child.pid as number, host: hostname(), expires: Date.now() + 60_000 })
            await assert.rejects(store.claim(FEED, FEED, SOURCE), { code: 'conflict', message: new RegExp(`pid ${child.pid} on host`) })
            child.kill('SIGKILL')
            await new Promise((resolve) => child.once('exit', resolve))
            // Its process is gone: taken over at once, lease or not; and this store writes again.
            await store.claim(FEED, FEED, SOURCE)
            await bootstrap(store, [row('a', 1, 1)], 1)
          } finally {
            child.kill('SIGKILL')
          }
        }))

      it('waits for the lease of another host to run out, then takes over', () =>
        withHarness(async (h, first) => {
          await first.release(FEED)
          let now = 10_000
          const store = await h.store({ clock: () => now })
          try {
            await h.setOwner(FEED, { id: 'other', pid: 1, host: 'elsewhere', expires: now + 5000 })
            await assert.rejects(store.claim(FEED, FEED, SOURCE), { code: 'conflict', message: /pid 1 on host elsewhere/ })
            now += 4999
            await assert.rejects(store.claim(FEED, FEED, SOURCE), { code: 'conflict' })
            now += 1
            await store.claim(FEED, FEED, SOURCE)
          } finally {
            await store.close()
          }
        }))

      it('renews; a replicator that lost its claim stops writing, and closing it leaves the new holder alone', () =>
        withHarness(async (h, initial) => {
          await initial.release(FEED)
          let now = 0
          const first = await h.store({ clock: () => now })
          const second = await h.store({ clock: () => now })
          try {
            await first.claim(FEED, FEED, SOURCE, { leaseMs: 1000 })
            await bootstrap(first, [row('a', 1, 1)], 1)
            now = 900
            await first.renew(FEED)
            now = 1800
            await assert.rejects(second.claim(FEED, FEED, SOURCE), { code: 'conflict', message: /being replicated/ })
            now = 1901
            await second.claim(FEED, FEED, SOURCE)
            await assert.rejects(first.apply(FEED, [up(2, 'b', 2)], 2), { code: 'conflict', message: /lost the claim on replica "customers".*pid \d+ on host/ })
            await assert.rejects(first.renew(FEED), { code: 'conflict', message: /lost the claim/ })
            await assert.rejects(first.noteSourceHead(FEED, 9), { code: 'conflict', message: /lost the claim/ })
            assert.equal((await second.apply(FEED, [up(2, 'b', 2)], 2)).seq, 2)
          } finally {
            await first.close()
          }
          try {
            // Closing the first did not release the second's claim.
            assert.equal((await second.apply(FEED, [up(3, 'c', 3)], 3)).seq, 3)
          } finally {
            await second.close()
          }
        }))

      it('refuses another feed or source unless forced; forcing rebinds to an empty copy, and the hook moves the projection from the old one', () =>
        withHarness(async (h, store) => {
          await bootstrap(store, [row('a', 1, 1), row('b', 1, 2)], 1, h.hook)
          await bootstrap(store, [row('a', 1, 1), row('b', 1, 2)], 1, h.hook)
          await assert.rejects(store.claim(FEED, 'orders', SOURCE), {
            code: 'conflict',
            message: /copies feed "customers" from http:\/\/source\.test, not feed "orders" from http:\/\/source\.test/,
          })
          await assert.rejects(store.claim(FEED, FEED, 'http://other.test'), /not feed "customers" from http:\/\/other\.test/)
          const rebound = await store.claim(FEED, FEED, 'http://other.test', { force: true })
          assert.equal(rebound.source, 'http://other.test')
          assert.deepEqual([rebound.epoch, rebound.seq, rebound.gen, rebound.keys, rebound.bootstrap], [null, 0, 0, 0, null])
          assert.deepEqual(await store.rows(FEED, null, 10), [])
          await assert.rejects(store.apply(FEED, [up(1, 'x', 1)], 1), /no copy yet/)
          // The generation the consumer's tables reflect stays for the next swap's diff; the older one goes.
          assert.equal(await store.collectGarbage(FEED), 2)
          await store.claim(FEED, FEED, 'http://third.test', { force: true })
          const seen: string[] = []
          const state = await bootstrap(store, [row('b', 7, 2), row('c', 8, 3)], 9, (c, tx, context) => {
            seen.push(`${c.op} ${c.key}`)
            return h.hook(c, tx, context)
          })
          assert.deepEqual(seen, ['delete a', 'upsert b', 'upsert c'])
          assert.deepEqual([state.seq, state.gen], [9, 3])
          assert.deepEqual(await listed(store), [['b', 7, 2], ['c', 8, 3]])
          assert.deepEqual(await h.projection(), new Map([['b', '2'], ['c', '3']]))
          assert.equal(await store.collectGarbage(FEED), 2)
          assert.deepEqual((await store.digestLeaves(FEED)).leaves, digestOf(await copy(store)))
        }))
    })
  })
}
