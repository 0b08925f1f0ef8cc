import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import fc from 'fast-check'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import pg from 'pg'
import { addHash, bucketOf, rowHash } from '../../src/digest/row-hash.js'
import type { Change, Json } from '../../src/protocol/types.js'
import type { SourceStore } from '../../src/store/store.js'
import { PostgresSource } from '../../src/store/postgres/postgres-source.js'
import { PostgresSourceStore } from '../../src/store/postgres/postgres-source-store.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { SqliteSource } from '../../src/store/sqlite/sqlite-source.js'
import { pgDatabase } from '../helpers/pg.js'
import { propertyParameters } from '../helpers/property.js'
import { tmpDir } from '../helpers/tmp.js'

type Op = { kind: 'put'; key: number; value: string } | { kind: 'delete'; key: number }
interface Tx {
  via: 'api' | 'capture'
  rollback: boolean
  ops: Op[]
  maintainAfter: boolean
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('put' as const), key: fc.integer({ min: 1, max: 12 }), value: fc.string({ maxLength: 8 }) }),
  fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 1, max: 12 }) }),
)
const txArb: fc.Arbitrary<Tx> = fc.record({
  via: fc.constantFrom('api' as const, 'capture' as const),
  rollback: fc.boolean(),
  ops: fc.array(opArb, { minLength: 1, maxLength: 6 }),
  maintainAfter: fc.boolean(),
})

async function allChanges(store: SourceStore, feed: string): Promise<Change[]> {
  const out: Change[] = []
  for await (const batch of store.changes(feed, 0)) out.push(...batch)
  return out
}

/**
 * One owner of a table `items` captured into feed `captured`, writing feed `api` through the
 * library API, on one backend. Feed and table names are per run, so that a backend may keep one
 * database for all runs.
 */
interface Owner {
  store: SourceStore
  feeds: { api: string; captured: string }
  /** Runs the transaction's ops in one owner transaction, rolled back when it says so. */
  run(tx: Tx): Promise<void>
  /** The state rows (no tombstones) with their data as the store keeps the text. */
  state(feed: string): Promise<Array<{ key: string; seq: number; data: string }>>
  close(): Promise<void>
}

interface Backend {
  name: string
  runs: number
  open(run: number): Promise<Owner>
  done?(): Promise<void>
}

const dir = tmpDir()

const sqlite: Backend = {
  name: 'SQLite',
  runs: 60,
  async open(run) {
    const path = join(dir, `p${run}.db`)
    const db = new Database(path)
    db.exec('CREATE TABLE items (id INTEGER PRIMARY KEY, value TEXT)')
    const source = new SqliteSource(db)
    const api = source.feed('api')
    const store = SqliteSourceStore.open(path)
    await store.track({ table: 'items', keyColumn: 'id', feed: 'captured' })
    const upsert = db.prepare('INSERT INTO items (id, value) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET value = excluded.value')
    const remove = db.prepare('DELETE FROM items WHERE id = ?')
    return {
      store,
      feeds: { api: 'api', captured: 'captured' },
      async run(tx) {
        try {
          db.transaction(() => {
            for (const op of tx.ops) {
              const key = String(op.key)
              if (tx.via === 'api') {
                if (op.kind === 'put') api.put(key, { value: op.value })
                else api.delete(key)
              } else if (op.kind === 'put') upsert.run(op.key, op.value)
              else remove.run(op.key)
            }
            if (tx.rollback) throw new Error('rollback')
          })()
        } catch (error) {
          if ((error as Error).message !== 'rollback') throw error
        }
      },
      async state(feed) {
        return db.prepare('SELECT key, seq, data FROM tidemark_state WHERE feed = ? AND data IS NOT NULL').all(feed) as Array<{
          key: string
          seq: number
          data: string
        }>
      },
      async close() {
        await store.close()
        source.close()
        db.close()
      },
    }
  },
}

