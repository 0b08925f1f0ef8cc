import assert from 'node:assert/strict'
import BetterSqlite3, { type Database } from 'better-sqlite3'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { addHash, bucketOf, rowHash, rowHashHex } from '../../src/digest/row-hash.js'
import { ApplyFailedError, BadRequestError, NotAStoreError } from '../../src/errors.js'
import { StoredChange, StoredRow } from '../../src/protocol/encoded.js'
import type { Change, Json, StateRow } from '../../src/protocol/types.js'
import type { DigestLeaf } from '../../src/store/store.js'
import { compareKeys as compareUtf8 } from '../../src/protocol/key-order.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { propertyParameters } from '../helpers/property.js'
import { tmpDb, tmpDir } from '../helpers/tmp.js'
import { listed, replicaStoreContract } from './contract/replica-store-contract.js'

const FEED = 'customers'
const SOURCE = 'http://source.test'

function up(seq: number, key: string, data: Json, tx = seq): Change {
  return { seq, key, op: 'upsert', data, tx, ts: 1 }
}

function del(seq: number, key: string, tx = seq): Change {
  return { seq, key, op: 'delete', tx, ts: 1 }
}

function row(key: string, seq: number, data: Json): StateRow {
  return { key, seq, data }
}

async function claimed(path = tmpDb('replica.db'), name = FEED): Promise<SqliteReplicaStore> {
  const store = SqliteReplicaStore.open(path)
  await store.claim(name, FEED, SOURCE)
  return store
}

/** Bootstraps `rows` at s0 and finishes. */
async function bootstrap(store: SqliteReplicaStore, rows: StateRow[], s0: number, hook?: (c: Change, db: Database) => void, name = FEED) {
  await store.beginBootstrap(name, 'epoch-1', s0)
  await store.writeSnapshotChunk(name, rows, { afterKey: rows.at(-1)?.key ?? null, readHead: s0, done: true })
  return store.finishBootstrap(name, hook)
}

