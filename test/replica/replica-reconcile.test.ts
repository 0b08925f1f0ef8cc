import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import type { PhaseChange } from '../../src/replica/phase.js'
import { createReplica } from '../../src/replica/replica.js'
import type { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import type { FeedSource } from '../../src/transport/feed-source.js'
import { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import { faultyTransport } from '../helpers/faulty-transport.js'
import { phases, until } from '../helpers/phases.js'
import { replicaState, sourceFixture } from '../helpers/replica-fixture.js'

type Fixture = Awaited<ReturnType<typeof sourceFixture>>

/** Writes a wrong version of `key` (and a key the source never had) into the replica, as a faulty writer would. */
async function corrupt(fx: Fixture, store: SqliteReplicaStore, key: string): Promise<void> {
  const s = (await store.state(fx.feed))!
  await store.claim(fx.feed, fx.feed, fx.local.description)
  await store.repair(fx.feed, [{ key, row: { key, seq: 1, data: 'wrong' } }, { key: 'ghost', row: { key: 'ghost', seq: 1, data: 'boo' } }], {
    epoch: s.epoch!,
    seq: s.seq,
  })
  await store.release(fx.feed)
}

async function pair() {
  const fx = await sourceFixture()
  await fx.write(100, 2)
  const store = fx.openReplicaStore(fx.replicaPath())
  const first = createReplica({ source: fx.local, feed: fx.feed, store })
  const running = first.run()
  await first.caughtUp()
  await first.stop()
  await running
  return { fx, store }
}

describe('replica reconciling', () => {
  it('repairs drift at start-up (idle → reconciling → catching-up) and then follows the feed', async () => {
    const { fx, store } = await pair()
    await corrupt(fx, store, 'k1')
    const seen: PhaseChange[] = []
    const replica = createReplica({ source: fx.local, feed: fx.feed, store, reconcile: { onStart: true }, onPhase: (c) => seen.push(c) })
    const running = replica.run()
    await until(() => replica.status().lastRun !== null, 'the start-up run')
    const run = replica.status().lastRun!
    assert.equal(run.trigger, 'start')
    assert.equal(run.outcome, 'repaired')
    assert.equal(run.repaired, 2)
    await fx.write(20)
    await replica.caughtUp()
    assert.deepEqual(await replicaState(store, fx.feed), await fx.sourceState())
    assert.deepEqual(phases(seen).slice(0, 2), ['idle→reconciling', 'reconciling→catching-up'])
    await replica.stop()
    await running
  })

  it('runs on demand while live (live → reconciling), writing nothing while it compares', async () => {
    const { fx, store } = await pair()
    const seen: PhaseChange[] = []
    const replica = createReplica({ source: fx.local, feed: fx.feed, store, onPhase: (c) => seen.push(c), transport: new LongPollTransport(fx.local, { waitMs: 5000 }) })
    const running = replica.run()
    await replica.caughtUp()
    await until(() => replica.phase === 'live', 'live')
    const verify = await replica.reconcile({ mode: 'verify' })
    assert.equal(verify.trigger, 'demand')
    assert.equal(verify.outcome, 'intact')
    assert.ok(phases(seen).includes('live→reconciling'), phases(seen).join(', '))
    assert.ok(phases(seen).includes('reconciling→catching-up'))
    await replica.stop()
    await running
  })

  it('takes runs asked for by another process through the store (tidemark verify/repair)', async () => {
    const { fx, store } = await pair()
    const replica = createReplica({ source: fx.local, feed: fx.feed, store, reconcile: { requestPollMs: 20 } })
    const running = replica.run()
    await replica.caughtUp()
    const other = fx.openReplicaStore(store.location)
    const id = await other.requestRun(fx.feed, { mode: 'verify', deep: true })
    await until(async () => (await other.runs(fx.feed)).some((r) => r.requestId === id), 'the requested run')
    const run = (await other.runs(fx.feed)).find((r) => r.requestId === id)!
    assert.equal(run.outcome, 'intact')
    assert.equal(run.deep, true)
    assert.deepEqual(await other.takeRunRequests(fx.feed), [], 'each request is taken once')
    await other.close()
    await replica.stop()
    await running
  })

  it('runs on a schedule with jitter', async () => {
    const { fx, store } = await pair()
    const replica = createReplica({ source: fx.local, feed: fx.feed, store, reconcile: { everyMs: 100, jitter: 0.5, mode: 'verify' } })
    const running = replica.run()
    await until(async () => (await store.runs(fx.feed)).filter((r) => r.trigger === 'schedule').length >= 3, 'three scheduled runs')
    await replica.stop()
    await running
  })

  it('reconciles when the checkpoint has not moved within the SLA while the head has', async () => {
    const { fx, store } = await pair()
    // A transport that loses everything, and a head check slower than the SLA: only the SLA notices.
    const lossy = faultyTransport(new LongPollTransport(fx.local, { waitMs: 100 }), () => 'drop')
    const replica = createReplica({ source: fx.local, feed: fx.feed, store, transport: lossy, headCheckMs: 60_000, reconcile: { slaMs: 150, mode: 'verify' } })
    const running = replica.run()
    await replica.caughtUp()
    await fx.write(5)
    await until(async () => (await store.runs(fx.feed)).some((r) => r.trigger === 'sla'), 'an SLA run')
    const run = (await store.runs(fx.feed)).find((r) => r.trigger === 'sla')!
    assert.equal(run.outcome, 'intact', 'lag is not drift')
    assert.ok(run.lagging > 0)
    await replica.stop()
    await running
  })

  it('re-bootstraps when a repair finds the source rewound (reconciling → bootstrapping), and says so', async () => {
    const { fx, store } = await pair()
    let rewound = true
    const source: FeedSource = {
      description: fx.local.description,
      info: (f, s) => fx.local.info(f, s),
      changes: (f, r) => fx.local.changes(f, r),
      snapshot: (f, r) => fx.local.snapshot(f, r),
      rows: (f, k, s) => fx.local.rows(f, k, s),
      async digest(f, r) {
        const page = await fx.local.digest(f, r)
        return rewound ? { ...page, seq: 1 } : page
      },
      keys: (f, r) => fx.local.keys(f, r),
    }
    const seen: PhaseChange[] = []
    const replica = createReplica({ source, feed: fx.feed, store, reconcile: { onStart: true }, onPhase: (c) => seen.push(c) })
    const running = replica.run()
    await until(() => phases(seen).includes('reconciling→bootstrapping'), 'the re-bootstrap')
    rewound = false
    assert.equal(replica.status().lastRun?.outcome, 'rebootstrap')
    assert.match(replica.status().lastRun?.error ?? '', /restored from an older copy/)
    await replica.caughtUp()
    assert.deepEqual(await replicaState(store, fx.feed), await fx.sourceState())
    await replica.stop()
    await running
  })

  it('rejects a pending on-demand run when the replica stops', async () => {
    const { fx, store } = await pair()
    const replica = createReplica({ source: fx.local, feed: fx.feed, store })
    assert.throws(() => replica.reconcile(), /run\(\) it before reconciling/)
    const running = replica.run()
    await replica.caughtUp()
    await replica.stop()
    await running
  })
})
