import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pg from 'pg'
import { DigestTree, FANOUT, TREE_DEPTH } from '../../src/digest/digest-tree.js'
import { addHash, bucketOf, rowHash } from '../../src/digest/row-hash.js'
import type { Change, StateRow } from '../../src/protocol/types.js'
import { PostgresReplicaStore } from '../../src/store/postgres/postgres-replica-store.js'
import { bucketIndexName } from '../../src/store/postgres/replica-schema.js'
import type { DigestLeaf } from '../../src/store/store.js'
import { prng } from '../../src/util/prng.js'
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
      store: (options) => PostgresReplicaStore.open(url, options),
      async setOwner(name, o) {
        await pool.query('UPDATE tidemark.replica_replicas SET owner_id = $1, owner_pid = $2, owner_host = $3, owner_expires = $4 WHERE name = $5', [o.id, o.pid, o.host, o.expires, name])
      },
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

  it('a bootstrap resumed by another process sums its digest from the stored rows; each current generation gets its bucket index after the swap, and only it', async () => {
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
      // The swap does not wait for the bucket index; the replicator builds it right after, with its garbage collection.
      assert.deepEqual(await bucketIndexes(pool), [])
      await store.collectGarbage('r')
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
  it('reconciliation reads buckets rightly without the bucket index, and an index a failed build left invalid is built again', async () => {
    const url = await pgDatabase()
    const pool = new pg.Pool({ connectionString: url })
    const store = await PostgresReplicaStore.open(url)
    try {
      await store.claim('r', 'f', 'http://source.test')
      await store.beginBootstrap('r', 'e1', 0)
      const all = rows(1, 400)
      await store.writeSnapshotChunk('r', all, { afterKey: 'k00400', readHead: 0, done: true })
      await store.finishBootstrap('r')
      const bucket = bucketOf('k00042')
      const want = all.filter((r) => bucketOf(r.key) === bucket).map((r) => r.key)
      // No index yet (the replicator has not come by): read anyway, and the read starts the build.
      const [before] = await store.bucketEntries('r', [bucket])
      assert.deepEqual(before?.entries.map((e) => e.key), want)
      // A build that failed leaves an invalid index of the same name: it must not count as built.
      await store.collectGarbage('r')
      const isValid = async (): Promise<boolean> =>
        (await pool.query(`SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1 AND i.indisvalid`, [bucketIndexName('r', 1)])).rowCount === 1
      // (the build the read started may still be under way: wait for it)
      for (let i = 0; i < 200 && !(await isValid()); i++) await new Promise((resolve) => setTimeout(resolve, 50))
      assert.equal(await isValid(), true)
      await pool.query(`UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'tidemark.${bucketIndexName('r', 1)}'::regclass`)
      // Another process (which has not seen the index valid) takes the replica over.
      await store.release('r')
      const other = await PostgresReplicaStore.open(url)
      try {
        await other.claim('r', 'f', 'http://source.test')
        await other.collectGarbage('r')
      } finally {
        await other.close()
      }
      const { rows: valid } = await pool.query<{ valid: boolean }>(`SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = 'tidemark.${bucketIndexName('r', 1)}'::regclass`)
      assert.deepEqual(valid, [{ valid: true }])
      const [after] = await store.bucketEntries('r', [bucket])
      assert.deepEqual(after?.entries.map((e) => e.key), want)
    } finally {
      await store.close()
      await pool.end()
    }
  })
})

describe('PostgresReplicaStore apply hook (PostgreSQL only)', () => {
  it("a hook whose connection dies is the store unavailable (retry), not the hook's fault (stop); nothing of the transaction stays", async () => {
    const url = await pgDatabase()
    const store = await PostgresReplicaStore.open(url)
    try {
      await store.claim('r', 'f', 'http://source.test')
      await store.beginBootstrap('r', 'e1', 0)
      await store.writeSnapshotChunk('r', [], { afterKey: null, readHead: 0, done: true })
      await store.finishBootstrap('r')
      const change = (seq: number): Change => ({ seq, key: `k${seq}`, op: 'upsert', tx: seq, ts: 0, data: { seq } })
      // The database ends the apply transaction's own connection under the hook, as a restart would.
      const dying = async (c: Change, tx: pg.ClientBase): Promise<void> => {
        if (c.seq === 2) await tx.query('SELECT pg_terminate_backend(pg_backend_pid())')
      }
      await assert.rejects(store.apply('r', [change(1), change(2)], 2, dying), { code: 'store-unavailable' })
      assert.equal((await store.state('r'))?.seq, 0)
      assert.equal(await store.get('r', 'k1'), undefined)
      // The hook's own error still stops the replica, naming the change.
      await assert.rejects(
        store.apply('r', [change(1)], 1, async () => {
          throw new Error('bug')
        }),
        { code: 'apply-failed' },
      )
      // And with the database back, the same changes apply.
      await store.apply('r', [change(1), change(2)], 2, async () => {})
      assert.equal((await store.state('r'))?.seq, 2)
    } finally {
      await store.close()
    }
  })
})

