/**
 * Reconciliation with PostgreSQL on both sides: the source lists buckets from its indexed state,
 * the replica store compares, repairs (with an async projection hook on the apply transaction's
 * client) and, for rows edited by hand with SQL, recomputes its digest (--deep).
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import pg from 'pg'
import type { Change } from '../../src/protocol/types.js'
import { reconcile } from '../../src/reconcile/reconcile.js'
import type { ReconcileMode } from '../../src/reconcile/run.js'
import { createReplica } from '../../src/replica/replica.js'
import type { ApplyHook } from '../../src/store/replica-store.js'
import { PostgresReplicaStore } from '../../src/store/postgres/postgres-replica-store.js'
import { PostgresSourceStore } from '../../src/store/postgres/postgres-source-store.js'
import { LocalFeedSource } from '../../src/transport/local-feed-source.js'
import { pgDatabase } from '../helpers/pg.js'

const FEED = 'customers'

async function caughtUpPair() {
  const source = await PostgresSourceStore.open(await pgDatabase())
  await source.ensureFeed(FEED)
  for (let i = 0; i < 300; i += 50) {
    await source.write(FEED, Array.from({ length: 50 }, (_, j) => ({ op: 'upsert' as const, key: `k${i + j}`, data: { n: i + j } })))
  }
  await source.write(FEED, [{ op: 'delete', key: 'k5' }])
  const url = await pgDatabase()
  const store = await PostgresReplicaStore.open(url)
  const local = new LocalFeedSource(source)
  const replica = createReplica({ source: local, feed: FEED, store })
  const running = replica.run()
  await replica.caughtUp()
  await replica.stop()
  await running
  const pool = new pg.Pool({ connectionString: url })
  after(async () => {
    await store.close()
    await source.close()
    await pool.end()
  })
  const run = async (mode: ReconcileMode, options: { deep?: boolean; hook?: ApplyHook<pg.ClientBase> } = {}) => {
    await store.claim(FEED, FEED, local.description)
    try {
      return await reconcile({ source: local, feed: FEED, store, name: FEED, mode, trigger: 'demand', ...options })
    } finally {
      await store.release(FEED)
    }
  }
  const same = async () => {
    const a = await source.snapshot(FEED, null, 10_000)
    const b = await store.rows(FEED, null, 10_000)
    assert.deepEqual(b.map((r) => [r.key, r.seq, JSON.stringify(r.data)]), a.rows.map((r) => [r.key, r.seq, JSON.stringify(r.data)]))
    assert.deepEqual((await store.digestLeaves(FEED)).leaves, (await source.digestLeaves(FEED)).leaves)
  }
  return { source, store, pool, run, same, local }
}

describe('reconcile on PostgreSQL', () => {
  it('finds drift the digest knows of and repairs it through an async hook, without moving the checkpoint', async () => {
    const { store, pool, run, same, local } = await caughtUpPair()
    assert.equal((await run('verify')).outcome, 'intact')
    const state = (await store.state(FEED))!
    await store.claim(FEED, FEED, local.description)
    await store.repair(FEED, [
      { key: 'k7', row: { key: 'k7', seq: 1, data: { n: 'wrong' } } },
      { key: 'k8', row: null },
      { key: 'ghost', row: { key: 'ghost', seq: 2, data: 'boo' } },
    ], { epoch: state.epoch!, seq: state.seq })
    await store.release(FEED)
    const verify = await run('verify')
    assert.equal(verify.outcome, 'drift')
    assert.deepEqual(verify.drift.map((d) => `${d.kind}:${d.key}`).sort(), ['differs:k7', 'extra:ghost', 'missing:k8'])

    await pool.query('CREATE TABLE projection (key text PRIMARY KEY, value text)')
    const seen: Change[] = []
    const hook: ApplyHook<pg.ClientBase> = async (c, tx, context) => {
      assert.equal(context.cause, 'repair')
      seen.push(c)
      if (c.op === 'upsert') await tx.query('INSERT INTO projection VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [c.key, JSON.stringify(c.data)])
      else await tx.query('DELETE FROM projection WHERE key = $1', [c.key])
    }
    const repair = await run('repair', { hook })
    assert.equal(repair.outcome, 'repaired')
    assert.equal(repair.repaired, 3)
    assert.deepEqual(seen.map((c) => c.key).sort(), ['ghost', 'k7', 'k8'])
    assert.deepEqual((await pool.query('SELECT key FROM projection ORDER BY key')).rows.map((r: { key: string }) => r.key), ['k7', 'k8'])
    assert.equal((await store.state(FEED))!.seq, state.seq)
    await same()
    assert.equal((await run('verify')).outcome, 'intact')
  })

  it('needs --deep for rows edited by hand with SQL, and repairs them after recomputing the digest', async () => {
    const { store, pool, run, same } = await caughtUpPair()
    const { gen } = (await store.state(FEED))!
    await pool.query(`UPDATE tidemark.replica_rows SET data = '{"n":"hand"}' WHERE name = $1 AND gen = $2 AND key = 'k3'`, [FEED, gen])
    await pool.query(`DELETE FROM tidemark.replica_rows WHERE name = $1 AND gen = $2 AND key = 'k4'`, [FEED, gen])
    await pool.query(`INSERT INTO tidemark.replica_rows (name, gen, key, seq, data) VALUES ($1, $2, 'extra', 1, '1')`, [FEED, gen])
    assert.equal((await run('verify')).outcome, 'intact', 'a shallow verify trusts the stored digest')
    const deep = await run('verify', { deep: true })
    assert.equal(deep.outcome, 'drift')
    assert.deepEqual(deep.drift.map((d) => `${d.kind}:${d.key}`).sort(), ['differs:k3', 'extra:extra', 'missing:k4'])
    assert.equal((await run('repair')).outcome, 'repaired')
    await same()
    assert.equal((await run('verify', { deep: true })).outcome, 'intact')
  })
})