function bucketIndexes(db: Database): string[] {
  return db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'index' AND name LIKE 'tidemark_replica_rows_bucket%' ORDER BY name`).pluck().all() as string[]
}

const allRows = listed

/** The digest recomputed from the current generation's rows, as the port returns it. */
function recomputed(db: Database, name = FEED): DigestLeaf[] {
  const leaves = new Map<number, DigestLeaf>()
  const rows = db.prepare('SELECT key, seq, data FROM tidemark_replica_current WHERE name = ?').all(name) as Array<{ key: string; seq: number; data: string }>
  for (const r of rows) {
    const b = bucketOf(r.key)
    const leaf = leaves.get(b) ?? { bucket: b, count: 0, sum: 0n }
    leaf.count += 1
    leaf.sum = addHash(leaf.sum, rowHash(r.key, r.seq, r.data))
    leaves.set(b, leaf)
  }
  return [...leaves.values()].sort((a, b) => a.bucket - b.bucket)
}

async function rejectsWith<T extends Error>(p: Promise<unknown>, cls: new (...args: never[]) => T, match?: RegExp): Promise<T> {
  let caught: unknown
  try {
    await p
  } catch (error) {
    caught = error
  }
  assert.ok(caught instanceof cls, `expected ${cls.name}, got ${String(caught)}`)
  if (match) assert.match((caught as Error).message, match)
  return caught as T
}

describe('SqliteReplicaStore', () => {
  it('bootstraps into an empty replica: state, rows, digest (equal to the source’s own)', async () => {
    const source = SqliteSourceStore.open(tmpDb('source.db'))
    await source.ensureFeed(FEED)
    await source.write(FEED, [
      { op: 'upsert', key: 'a', data: { n: 1, s: 'é' } },
      { op: 'upsert', key: 'b', data: [1, 2.5, null] },
      { op: 'upsert', key: 'c', data: 'x' },
    ])
    await source.write(FEED, [{ op: 'delete', key: 'c' }, { op: 'upsert', key: 'd', data: { z: true } }])
    const snap = await source.snapshot(FEED, null, 100)

    const store = await claimed()
    const fresh = await store.state(FEED)
    assert.equal(fresh?.gen, 0)
    assert.equal(fresh?.epoch, null)
    const p = await store.beginBootstrap(FEED, 'epoch-1', snap.head)
    assert.deepEqual({ ...p, startedAt: 0 }, { gen: 1, epoch: 'epoch-1', s0: 5, afterKey: null, snapshotDone: false, readHead: 5, seq: 5, startedAt: 0 })
    await store.writeSnapshotChunk(FEED, snap.rows, { afterKey: snap.last, readHead: snap.head, done: snap.done })
    // Not current yet: the copy is still empty.
    assert.deepEqual(await store.rows(FEED, null, 10), [])
    const state = await store.finishBootstrap(FEED)
    assert.equal(state.gen, 1)
    assert.equal(state.epoch, 'epoch-1')
    assert.equal(state.seq, 5)
    assert.equal(state.keys, 3)
    assert.equal(state.bootstrap, null)
    assert.equal(state.sourceHead, 5)
    assert.equal(state.behindSince, null)
    assert.deepEqual(await allRows(store), [
      ['a', 1, { n: 1, s: 'é' }],
      ['b', 2, [1, 2.5, null]],
      ['d', 5, { z: true }],
    ])
    const got = await store.get(FEED, 'b')
    assert.ok(got instanceof StoredRow)
    assert.equal((got as StoredRow).dataText, '[1,2.5,null]')
    assert.equal(await store.get(FEED, 'c'), undefined)

    await source.maintain()
    const mine = await store.digestLeaves(FEED)
    assert.deepEqual(mine, await source.digestLeaves(FEED))
    assert.deepEqual(mine.leaves, recomputed(store.db))
    // A consumer reads its copy with plain SQL.
    assert.equal(store.db.prepare(`SELECT data ->> '$.s' FROM tidemark_replica_current WHERE name = ? AND key = 'a'`).pluck().get(FEED), 'é')
    await store.close()
    await source.close()
  })

  it('keeps the stored JSON text byte for byte, and hashes that text', async () => {
    const store = await claimed()
    const text = '{"b":1,  "a":[1.50]}'
    await store.beginBootstrap(FEED, 'e', 1)
    await store.writeSnapshotChunk(FEED, [new StoredRow('k', 1, text)], { afterKey: 'k', readHead: 1, done: true })
    await store.applyToBootstrap(FEED, [new StoredChange(2, 'j', 'upsert', 2, 1, '{ "x" : 1 }')], 2)
    await store.finishBootstrap(FEED)
    await store.apply(FEED, [new StoredChange(3, 'i', 'upsert', 3, 1, '[ 3 ]')], 3)
    const texts = store.db.prepare('SELECT key, data FROM tidemark_replica_current WHERE name = ? ORDER BY key').all(FEED)
    assert.deepEqual(texts, [
      { key: 'i', data: '[ 3 ]' },
      { key: 'j', data: '{ "x" : 1 }' },
      { key: 'k', data: text },
    ])
    assert.deepEqual((await store.digestLeaves(FEED)).leaves, recomputed(store.db))
    await store.close()
  })

  it('re-bootstraps beside the old copy, which stays readable until the swap; the hook sees exactly the difference', async () => {
    const store = await claimed()
    await bootstrap(store, [row('a', 1, 1), row('b', 2, 2), row('c', 3, 3), row('e', 4, 4)], 4)
    await store.beginBootstrap(FEED, 'epoch-2', 10)
    await store.writeSnapshotChunk(FEED, [row('a', 1, 1), row('b', 7, 'new')], { afterKey: 'b', readHead: 9, done: false })
    assert.deepEqual(await allRows(store), [['a', 1, 1], ['b', 2, 2], ['c', 3, 3], ['e', 4, 4]])
    await store.writeSnapshotChunk(FEED, [row('d', 8, 'd'), row('e', 4, 4)], { afterKey: 'e', readHead: 10, done: true })
    await store.applyToBootstrap(FEED, [up(11, 'f', 'f'), del(12, 'a')], 12)
    assert.equal((await store.state(FEED))?.seq, 4)
    assert.deepEqual(await allRows(store), [['a', 1, 1], ['b', 2, 2], ['c', 3, 3], ['e', 4, 4]])

    const seen: Array<[number, string, string, Json | undefined, number]> = []
    const state = await store.finishBootstrap(FEED, (c) => {
      seen.push([c.seq, c.key, c.op, c.data, c.tx])
    })
    assert.deepEqual(seen, [
      [12, 'a', 'delete', undefined, 12],
      [7, 'b', 'upsert', 'new', 12],
      [12, 'c', 'delete', undefined, 12],
      [8, 'd', 'upsert', 'd', 12],
      [11, 'f', 'upsert', 'f', 12],
    ])
    assert.equal(state.seq, 12)
    assert.equal(state.epoch, 'epoch-2')
    assert.equal(state.gen, 2)
    assert.equal(state.keys, 4)
    assert.deepEqual(await allRows(store), [['b', 7, 'new'], ['d', 8, 'd'], ['e', 4, 4], ['f', 11, 'f']])
    assert.deepEqual((await store.digestLeaves(FEED)).leaves, recomputed(store.db))
    await store.close()
  })

  it('sorts keys as compareKeys does (UTF-8 bytes), which the diff and the listings rely on (the contract checks them)', () => {
    const keys = ['a', 'z', '\u{e000}', '\u{fffd}', '\u{1f600}', '\u{10000}', 'é', 'ab']
    const db = new BetterSqlite3(':memory:')
    db.exec('CREATE TABLE t (k TEXT PRIMARY KEY)')
    for (const k of keys) db.prepare('INSERT INTO t VALUES (?)').run(k)
    assert.deepEqual([...keys].sort(compareUtf8), db.prepare('SELECT k FROM t ORDER BY k').pluck().all())
    db.close()
  })

  it('writes large snapshot chunks in batches, comparing only the keys already there', async () => {
    const store = await claimed()
    await store.beginBootstrap(FEED, 'e', 1000)
    // The log got there first for some keys: newer for k010 and k120 (kept), deleted k130 (kept deleted).
    await store.applyToBootstrap(FEED, [up(1001, 'k010', 'log'), up(1002, 'k120', 'log'), del(1003, 'k130'), up(1004, 'k005', 'log')], 1004)
    const rows: StateRow[] = []
    for (let i = 0; i < 250; i++) rows.push(row(`k${String(i).padStart(3, '0')}`, i + 1, { i }))
    // Older than the log's k005, and a key twice in one batch (the later, newer copy wins).
    rows.splice(60, 0, row('k050', 999, 'again'))
    rows.push({ key: 'k249', seq: 1, deleted: true })
    await store.writeSnapshotChunk(FEED, rows, { afterKey: 'k249', readHead: 1004, done: true })
    const state = await store.finishBootstrap(FEED)
    const got = new Map((await allRows(store)).map(([k, s, d]) => [k, [s, d]]))
    assert.equal(got.size, 249)
    assert.deepEqual(got.get('k005'), [1004, 'log'])
    assert.deepEqual(got.get('k010'), [1001, 'log'])
    assert.deepEqual(got.get('k120'), [1002, 'log'])
    assert.equal(got.has('k130'), false)
    assert.deepEqual(got.get('k050'), [999, 'again'])
    assert.deepEqual(got.get('k249'), [250, { i: 249 }])
    assert.deepEqual(got.get('k200'), [201, { i: 200 }])
    assert.equal(state.keys, got.size)
    assert.deepEqual((await store.digestLeaves(FEED)).leaves, recomputed(store.db))
    await store.close()
  })

  it('folds the digest log into the leaves once it has grown, counting what an earlier process left', async () => {
    const path = tmpDb('replica.db')
    const first = await claimed(path)
    await bootstrap(first, Array.from({ length: 40 }, (_, i) => row(`k${i}`, 1, i)), 1)
    await first.close()
    const logged = (db: Database) => db.prepare('SELECT count(*) FROM tidemark_replica_digest_log').pluck().get()
    const second = SqliteReplicaStore.open(path, { digestFoldAt: 30 })
    await second.claim(FEED, FEED, SOURCE)
    assert.equal(logged(second.db), 1)
    const before = await second.digestLeaves(FEED)
    await second.apply(FEED, [up(2, 'k1', 'x')], 2)
    assert.equal(logged(second.db), 0)
    const after = await second.digestLeaves(FEED)
    assert.deepEqual(after.leaves, recomputed(second.db))
    assert.notDeepEqual(after.leaves, before.leaves)
    await second.close()
  })

  it('hashes rows exactly as the digest module defines it', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.nat(), fc.string(), (key, seq, text) => {
        assert.equal(BigInt(`0x${rowHashHex(key, seq, text)}`), rowHash(key, seq, text))
      }),
    )
  })

  it('rolls everything back when the hook throws, naming seq and key', async () => {
    const store = await claimed()
    await bootstrap(store, [row('a', 1, 1)], 1)
    store.db.exec('CREATE TABLE projection (key TEXT PRIMARY KEY)')
    const before = await store.state(FEED)
    const digest = await store.digestLeaves(FEED)
    const boom = new Error('projection broke')
    const error = await rejectsWith(
      store.apply(FEED, [up(2, 'b', 2, 3), up(3, 'c', 3)], 3, (c, db) => {
        db.prepare('INSERT INTO projection VALUES (?)').run(c.key)
        if (c.key === 'c') throw boom
      }),
      ApplyFailedError,
      /change 3 \(key "c"\): projection broke/,
    )
    assert.equal(error.seq, 3)
    assert.equal(error.key, 'c')
    assert.equal(error.cause, boom)
    assert.deepEqual(await store.state(FEED), before)
    assert.deepEqual(await store.digestLeaves(FEED), digest)
    assert.deepEqual(await allRows(store), [['a', 1, 1]])
    assert.equal(store.db.prepare('SELECT count(*) FROM projection').pluck().get(), 0)

    // An async hook cannot run inside the transaction: refused, rolled back too.
    await rejectsWith(
      store.apply(FEED, [up(2, 'b', 2)], 2, async () => {}),
      ApplyFailedError,
      /must be synchronous/,
    )
    assert.deepEqual(await store.state(FEED), before)
    await store.close()
  })

  it('tracks the source head and since when the replica is behind', async () => {
    let now = 1000
    const store = SqliteReplicaStore.open(tmpDb('replica.db'), { clock: () => now })
    await store.claim(FEED, FEED, SOURCE)
    await bootstrap(store, [], 2)
    await store.noteSourceHead(FEED, 2)
    assert.equal((await store.state(FEED))?.behindSince, null)
    now = 2000
    await store.noteSourceHead(FEED, 5)
    now = 3000
    await store.noteSourceHead(FEED, 4)
    let state = await store.state(FEED)
    assert.deepEqual([state?.sourceHead, state?.sourceHeadAt, state?.behindSince], [5, 3000, 2000])
    now = 4000
    state = await store.apply(FEED, [up(3, 'a', 1)], 3)
    assert.deepEqual([state.seq, state.appliedAt, state.behindSince], [3, 4000, 2000])
    state = await store.apply(FEED, [up(4, 'b', 1, 5), up(5, 'a', 2)], 5)
    assert.deepEqual([state.seq, state.sourceHead, state.behindSince], [5, 5, null])
    now = 5000
    state = await store.apply(FEED, [up(6, 'c', 1)], 6)
    assert.deepEqual([state.sourceHead, state.behindSince], [6, null])
    await store.close()
  })

  it('keeps the digest equal to one recomputed from the rows, and the hook’s projection equal to the copy, after any operations', async () => {
    const keyArb = fc.constantFrom('a', 'b', 'c', 'd', 'é', '\u{1f600}')
    const bootstrapArb = fc.record({
      rows: fc.array(fc.tuple(keyArb, fc.integer({ min: 0, max: 3 })), { maxLength: 6 }),
      log: fc.array(fc.tuple(keyArb, fc.option(fc.integer({ min: 0, max: 3 }))), { maxLength: 4 }),
      hook: fc.boolean(),
    })
    const opArb = fc.oneof(
      // Without a hook, apply writes only each key's newest version (writeNewest); with one, every
      // change in order. `again` delivers the last few changes once more, as a redelivery would.
      fc.record({
        kind: fc.constant('apply' as const),
        ops: fc.array(fc.tuple(keyArb, fc.option(fc.integer({ min: 0, max: 3 }))), { maxLength: 8 }),
        hook: fc.boolean(),
        again: fc.nat({ max: 3 }),
      }),
      fc.record({ kind: fc.constant('bootstrap' as const), bootstrap: bootstrapArb }),
      // Rebound to another source: the copy empties, and the next bootstrap's hook diff starts from the old one.
      fc.record({ kind: fc.constant('rebind' as const), gc: fc.boolean(), bootstrap: bootstrapArb }),
      fc.record({ kind: fc.constant('gc' as const) }),
    )
    type Copy = Map<string, [number, string]>
    const path = join(tmpDir(), 'replica.db')
    let run = 0
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { maxLength: 8 }), async (ops) => {
        const name = `r${run++}`
        // Fold the digest's log into its leaves often, so that both halves of the digest are exercised.
        const store = SqliteReplicaStore.open(path, { digestFoldAt: 1 + (run % 7) })
        await store.claim(name, FEED, SOURCE)
        // A model of the copy (key → [seq, data]), and the consumer's table that the hooks keep.
        let model: Copy = new Map()
        const projection: Copy = new Map()
        let projectionKept = true
        let hasCopy = false
        const hook = (c: Change) => {
          if (c.op === 'delete') projection.delete(c.key)
          else projection.set(c.key, [c.seq, JSON.stringify(c.data)])
        }
        let seq = 0
        let lastApplied: Change[] = []
        // As at a real source, one (key, seq) is one version: the same data wherever it shows up.
        const versions = new Map<string, Json>()
        const dataAt = (key: string, s: number, v: number): Json => {
          const id = `${key}@${s}`
          if (!versions.has(id)) versions.set(id, { v })
          return versions.get(id) as Json
        }
        const bootstrap = async (op: { rows: Array<[string, number]>; log: Array<[string, number | null]>; hook: boolean }) => {
          // Snapshot rows at seqs at or below s0 (unique keys, key order), then a log above s0.
          const s0 = seq + 1
          seq = s0
          const rows = [...new Map(op.rows.map(([k, v]) => [k, v])).entries()]
            .sort(([a], [b]) => compareUtf8(a, b))
            .map(([key, v], i) => row(key, 1 + (i % s0), dataAt(key, 1 + (i % s0), v)))
          const log = op.log.map(([key, v]) => (++seq, v === null ? del(seq, key) : up(seq, key, dataAt(key, seq, v))))
          await store.beginBootstrap(name, `e${s0}`, s0)
          await store.applyToBootstrap(name, log.slice(0, 2), log.slice(0, 2).at(-1)?.seq ?? s0)
          await store.writeSnapshotChunk(name, rows, { afterKey: null, readHead: s0, done: true })
          await store.applyToBootstrap(name, log, seq)
          const next: Copy = new Map(rows.map((r) => [r.key, [r.seq, JSON.stringify(r.data)]]))
          for (const c of log) {
            if (c.op === 'delete') next.delete(c.key)
            else next.set(c.key, [c.seq, JSON.stringify(c.data)])
          }
          await store.finishBootstrap(name, op.hook ? hook : undefined)
          model = next
          if (!op.hook) projectionKept = false
          hasCopy = true
        }
        try {
          for (const op of ops) {
            if (op.kind === 'apply') {
              if (!hasCopy) {
                await rejectsWith(store.apply(name, [up(seq + 1, 'a', 1)], seq + 1, hook), BadRequestError, /has no copy yet: bootstrap it/)
                continue
              }
              const changes = op.ops.map(([key, v]) => (++seq, v === null ? del(seq, key, seq) : up(seq, key, dataAt(key, seq, v), seq)))
              await store.apply(name, [...lastApplied.slice(-op.again), ...changes], seq, op.hook ? hook : undefined)
              if (!op.hook) projectionKept = false
              lastApplied = changes
              for (const c of changes) {
                if (c.op === 'delete') model.delete(c.key)
                else model.set(c.key, [c.seq, JSON.stringify(c.data)])
              }
            } else if (op.kind === 'bootstrap') {
              await bootstrap(op.bootstrap)
            } else if (op.kind === 'rebind') {
              const state = await store.claim(name, FEED, `${SOURCE}/${seq}`, { force: true })
              assert.deepEqual([state.gen, state.keys, state.seq], [0, 0, 0])
              assert.deepEqual(await store.rows(name, null, 10), [])
              hasCopy = false
              if (op.gc) await store.collectGarbage(name)
              await bootstrap(op.bootstrap)
            } else {
              await store.collectGarbage(name)
            }
            const digest = await store.digestLeaves(name)
            assert.deepEqual(digest.leaves, recomputed(store.db, name))
            assert.equal(digest.seq, seq)
            const state = await store.state(name)
            assert.equal(state?.keys, model.size)
            const rows = await store.rows(name, null, 100)
            assert.deepEqual(
              rows.map((r) => [r.key, r.seq, (r as StoredRow).dataText]),
              [...model.entries()].sort(([a], [b]) => compareUtf8(a, b)).map(([k, [s, d]]) => [k, s, d]),
            )
            if (projectionKept) assert.deepEqual(projection, model)
          }
        } finally {
          await store.close()
        }
      }),
      propertyParameters(60),
    )
  })

  it('drops old generations only', async () => {
    const store = await claimed()
    const many = Array.from({ length: 25_000 }, (_, i) => row(`k${String(i).padStart(6, '0')}`, 1, i))
    await bootstrap(store, many, 1)
    await bootstrap(store, many.slice(0, 10), 2)
    await store.beginBootstrap(FEED, 'e', 3)
    await store.writeSnapshotChunk(FEED, many.slice(0, 5), { afterKey: null, readHead: 3, done: false })
    assert.equal(await store.collectGarbage(FEED), 25_000)
    const gens = store.db.prepare('SELECT gen, count(*) AS n FROM tidemark_replica_rows WHERE name = ? GROUP BY gen ORDER BY gen').all(FEED)
    assert.deepEqual(gens, [{ gen: 2, n: 10 }, { gen: 3, n: 5 }])
    const digestGens = store.db
      .prepare('SELECT gen FROM tidemark_replica_digest WHERE name = ? UNION SELECT gen FROM tidemark_replica_digest_log WHERE name = ? ORDER BY gen')
      .pluck()
      .all(FEED, FEED)
    assert.deepEqual(digestGens, [2, 3])
    assert.equal(await store.collectGarbage(FEED), 0)
    assert.equal((await store.state(FEED))?.keys, 10)
    // The bucket index of a generation is built at its swap and dropped with it: gen 1 went, gen 2
    // is current, gen 3 is still being built (its index comes at its swap).
    assert.deepEqual(bucketIndexes(store.db), ['tidemark_replica_rows_bucket_2'])
    await store.close()
  })

  it('indexes buckets per generation from schema 3 on: an upgraded schema-2 file gets its current generation\'s index', async () => {
    const path = tmpDb('replica.db')
    const store = await claimed(path)
    const rows = Array.from({ length: 300 }, (_, i) => row(`k${String(i).padStart(3, '0')}`, i + 1, { i }))
    await bootstrap(store, rows, 300)
    const bucket = bucketOf('k042')
    const before = await store.bucketEntries(FEED, [bucket])
    await store.close()
    // What schema 2 left: one index over every generation.
    const raw = new BetterSqlite3(path)
    raw.exec(`DROP INDEX tidemark_replica_rows_bucket_1; CREATE INDEX tidemark_replica_rows_bucket ON tidemark_replica_rows (name, gen, bucket);
      UPDATE tidemark_replica_meta SET value = '2' WHERE name = 'schema'`)
    raw.close()
    const again = await claimed(path)
    assert.deepEqual(bucketIndexes(again.db), ['tidemark_replica_rows_bucket_1'])
    const plan = again.db.prepare(`EXPLAIN QUERY PLAN SELECT key FROM tidemark_replica_rows INDEXED BY tidemark_replica_rows_bucket_1 WHERE name = ? AND gen = 1 AND bucket = ?`).all(FEED, bucket) as Array<{ detail: string }>
    assert.match(plan.map((p) => p.detail).join(' '), /tidemark_replica_rows_bucket_1/)
    assert.deepEqual(await again.bucketEntries(FEED, [bucket]), before)
    assert.ok(before[0]!.entries.some((e) => e.key === 'k042'))
    await again.close()
    // An index dropped by hand is rebuilt by the next listing.
    const reopened = await claimed(path)
    reopened.db.exec('DROP INDEX tidemark_replica_rows_bucket_1')
    assert.deepEqual(await reopened.bucketEntries(FEED, [bucket]), before)
    assert.deepEqual(bucketIndexes(reopened.db), ['tidemark_replica_rows_bucket_1'])
    await reopened.close()
  })

  it('attaches to a connection the consumer already has', async () => {
    const path = tmpDb('app.db')
    const db = new BetterSqlite3(path)
    db.exec('CREATE TABLE app (id INTEGER PRIMARY KEY)')
    const store = SqliteReplicaStore.attach(db)
    assert.equal(store.db, db)
    assert.equal(store.location, path)
    await store.claim(FEED, FEED, SOURCE)
    let tx: Database | undefined
    await bootstrap(store, [], 0)
    await store.apply(FEED, [up(1, 'a', 1)], 1, (_c, t) => {
      tx = t
      t.prepare('INSERT INTO app VALUES (1)').run()
    })
    assert.equal(tx, db)
    await store.close()
    // The consumer's connection stays open.
    assert.equal(db.prepare('SELECT count(*) FROM app').pluck().get(), 1)
    assert.equal(db.prepare('SELECT owner_id FROM tidemark_replica_replicas').pluck().get(), null)
    db.close()
  })

  it('reads through a read-only connection, adding nothing to a file that is no replica', async () => {
    const path = tmpDb('replica.db')
    const store = await claimed(path)
    await bootstrap(store, [row('a', 1, 1)], 1)
    const ro = new BetterSqlite3(path, { readonly: true })
    const reader = SqliteReplicaStore.attach(ro)
    assert.deepEqual((await reader.list()).map((s) => [s.name, s.keys]), [[FEED, 1]])
    assert.deepEqual(await reader.get(FEED, 'a'), new StoredRow('a', 1, '1'))
    await reader.close()
    ro.close()
    await store.close()

    const other = tmpDb('app.db')
    const app = new BetterSqlite3(other)
    app.exec('CREATE TABLE app (id INTEGER)')
    app.close()
    const db = new BetterSqlite3(other, { readonly: true })
    assert.throws(() => SqliteReplicaStore.attach(db), (error: unknown) => error instanceof NotAStoreError && /no replica tables/.test(error.message))
    db.close()
  })

  it('refuses a file that is not SQLite', () => {
    const path = tmpDb('notes.txt')
    writeFileSync(path, 'these are not the tables you are looking for\n'.repeat(100))
    assert.throws(() => SqliteReplicaStore.open(path), (error: unknown) => error instanceof NotAStoreError && /is not a SQLite database/.test(error.message))
  })
})

replicaStoreContract<Database>({
  name: 'sqlite',
  async open() {
    const path = tmpDb('replica.db')
    const db = new BetterSqlite3(path)
    db.exec('CREATE TABLE projection (key TEXT PRIMARY KEY, value TEXT NOT NULL)')
    const stores: SqliteReplicaStore[] = []
    const hook = (c: Change, tx: Database): void => {
      if (c.op === 'upsert') {
        tx.prepare('INSERT INTO projection (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(c.key, JSON.stringify(c.data))
      } else tx.prepare('DELETE FROM projection WHERE key = ?').run(c.key)
    }
    return {
      async store(options) {
        const store = SqliteReplicaStore.open(path, options)
        stores.push(store)
        return store
      },
      async setOwner(name, o) {
        db.prepare('UPDATE tidemark_replica_replicas SET owner_id = ?, owner_pid = ?, owner_host = ?, owner_expires = ? WHERE name = ?').run(o.id, o.pid, o.host, o.expires, name)
      },
      hook,
      failingHook: (key: string) => (c: Change, tx: Database) => {
        hook(c, tx)
        if (c.key === key) throw new Error(`no ${key}`)
      },
      async projection() {
        return new Map((db.prepare('SELECT key, value FROM projection').all() as Array<{ key: string; value: string }>).map((r) => [r.key, r.value]))
      },
      async close() {
        db.close()
      },
    }
  },
})
