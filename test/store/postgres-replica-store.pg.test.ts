import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pg from 'pg'
import { addHash, bucketOf, rowHash } from '../../src/digest/row-hash.js'
import type { Change, StateRow } from '../../src/protocol/types.js'
import { PostgresReplicaStore } from '../../src/store/postgres/postgres-replica-store.js'
import { bucketIndexName } from '../../src/store/postgres/replica-schema.js'
import type { DigestLeaf } from '../../src/store/store.js'
import { pgDatabase } from '../helpers/pg.js'
import { replicaStoreContract } from './contract/replica-store-contract.js'

replicaStoreContract<pg.ClientBase>({
  name: 'postgres',
  async open() {
    const url = await pgDatabase()
    const pool = new pg.Pool({ connectionString: url })
    await pool.query('CREATE TABLE projection (key text PRIMARY KEY, value text NOT NULL)')
    // The projection hook is async on PostgreSQL: it writes on the apply transaction's client.
    const hook = async (c: Change, tx: pg.ClientBase): Promise<void> => {
      if (c.op === 'upsert') {
        await tx.query('INSERT INTO projection (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [c.key, JSON.stringify(c.data)])
      } else await tx.query('DELETE FROM projection WHERE key = $1', [c.key])
    }
    return {
      store: () => PostgresReplicaStore.open(url),
      hook,
      failingHook: (key: string) => async (c: Change, tx: pg.ClientBase) => {
        await hook(c, tx)
        if (c.key === key) throw new Error(`no ${key}`)
      },
      async projection() {
        const { rows } = await pool.query<{ key: string; value: string }>('SELECT key, value FROM projection')
        return new Map(rows.map((r) => [r.key, r.value]))
      },
      async close() {
        await pool.end()
      },
    }
  },
})

describe('PostgresReplicaStore bootstrap (PostgreSQL only)', () => {
  const rows = (from: number, to: number): StateRow[] =>
    Array.from({ length: to - from + 1 }, (_, i) => ({ key: `k${String(from + i).padStart(5, '0')}`, seq: from + i, data: { n: from + i } }))
  const expected = (all: StateRow[]): DigestLeaf[] => {
    const leaves = new Map<number, DigestLeaf>()
    for (const r of all) {
      const b = bucketOf(r.key)
      const l = leaves.get(b) ?? { bucket: b, count: 0, sum: 0n }
      leaves.set(b, { bucket: b, count: l.count + 1, sum: addHash(l.sum, rowHash(r.key, r.seq, JSON.stringify(r.data))) })
    }
    return [...leaves.values()].sort((a, b) => a.bucket - b.bucket)
  }
  const bucketIndexes = async (pool: pg.Pool): Promise<string[]> =>
    (
      await pool.query<{ indexname: string }>(
        `SELECT indexname FROM pg_indexes WHERE schemaname = 'tidemark' AND tablename = 'replica_rows' AND indexname LIKE 'replica_rows_bucket%' ORDER BY indexname`,
      )
    ).rows.map((r) => r.indexname)

  it('a bootstrap resumed by another process sums its digest from the stored rows; each current generation has its bucket index, and only it', async () => {
    const url = await pgDatabase()
    const pool = new pg.Pool({ connectionString: url })
    let store = await PostgresReplicaStore.open(url)
    try {
      await store.claim('r', 'f', 'http://source.test')
      await store.beginBootstrap('r', 'e1', 0)
      await store.writeSnapshotChunk('r', rows(1, 300), { afterKey: 'k00300', readHead: 0, done: false })
      // The replicator dies mid-bootstrap; another one takes over and finishes it.
      await store.close()
      store = await PostgresReplicaStore.open(url)
      await store.claim('r', 'f', 'http://source.test')
      await store.writeSnapshotChunk('r', rows(301, 500), { afterKey: 'k00500', readHead: 0, done: true })
      await store.finishBootstrap('r')
      const first = rows(1, 500)
      assert.deepEqual((await store.digestLeaves('r')).leaves, expected(first))
      assert.deepEqual(await bucketIndexes(pool), [bucketIndexName('r', 1)])
      // Reconciliation reads one bucket's keys through the index.
      const bucket = bucketOf('k00042')
      const [list] = await store.bucketEntries('r', [bucket])
      assert.deepEqual(
        list?.entries.map((e) => e.key),
        first.filter((r) => bucketOf(r.key) === bucket).map((r) => r.key),
      )
      // A second bootstrap written by one process keeps its digest in memory; the old generation's index goes with its rows.
      await store.beginBootstrap('r', 'e2', 0)
      const second = rows(200, 700)
      for (let i = 0; i < second.length; i += 100) {
        const chunk = second.slice(i, i + 100)
        await store.writeSnapshotChunk('r', chunk, { afterKey: (chunk[chunk.length - 1] as StateRow).key, readHead: 0, done: i + 100 >= second.length })
      }
      await store.finishBootstrap('r')
      assert.deepEqual((await store.digestLeaves('r')).leaves, expected(second))
      assert.deepEqual((await store.rehash('r')).wrongBuckets, 0)
      await store.collectGarbage('r')
      assert.deepEqual(await bucketIndexes(pool), [bucketIndexName('r', 2)])
    } finally {
      await store.close()
      await pool.end()
    }
  })
})
