import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ApplyFailedError, ConflictError } from '../../src/errors.js'
import type { ReconcileMode } from '../../src/reconcile/run.js'
import { reconcile } from '../../src/reconcile/reconcile.js'
import { createReplica } from '../../src/replica/replica.js'
import type { ApplyHook } from '../../src/store/replica-store.js'
import type { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import type { FeedSource } from '../../src/transport/feed-source.js'
import type { Database } from 'better-sqlite3'
import { projectionHook, replicaState, sourceFixture } from '../helpers/replica-fixture.js'

type Fixture = Awaited<ReturnType<typeof sourceFixture>>

/** A source with `keys` rows and a replica caught up with it, stopped. */
async function caughtUpPair(keys = 300) {
  const fx = await sourceFixture()
  for (let i = 0; i < keys; i += 50) {
    await fx.source.write(fx.feed, Array.from({ length: 50 }, (_, j) => ({ op: 'upsert' as const, key: `k${i + j}`, data: { n: i + j } })))
  }
  const store = fx.openReplicaStore(fx.replicaPath())
  const replica = createReplica({ source: fx.local, feed: fx.feed, store })
  const running = replica.run()
  await replica.caughtUp()
  await replica.stop()
  await running
  return { fx, store }
}

async function runOnce(
  fx: Fixture,
  store: SqliteReplicaStore,
  mode: ReconcileMode,
  options: { deep?: boolean; source?: FeedSource; hook?: ApplyHook<Database> } = {},
) {
  await store.claim(fx.feed, fx.feed, fx.local.description)
  try {
    return await reconcile({
      source: options.source ?? fx.local,
      feed: fx.feed,
      store,
      name: fx.feed,
      mode,
      trigger: 'demand',
      ...(options.deep ? { deep: true } : {}),
      ...(options.hook ? { hook: options.hook } : {}),
    })
  } finally {
    await store.release(fx.feed)
  }
}

/** The replica's current generation, for corrupting it with plain SQL as an operator's mistake would. */
function gen(store: SqliteReplicaStore, name: string): number {
  return (store.db.prepare('SELECT gen FROM tidemark_replica_replicas WHERE name = ?').get(name) as { gen: number }).gen
}

async function assertEqualToSource(fx: Fixture, store: SqliteReplicaStore): Promise<void> {
  assert.deepEqual(await replicaState(store, fx.feed), await fx.sourceState())
}

describe('reconcile', () => {
  it('verifies an intact replica in one round trip', async () => {
    const { fx, store } = await caughtUpPair()
    const run = await runOnce(fx, store, 'verify')
    assert.equal(run.outcome, 'intact')
    assert.equal(run.cost.roundTrips, 1)
    assert.equal(run.drifted, 0)
    assert.equal((await store.runs(fx.feed))[0]?.outcome, 'intact', 'the run is recorded')
  })

  it('reports a newer source version as lag, never as drift', async () => {
    const { fx, store } = await caughtUpPair()
    await fx.source.write(fx.feed, [{ op: 'upsert', key: 'k1', data: { n: 'newer' } }, { op: 'delete', key: 'k2' }, { op: 'upsert', key: 'new', data: 1 }])
    const run = await runOnce(fx, store, 'verify')
    assert.equal(run.outcome, 'intact')
    assert.equal(run.drifted, 0)
    assert.equal(run.lagging, 3)
  })

  it('finds and repairs drift the digest knows of (a projection bug writing through the store), with the hook', async () => {
    const { fx, store } = await caughtUpPair()
    const state = (await store.state(fx.feed))!
    // Wrong versions written as if by a faulty writer: the digest follows them, so a plain verify sees them.
    await store.claim(fx.feed, fx.feed, fx.local.description)
    await store.repair(fx.feed, [
      { key: 'k7', row: { key: 'k7', seq: 1, data: { n: 'wrong' } } },
      { key: 'k8', row: null },
      { key: 'ghost', row: { key: 'ghost', seq: 2, data: 'boo' } },
    ], { epoch: state.epoch!, seq: state.seq })
    await store.release(fx.feed)

    const verify = await runOnce(fx, store, 'verify')
    assert.equal(verify.outcome, 'drift')
    assert.deepEqual(verify.drift.map((d) => `${d.kind}:${d.key}`).sort(), ['differs:k7', 'extra:ghost', 'missing:k8'])
    assert.ok(verify.cost.roundTrips <= 2 + 5, `${verify.cost.roundTrips} round trips`)

    const projection = projectionHook()
    projection.install(store.db)
    const repair = await runOnce(fx, store, 'repair', { hook: projection.hook })
    assert.equal(repair.outcome, 'repaired')
    assert.equal(repair.repaired, 3)
    assert.equal(projection.seen.size, 3, 'the hook saw each repaired key')
    assert.equal((await store.state(fx.feed))!.seq, state.seq, 'the checkpoint did not move')
    await assertEqualToSource(fx, store)
    assert.equal((await runOnce(fx, store, 'verify')).outcome, 'intact')
  })

  it('needs --deep for rows edited by hand, and repairs them after recomputing the digest', async () => {
    const { fx, store } = await caughtUpPair()
    const g = gen(store, fx.feed)
    store.db.prepare(`UPDATE tidemark_replica_rows SET data = '{"n":"hand"}' WHERE name = ? AND gen = ? AND key = 'k3'`).run(fx.feed, g)
    store.db.prepare(`DELETE FROM tidemark_replica_rows WHERE name = ? AND gen = ? AND key = 'k4'`).run(fx.feed, g)
    store.db.prepare(`INSERT INTO tidemark_replica_rows (name, gen, key, seq, data) VALUES (?, ?, 'extra', 1, '1')`).run(fx.feed, g)

    const deep = await runOnce(fx, store, 'verify', { deep: true })
    assert.equal(deep.outcome, 'drift')
    assert.deepEqual(deep.drift.map((d) => `${d.kind}:${d.key}`).sort(), ['differs:k3', 'extra:extra', 'missing:k4'])
    assert.ok(deep.digestRepair && deep.digestRepair.rows >= 2 && deep.digestRepair.buckets >= 3, JSON.stringify(deep.digestRepair))

    const repair = await runOnce(fx, store, 'repair')
    assert.equal(repair.outcome, 'repaired')
    await assertEqualToSource(fx, store)
    assert.equal((await runOnce(fx, store, 'verify', { deep: true })).outcome, 'intact')
  })

  it('notices a digest table edited by hand, and --deep recomputes it', async () => {
    const { fx, store } = await caughtUpPair()
    // Fold the digest log so there are leaves to edit.
    store.db.prepare('DELETE FROM tidemark_replica_digest_log').run()
    const g = gen(store, fx.feed)
    store.db.prepare(`INSERT OR REPLACE INTO tidemark_replica_digest (name, gen, bucket, count, sum) VALUES (?, ?, 7, 1, zeroblob(16))`).run(fx.feed, g)
    const plain = await runOnce(fx, store, 'verify')
    assert.equal(plain.outcome, 'drift')
    assert.match(plain.error ?? '', /--deep/)
    const deep = await runOnce(fx, store, 'verify', { deep: true })
    assert.ok(deep.digestRepair && deep.digestRepair.buckets > 0)
    assert.equal((await runOnce(fx, store, 'verify')).outcome, 'intact')
  })

  it('leaves the replica as it was when the hook fails halfway through a repair, and a rerun repairs it', async () => {
    const { fx, store } = await caughtUpPair()
    const state = (await store.state(fx.feed))!
    await store.claim(fx.feed, fx.feed, fx.local.description)
    await store.repair(fx.feed, [{ key: 'k1', row: null }, { key: 'k2', row: null }], { epoch: state.epoch!, seq: state.seq })
    await store.release(fx.feed)
    const before = await replicaState(store, fx.feed)
    let calls = 0
    const failing: ApplyHook<Database> = () => {
      if (++calls === 2) throw new Error('projection down')
    }
    await assert.rejects(runOnce(fx, store, 'repair', { hook: failing }), ApplyFailedError)
    assert.deepEqual(await replicaState(store, fx.feed), before, 'nothing of the failed repair is visible')
    assert.equal((await runOnce(fx, store, 'repair')).repaired, 2)
    await assertEqualToSource(fx, store)
  })

  it('refuses to repair at another checkpoint than the one compared', async () => {
    const { fx, store } = await caughtUpPair()
    const state = (await store.state(fx.feed))!
    await store.claim(fx.feed, fx.feed, fx.local.description)
    await assert.rejects(store.repair(fx.feed, [{ key: 'k1', row: null }], { epoch: state.epoch!, seq: state.seq - 1 }), ConflictError)
    await store.release(fx.feed)
  })

  it('says re-bootstrap when the source is behind the checkpoint or at another epoch', async () => {
    const { fx, store } = await caughtUpPair()
    const behind: FeedSource = {
      ...bind(fx.local),
      digest: async (f, r) => ({ ...(await fx.local.digest(f, r)), seq: 3 }),
    }
    const rewound = await runOnce(fx, store, 'verify', { source: behind })
    assert.equal(rewound.outcome, 'rebootstrap')
    assert.match(rewound.error ?? '', /restored from an older copy/)
    await fx.source.resetEpoch(fx.feed)
    const reset = await runOnce(fx, store, 'verify')
    assert.equal(reset.outcome, 'rebootstrap')
    assert.match(reset.error ?? '', /epoch/)
  })

  it('refuses rows that do not match the listed hash (a source that lies), and changes nothing', async () => {
    const { fx, store } = await caughtUpPair()
    const state = (await store.state(fx.feed))!
    await store.claim(fx.feed, fx.feed, fx.local.description)
    await store.repair(fx.feed, [{ key: 'k5', row: null }], { epoch: state.epoch!, seq: state.seq })
    await store.release(fx.feed)
    const lying: FeedSource = {
      ...bind(fx.local),
      rows: async (f, k, s) => {
        const page = await fx.local.rows(f, k, s)
        return { ...page, rows: page.rows.map((r) => ({ key: r.key, seq: r.seq, data: { forged: true } })) }
      },
    }
    const run = await runOnce(fx, store, 'repair', { source: lying })
    assert.equal(run.outcome, 'failed')
    assert.match(run.error ?? '', /does not hash to the listed hash/)
    assert.equal(await store.get(fx.feed, 'k5'), undefined)
  })

  it('records a run that could not reach the source as failed', async () => {
    const { fx, store } = await caughtUpPair()
    const down: FeedSource = {
      ...bind(fx.local),
      digest: async () => {
        throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })
      },
    }
    const run = await runOnce(fx, store, 'verify', { source: down })
    assert.equal(run.outcome, 'failed')
    assert.equal((await store.runs(fx.feed))[0]?.outcome, 'failed')
  })
})

/** A FeedSource's methods bound to it, to override one in a test. */
function bind(source: FeedSource): FeedSource {
  return {
    description: source.description,
    info: (f, s) => source.info(f, s),
    changes: (f, r) => source.changes(f, r),
    snapshot: (f, r) => source.snapshot(f, r),
    rows: (f, k, s) => source.rows(f, k, s),
    digest: (f, r) => source.digest(f, r),
    keys: (f, r) => source.keys(f, r),
  }
}
