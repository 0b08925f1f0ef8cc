import assert from 'node:assert/strict'
import { it } from 'node:test'
import pg from 'pg'
import type { Change } from '../../src/protocol/types.js'
import { PostgresSource } from '../../src/store/postgres/postgres-source.js'
import { PostgresSourceStore } from '../../src/store/postgres/postgres-source-store.js'
import { prng } from '../../src/util/prng.js'
import { pgDatabase } from '../helpers/pg.js'
import { collect } from './contract/source-store-contract.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * The hard part of the PostgreSQL store (docs/postgres.md, "Commit order"): many connections write
 * one feed at once, in transactions long and short that commit in any order, some rolled back,
 * fighting over a few hot keys; readers on three stores (three feed servers) follow meanwhile.
 * No reader may ever see a gap, or find later a change below one it has read; transactions come out
 * whole; and replaying the log gives exactly the owner's tables (so conflicting writes came out in
 * commit order).
 */
it('concurrent writers committing in random order: readers never see a seq appear below one they read, no gaps, transactions whole, state = owner tables', async () => {
  const url = await pgDatabase()
  const seed = Number(process.env.TIDEMARK_SEED ?? Math.floor(Math.random() * 2 ** 31))
  process.stderr.write(`commit-order: seed=${seed}\n`)
  const random = prng(seed)
  const pool = new pg.Pool({ connectionString: url, max: 16 })
  await pool.query('CREATE TABLE items (id integer PRIMARY KEY, v text NOT NULL); CREATE TABLE accounts (id text PRIMARY KEY, v text NOT NULL)')
  const stores = await Promise.all([0, 1, 2].map(() => PostgresSourceStore.open(url)))
  const main = stores[0] as PostgresSourceStore
  await main.track({ table: 'items', keyColumn: 'id' })
  const source = await PostgresSource.attach(pool)
  const accounts = await source.feed('accounts')

  const WRITERS = 12
  const TXS = 30
  const committed = { items: [] as number[], accounts: [] as number[] }
  const writer = async (w: number): Promise<void> => {
    const client = await pool.connect()
    try {
      for (let t = 0; t < TXS; t++) {
        const tag = `${w}-${t}`
        const size = 1 + Math.floor(random() * 6)
        const long = random() < 0.15
        const rollback = random() < 0.1
        const viaApi = random() < 0.5
        await client.query('BEGIN')
        try {
        for (let i = 0; i < size; i++) {
          // A few hot keys: concurrent transactions wait on each other's row locks, so the order
          // of their commits decides the final value.
          const key = random() < 0.25 ? Math.floor(random() * 5) : 100 + Math.floor(random() * 1000)
          if (viaApi) {
            await client.query('INSERT INTO accounts (id, v) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = excluded.v', [`a${key}`, tag])
            await accounts.put(client, `a${key}`, { v: tag })
          } else {
            await client.query('INSERT INTO items (id, v) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = excluded.v', [key, tag])
          }
          if (long) await sleep(5 + random() * 30)
          else if (random() < 0.3) await sleep(random() * 3)
        }
        } catch (error) {
          // Hot keys in random order deadlock now and then: PostgreSQL aborts one, as it would the owner's.
          if ((error as { code?: string }).code !== '40P01') throw error
          await client.query('ROLLBACK')
          continue
        }
        if (rollback) await client.query('ROLLBACK')
        else {
          await client.query('COMMIT')
          committed[viaApi ? 'accounts' : 'items'].push(size)
        }
      }
    } finally {
      client.release()
    }
  }

  let writing = true
  const seen = new Map<string, Change[]>()
  const reader = async (store: PostgresSourceStore, feed: string): Promise<void> => {
    const got: Change[] = []
    seen.set(`${store === main ? 'main' : stores.indexOf(store)}:${feed}:${seen.size}`, got)
    let after = 0
    for (;;) {
      const stillWriting = writing
      for await (const batch of store.changes(feed, after)) {
        for (const c of batch) {
          assert.equal(c.seq, after + 1, `a reader of ${feed} at ${after} got ${c.seq}`)
          after = c.seq
          got.push(c)
        }
      }
      if (!stillWriting) return
      await store.waitForChanges(feed, after, { timeoutMs: 50 })
    }
  }
  const readers = stores.flatMap((s) => [reader(s, 'items'), reader(s, 'accounts')])
  await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)))
  writing = false
  await Promise.all(readers)

  for (const feed of ['items', 'accounts'] as const) {
    const log = await collect(main.changes(feed, 0))
    const head = (await main.getFeed(feed)).head
    assert.deepEqual(log.map((c) => c.seq), Array.from({ length: head }, (_, i) => i + 1), `${feed}: gap-free 1..head`)
    // What every reader saw is the final log, change for change: nothing appeared below later.
    for (const [name, got] of seen) {
      if (!name.includes(`:${feed}:`)) continue
      assert.deepEqual(got.map((c) => JSON.stringify(c)), log.map((c) => JSON.stringify(c)), `${name} saw another history`)
    }
    // Transactions whole: each tx group is one writer's transaction, of its committed size.
    const groups: Change[][] = []
    for (const c of log) {
      const last = groups[groups.length - 1]
      if (last && (last[0] as Change).tx === c.tx) last.push(c)
      else groups.push([c])
    }
    const first = feed === 'items' ? 1 : 0 // the table's initial copy is a transaction of its own
    for (const g of groups.slice(first)) {
      assert.equal((g[g.length - 1] as Change).seq, (g[0] as Change).tx)
      const tags = new Set(g.map((c) => (c.data as { v: string }).v))
      assert.equal(tags.size, 1, `${feed}: transaction ${(g[0] as Change).tx} mixes writers ${[...tags].join(', ')}`)
    }
    // Replaying the log gives the owner's table: conflicting transactions came out in commit order.
    const replay = new Map<string, string>()
    for (const c of log) {
      if (c.op === 'upsert') replay.set(c.key, (c.data as { v: string }).v)
      else replay.delete(c.key)
    }
    const { rows } = await pool.query<{ id: string; v: string }>(`SELECT id::text AS id, v FROM ${feed}`)
    assert.deepEqual(replay, new Map(rows.map((r) => [r.id, r.v])), `${feed}: log replay differs from the table`)
  }
  // Sizes of committed transactions (the API feed's groups are exactly the committed ones).
  const apiGroups = new Map<number, number>()
  for (const c of await collect(main.changes('accounts', 0))) apiGroups.set(c.tx, (apiGroups.get(c.tx) ?? 0) + 1)
  assert.deepEqual([...apiGroups.values()].sort(), [...committed.accounts].sort())
  await Promise.all(stores.map((s) => s.close()))
  await pool.end()
})
