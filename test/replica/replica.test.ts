import assert from 'node:assert/strict'
import type { Database } from 'better-sqlite3'
import { describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { BadRequestError } from '../../src/errors.js'
import { createReplica } from '../../src/replica/replica.js'
import type { PhaseChange } from '../../src/replica/phase.js'
import type { Change } from '../../src/protocol/types.js'
import type { ChangeTransport, Delivery, SubscribeOptions } from '../../src/transport/transport.js'
import { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import type { FeedSource } from '../../src/transport/feed-source.js'
import { faultyTransport } from '../helpers/faulty-transport.js'
import { phases, until } from '../helpers/phases.js'
import { projectionHook, replicaState, sourceFixture } from '../helpers/replica-fixture.js'

describe('replica', () => {
  it('refuses a snapshot chunk or pull limit past the protocol\'s bounds at once, rather than retrying a 400 for ever', async () => {
    const fx = await sourceFixture()
    const store = fx.openReplicaStore(fx.replicaPath())
    for (const [option, value] of [['snapshotChunk', 10_001], ['snapshotChunk', 0], ['pullLimit', 100_001], ['pullLimit', 1.5]] as const) {
      assert.throws(() => createReplica({ source: fx.local, feed: fx.feed, store, [option]: value }), (e: unknown) => {
        assert.ok(e instanceof BadRequestError, String(e))
        assert.match(e.message, new RegExp(`${option} must be a whole number from 1 to`))
        return true
      })
    }
    createReplica({ source: fx.local, feed: fx.feed, store, snapshotChunk: 10_000, pullLimit: 100_000 })
  })

  it('bootstraps while the owner writes, goes live, restarts from its checkpoint; the hook sees each change once', async () => {
    const fx = await sourceFixture()
    await fx.write(300, 3)
    const store = fx.openReplicaStore(fx.replicaPath())
    const projection = projectionHook()
    projection.install(store.db)
    const seenPhases: PhaseChange[] = []
    const replica = createReplica<Database>({
      source: fx.local,
      feed: fx.feed,
      store,
      apply: projection.hook,
      snapshotChunk: 7,
      onPhase: (c) => seenPhases.push(c),
      transport: new LongPollTransport(fx.local, { waitMs: 200 }),
    })
    const running = replica.run()
    const writing = fx.write(200, 2)
    await writing
    await replica.caughtUp()
    assert.equal(replica.phase, 'live')
    assert.deepEqual(await replicaState(store, fx.feed), await fx.sourceState())
    await replica.stop()
    await running
    assert.deepEqual(phases(seenPhases), ['idle→bootstrapping', 'bootstrapping→catching-up', 'catching-up→live', 'live→stopped'])

    // Restart: catching-up from the checkpoint, nothing applied twice.
    await fx.write(50, 2)
    const again = replica.run()
    await replica.caughtUp()
    assert.deepEqual(await replicaState(store, fx.feed), await fx.sourceState())
    const projected = new Map((store.db.prepare('SELECT key, value FROM projection').all() as Array<{ key: string; value: string }>).map((r) => [r.key, r.value]))
    const state = await fx.sourceState()
    assert.deepEqual(projected, new Map([...state].map(([k, v]) => [k, v.data])))
    for (const [seq, count] of projection.seen) assert.equal(count, 1, `change ${seq} seen ${count} times`)
    await replica.stop()
    await again
    assert.ok(phases(seenPhases).includes('stopped→idle'))
    assert.ok(phases(seenPhases).includes('idle→catching-up'))
    // The digests agree.
    const [mine, theirs] = [await store.digestLeaves(fx.feed), await fx.source.digestLeaves(fx.feed)]
    assert.equal(mine.seq, theirs.seq)
    assert.deepEqual(mine.leaves, theirs.leaves)
    await store.close()
  })

  it('stops before starting when the signal is already aborted (idle → stopped)', async () => {
    const fx = await sourceFixture()
    const store = fx.openReplicaStore(fx.replicaPath())
    const seen: PhaseChange[] = []
    const replica = createReplica({ source: fx.local, feed: fx.feed, store, onPhase: (c) => seen.push(c) })
    await replica.run(AbortSignal.abort())
    assert.deepEqual(phases(seen), ['idle→stopped'])
    await store.close()
  })

  it('re-bootstraps on a new epoch, keeping the old copy readable until the swap', async () => {
    const fx = await sourceFixture()
    await fx.write(100, 2)
    const store = fx.openReplicaStore(fx.replicaPath())
    const seen: PhaseChange[] = []
    const replica = createReplica({
      source: fx.local,
      feed: fx.feed,
      store,
      onPhase: (c) => seen.push(c),
      transport: new LongPollTransport(fx.local, { waitMs: 100 }),
    })
    const running = replica.run()
    await replica.caughtUp()
    const before = await replicaState(store, fx.feed)
    const { epoch } = await fx.source.getFeed(fx.feed)
    await fx.source.resetEpoch(fx.feed)
    await fx.write(20, 1)
    await until(() => replica.status().epoch !== epoch && replica.phase === 'live', 'the new epoch')
    assert.ok(phases(seen).includes('live→bootstrapping') || phases(seen).includes('catching-up→bootstrapping'))
    assert.deepEqual(await replicaState(store, fx.feed), await fx.sourceState())
    assert.ok(before.size > 0)
    await replica.stop()
    await running
    await store.close()
  })

  it('restarts a bootstrap whose source changes epoch midway (bootstrapping → bootstrapping)', async () => {
    const fx = await sourceFixture()
    await fx.write(200, 1, 500)
    const store = fx.openReplicaStore(fx.replicaPath())
    const seen: PhaseChange[] = []
    let chunks = 0
    const source: FeedSource = {
      description: fx.local.description,
      info: (f, s) => fx.local.info(f, s),
      changes: (f, r) => fx.local.changes(f, r),
      rows: (f, k, s) => fx.local.rows(f, k, s),
      digest: (f, r) => fx.local.digest(f, r),
      keys: (f, r) => fx.local.keys(f, r),
      async snapshot(f, r) {
        if (++chunks === 3) await fx.source.resetEpoch(fx.feed)
        return fx.local.snapshot(f, r)
      },
    }
    const replica = createReplica({ source, feed: fx.feed, store, snapshotChunk: 20, onPhase: (c) => seen.push(c), backoff: undefined })
    const running = replica.run()
    await replica.caughtUp()
    assert.ok(phases(seen).includes('bootstrapping→bootstrapping'), phases(seen).join(', '))
    assert.equal(replica.status().epoch, (await fx.source.getFeed(fx.feed)).epoch)
    assert.deepEqual(await replicaState(store, fx.feed), await fx.sourceState())
    await replica.stop()
    await running
    await store.close()
  })

  it('re-bootstraps when it is further behind than retention, saying by how much', async () => {
    const fx = await sourceFixture()
    await fx.source.ensureFeed(fx.feed, { retention: { changes: 10 } })
    await fx.write(20)
    const path = fx.replicaPath()
    let store = fx.openReplicaStore(path)
    let replica = createReplica({ source: fx.local, feed: fx.feed, store })
    let running = replica.run()
    await replica.caughtUp()
    await replica.stop()
    await running
    await store.close()
    await fx.write(100)
    await fx.source.maintain()
    const warnings: string[] = []
    const seen: PhaseChange[] = []
    store = fx.openReplicaStore(path)
    replica = createReplica({
      source: fx.local,
      feed: fx.feed,
      store,
      onPhase: (c) => seen.push(c),
      logger: { debug() {}, info() {}, error() {}, warn: (_o, msg) => warnings.push(msg ?? '') },
    })
    running = replica.run()
    await replica.caughtUp()
    assert.ok(phases(seen).includes('catching-up→bootstrapping'), phases(seen).join(', '))
    assert.ok(warnings.some((w) => /90 changes behind the oldest change .* raise the feed's retention/.test(w)), warnings.join('\n'))
    assert.deepEqual(await replicaState(store, fx.feed), await fx.sourceState())
    await replica.stop()
    await running
    await store.close()
  })

  it('fails on a throwing hook, naming the change, and resumes at it once the hook is fixed', async () => {
    const fx = await sourceFixture()
    await fx.write(5)
    const store = fx.openReplicaStore(fx.replicaPath())
    let broken = false
    const seen: PhaseChange[] = []
    const applied: number[] = []
    const replica = createReplica<Database>({
      source: fx.local,
      feed: fx.feed,
      store,
      onPhase: (c) => seen.push(c),
      transport: new LongPollTransport(fx.local, { waitMs: 100 }),
      apply(change: Change) {
        if (broken) throw new Error('projection bug')
        applied.push(change.seq)
      },
    })
    let running = replica.run()
    await replica.caughtUp()
    broken = true
    await fx.source.write(fx.feed, [{ op: 'upsert', key: 'boom', data: 1 }])
    await assert.rejects(running, (error: Error & { code?: string; seq?: number; key?: string }) => {
      assert.equal(error.code, 'apply-failed')
      assert.equal(error.key, 'boom')
      assert.match(error.message, /change \d+ \(key "boom"\): projection bug/)
      return true
    })
    assert.equal(replica.phase, 'failed')
    assert.ok(phases(seen).includes('live→failed') || phases(seen).includes('catching-up→failed'))
    const checkpoint = (await store.state(fx.feed))!.seq
    assert.equal(checkpoint, (await fx.source.getFeed(fx.feed)).head - 1)
    broken = false
    running = replica.run()
    await replica.caughtUp()
    assert.ok(phases(seen).includes('failed→idle'))
    assert.ok((await store.get(fx.feed, 'boom')) !== undefined)
    await replica.stop()
    await running
    await store.close()
  })

  it('fails at bootstrap when the hook throws during the swap (bootstrapping → failed)', async () => {
    const fx = await sourceFixture()
    await fx.write(5)
    const store = fx.openReplicaStore(fx.replicaPath())
    const seen: PhaseChange[] = []
    const replica = createReplica({
      source: fx.local,
      feed: fx.feed,
      store,
      onPhase: (c) => seen.push(c),
      apply() {
        throw new Error('nope')
      },
    })
    await assert.rejects(replica.run(), { code: 'apply-failed' })
    assert.deepEqual(phases(seen), ['idle→bootstrapping', 'bootstrapping→failed'])
    assert.equal((await store.state(fx.feed))!.gen, 0)
    await store.close()
  })

  it('is refused when another replicator holds the replica (idle → failed)', async () => {
    const fx = await sourceFixture()
    const path = fx.replicaPath()
    const a = fx.openReplicaStore(path)
    const first = createReplica({ source: fx.local, feed: fx.feed, store: a, transport: new LongPollTransport(fx.local, { waitMs: 100 }) })
    const running = first.run()
    await first.caughtUp()
    const b = fx.openReplicaStore(path)
    const seen: PhaseChange[] = []
    const second = createReplica({ source: fx.local, feed: fx.feed, store: b, onPhase: (c) => seen.push(c) })
    await assert.rejects(second.run(), { code: 'conflict' })
    assert.deepEqual(phases(seen), ['idle→failed'])
    await first.stop()
    await running
    await a.close()
    await b.close()
  })

  it('heals dropped, duplicated and reordered deliveries from the log', async () => {
    const fx = await sourceFixture()
    const store = fx.openReplicaStore(fx.replicaPath())
    const projection = projectionHook()
    projection.install(store.db)
    const inner = new LongPollTransport(fx.local, { waitMs: 100, limit: 5 })
    const lossy = faultyTransport(inner, (n) => (n % 5 === 0 ? 'drop' : n % 7 === 0 ? 'duplicate' : n % 3 === 0 ? 'hold' : 'reverse'))
    const replica = createReplica<Database>({ source: fx.local, feed: fx.feed, store, transport: lossy, apply: projection.hook, headCheckMs: 200 })
    const running = replica.run()
    await replica.caughtUp()
    for (let i = 0; i < 30; i++) {
      await fx.write(3, 3)
      await delay(2)
    }
    await replica.caughtUp()
    assert.deepEqual(await replicaState(store, fx.feed), await fx.sourceState())
    for (const [seq, count] of projection.seen) assert.equal(count, 1, `change ${seq} seen ${count} times`)
    await replica.stop()
    await running
    await store.close()
  })

  it('catches a lost last message with the head check', async () => {
    const fx = await sourceFixture()
    const store = fx.openReplicaStore(fx.replicaPath())
    // A push transport that goes silent after its first delivery.
    const silent: ChangeTransport = {
      name: 'silent',
      async *subscribe(_feed: string, options: SubscribeOptions): AsyncIterable<Delivery> {
        yield { epoch: options.epoch, changes: [] }
        if (!options.signal.aborted) await new Promise((resolve) => options.signal.addEventListener('abort', resolve))
      },
    }
    const warnings: string[] = []
    const replica = createReplica({
      source: fx.local,
      feed: fx.feed,
      store,
      transport: silent,
      headCheckMs: 50,
      logger: { debug() {}, info() {}, error() {}, warn: (_o, msg) => warnings.push(msg ?? '') },
    })
    const running = replica.run()
    await replica.caughtUp()
    await fx.write(3)
    await replica.caughtUp()
    assert.ok(warnings.some((w) => /has not advanced .* pulling from the log/.test(w)), warnings.join('\n'))
    await replica.stop()
    await running
    await store.close()
  })

  it('re-bootstraps when the source went back in history under the same epoch', async () => {
    const fx = await sourceFixture()
    await fx.write(10)
    const store = fx.openReplicaStore(fx.replicaPath())
    const seen: PhaseChange[] = []
    // A source that reports a lower head than the replica's checkpoint, as a restored copy would.
    let rewound = false
    const source: FeedSource = {
      description: fx.local.description,
      async info(f, s) {
        const info = await fx.local.info(f, s)
        return rewound ? { ...info, head: 3 } : info
      },
      async changes(f, r) {
        const page = await fx.local.changes(f, r)
        return rewound ? { ...page, changes: [], head: 3, last: r.after } : page
      },
      snapshot: (f, r) => fx.local.snapshot(f, r),
      rows: (f, k, s) => fx.local.rows(f, k, s),
      digest: (f, r) => fx.local.digest(f, r),
      keys: (f, r) => fx.local.keys(f, r),
    }
    const replica = createReplica({ source, feed: fx.feed, store, onPhase: (c) => seen.push(c), transport: new LongPollTransport(source, { waitMs: 50 }) })
    const running = replica.run()
    await replica.caughtUp()
    rewound = true
    await until(() => phases(seen).some((p) => p.endsWith('→bootstrapping') && !p.startsWith('idle')), 'a re-bootstrap')
    rewound = false
    await replica.caughtUp()
    await replica.stop()
    await running
    await store.close()
  })

  it('goes back to catching-up when it falls far behind while live', async () => {
    const fx = await sourceFixture()
    const store = fx.openReplicaStore(fx.replicaPath())
    const seen: PhaseChange[] = []
    const replica = createReplica({
      source: fx.local,
      feed: fx.feed,
      store,
      catchUpThreshold: 5,
      onPhase: (c) => seen.push(c),
      transport: new LongPollTransport(fx.local, { waitMs: 100, limit: 2 }),
    })
    const running = replica.run()
    await replica.caughtUp()
    await until(() => replica.phase === 'live', 'live')
    // 40 transactions committed back to back, before the replica gets a turn.
    await Promise.all(Array.from({ length: 40 }, (_, i) => fx.source.write(fx.feed, [{ op: 'upsert', key: `k${i}`, data: i }])))
    await replica.caughtUp()
    assert.ok(phases(seen).includes('live→catching-up'), phases(seen).join(', '))
    await replica.stop()
    await running
    await store.close()
  })
})