/** PostgreSQL: one database for every run (a database per run would dominate the time). */
let pgShared: { url: string; pool: pg.Pool; store: PostgresSourceStore; source: PostgresSource } | undefined
const postgres: Backend = {
  name: 'PostgreSQL',
  runs: 25,
  async open(run) {
    if (!pgShared) {
      const url = await pgDatabase()
      const pool = new pg.Pool({ connectionString: url, max: 2 })
      pgShared = { url, pool, store: await PostgresSourceStore.open(url), source: await PostgresSource.attach(pool) }
    }
    const { pool, store, source } = pgShared
    const feeds = { api: `api_${run}`, captured: `captured_${run}` }
    const table = `items_${run}`
    await pool.query(`CREATE TABLE ${table} (id integer PRIMARY KEY, value text)`)
    await store.track({ table, keyColumn: 'id', feed: feeds.captured })
    const api = await source.feed(feeds.api)
    return {
      store,
      feeds,
      async run(tx) {
        const client = await pool.connect()
        try {
          await client.query('BEGIN')
          for (const op of tx.ops) {
            const key = String(op.key)
            if (tx.via === 'api') {
              if (op.kind === 'put') await api.put(client, key, { value: op.value })
              else await api.delete(client, key)
            } else if (op.kind === 'put') {
              await client.query(`INSERT INTO ${table} (id, value) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET value = excluded.value`, [
                op.key,
                op.value,
              ])
            } else await client.query(`DELETE FROM ${table} WHERE id = $1`, [op.key])
          }
          await client.query(tx.rollback ? 'ROLLBACK' : 'COMMIT')
        } finally {
          client.release()
        }
      },
      async state(feed) {
        const { rows } = await pool.query<{ key: string; seq: string; data: string }>(
          'SELECT key, seq, data FROM tidemark.state WHERE feed = $1 AND data IS NOT NULL',
          [feed],
        )
        return rows.map((r) => ({ key: r.key, seq: Number(r.seq), data: r.data }))
      },
      async close() {},
    }
  },
  async done() {
    await pgShared?.store.close()
    await pgShared?.pool.end()
  },
}

for (const backend of [sqlite, postgres]) {
  describe(`source properties on ${backend.name}`, () => {
    let n = 0
    it('any interleaving of API and captured writes, rollbacks and indexer passes keeps log, state and digest in step', async () => {
      try {
        await fc.assert(
          fc.asyncProperty(fc.array(txArb, { maxLength: 25 }), async (txs) => {
            const owner = await backend.open(n++)
            const { store } = owner
            const expected = { api: new Map<string, Json>(), captured: new Map<string, Json>() }
            const committedApiTxSizes: number[] = []
            try {
              for (const tx of txs) {
                const model = tx.via === 'api' ? expected.api : expected.captured
                const pending = new Map(model)
                for (const op of tx.ops) {
                  const key = String(op.key)
                  if (op.kind === 'put') pending.set(key, tx.via === 'api' ? { value: op.value } : { id: op.key, value: op.value })
                  else pending.delete(key)
                }
                await owner.run(tx)
                if (!tx.rollback) {
                  model.clear()
                  for (const [k, v] of pending) model.set(k, v)
                  if (tx.via === 'api') committedApiTxSizes.push(tx.ops.length)
                }
                if (tx.maintainAfter) await store.maintain()
              }
              await store.maintain()

              for (const which of ['api', 'captured'] as const) {
                const feed = owner.feeds[which]
                const changes = await allChanges(store, feed)
                const info = await store.getFeed(feed)
                // Gap-free from 1 to head.
                assert.deepEqual(changes.map((c) => c.seq), Array.from({ length: info.head }, (_, i) => i + 1))
                // tx: each change's tx is the last seq of a contiguous group.
                for (let i = 0; i < changes.length; i++) {
                  const c = changes[i] as Change
                  assert.ok(c.tx >= c.seq)
                  const next = changes[i + 1]
                  if (c.tx === c.seq) assert.ok(next === undefined || next.tx > c.seq)
                  else assert.equal(next?.tx, c.tx)
                }
                // Replay equals the state, and the model.
                const replay = new Map<string, { seq: number; data: Json }>()
                for (const c of changes) {
                  if (c.op === 'upsert') replay.set(c.key, { seq: c.seq, data: c.data as Json })
                  else replay.delete(c.key)
                }
                const model = expected[which]
                const state = await owner.state(feed)
                assert.deepEqual(
                  new Map(state.map((r) => [r.key, { seq: r.seq, data: JSON.parse(r.data) as Json }])),
                  replay,
                )
                assert.deepEqual(new Map([...replay].map(([k, v]) => [k, v.data])), model)
                // Digest equals one recomputed from scratch.
                const fresh = new Map<number, { count: number; sum: bigint }>()
                for (const r of state) {
                  const b = bucketOf(r.key)
                  const cur = fresh.get(b) ?? { count: 0, sum: 0n }
                  fresh.set(b, { count: cur.count + 1, sum: addHash(cur.sum, rowHash(r.key, r.seq, r.data)) })
                }
                const { seq, leaves } = await store.digestLeaves(feed)
                assert.equal(seq, info.head)
                assert.deepEqual(new Map(leaves.map((l) => [l.bucket, { count: l.count, sum: l.sum }])), fresh)
                assert.equal((await store.getFeed(feed)).keys, state.length)
              }
              // API transactions come out as groups of exactly the committed sizes.
              const groups: number[] = []
              for (const c of await allChanges(store, owner.feeds.api)) {
                if (c.seq === c.tx) groups.push(c.seq)
              }
              const sizes = groups.map((end, i) => end - (i === 0 ? 0 : (groups[i - 1] as number)))
              assert.deepEqual(sizes, committedApiTxSizes)
            } finally {
              await owner.close()
            }
          }),
          propertyParameters(backend.runs),
        )
      } finally {
        await backend.done?.()
      }
    })
  })
}