describe('PostgresReplicaStore digest tree (PostgreSQL only)', () => {
  it('kept in memory while claimed, it stays equal to the tree rebuilt from the leaves after applies, repairs and a re-bootstrap', async () => {
    const url = await pgDatabase()
    const store = await PostgresReplicaStore.open(url)
    const other = await PostgresReplicaStore.open(url)
    const same = (a: DigestTree, b: DigestTree): void => {
      for (let level = 0; level <= TREE_DEPTH; level++) {
        for (let i = 0; i < FANOUT ** level; i++) {
          const x = a.node(level, i)
          const y = b.node(level, i)
          if (x.count !== y.count || x.sum !== y.sum) assert.fail(`node ${i} of level ${level}: ${x.count}/${x.sum} vs ${y.count}/${y.sum}`)
        }
      }
    }
    const check = async (): Promise<DigestTree> => {
      const kept = await store.digestTree('r')
      const { seq, leaves } = await store.digestLeaves('r')
      assert.equal(kept.seq, seq)
      same(kept.tree, new DigestTree(leaves))
      // Another instance (not the claim holder) reads the leaves each time: the same tree.
      same(kept.tree, (await other.digestTree('r')).tree)
      return kept.tree
    }
    try {
      await store.claim('r', 'f', 'http://source.test')
      const random = prng(Number(process.env.TIDEMARK_SEED ?? 11))
      let seq = 0
      const bootstrap = async (epoch: string): Promise<void> => {
        await store.beginBootstrap('r', epoch, seq)
        const rows: StateRow[] = Array.from({ length: 40 }, (_, i) => ({ key: `k${String(i).padStart(3, '0')}`, seq: Math.max(1, seq - i), data: { i, epoch } }))
        await store.writeSnapshotChunk('r', rows, { afterKey: 'k039', readHead: seq, done: true })
        await store.finishBootstrap('r')
      }
      await bootstrap('e1')
      let kept = (await store.digestTree('r')).tree
      assert.equal((await store.digestTree('r')).tree, kept, 'kept, not rebuilt')
      for (let round = 0; round < 30; round++) {
        if (round === 15) await bootstrap('e2')
        const tx: Change[] = []
        for (let i = 0; i < 1 + Math.floor(random() * 5); i++) {
          seq++
          const key = `k${String(Math.floor(random() * 60)).padStart(3, '0')}`
          tx.push(random() < 0.3 ? { seq, key, op: 'delete', tx: 0, ts: 1 } : { seq, key, op: 'upsert', data: { round, i }, tx: 0, ts: 1 })
        }
        for (const c of tx) c.tx = seq
        await store.apply('r', tx, seq)
        if (round % 7 === 3) {
          const state = await store.state('r')
          await store.repair('r', [{ key: 'k001', row: { key: 'k001', seq: 1, data: { repaired: round } } }, { key: 'k002', row: null }], { epoch: state?.epoch as string, seq })
        }
        const tree = await check()
        // The same tree throughout, brought up to date by each write; a new one for the new generation.
        if (round !== 15) assert.equal(tree, kept, `round ${round}: the kept tree`)
        kept = tree
      }
      // A failed write drops the kept tree; the next one is read back from the leaves.
      await assert.rejects(store.apply('r', [{ seq: seq + 2, key: 'x', op: 'upsert', data: 1, tx: seq + 2, ts: 1 }], seq + 1))
      await check()
    } finally {
      await other.close()
      await store.close()
    }
  })
})
