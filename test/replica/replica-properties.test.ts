import assert from 'node:assert/strict'
import type { Database } from 'better-sqlite3'
import fc from 'fast-check'
import { it } from 'node:test'
import { createReplica, type Replica } from '../../src/replica/replica.js'
import type { Change } from '../../src/protocol/types.js'
import type { ReplicaStore } from '../../src/store/replica-store.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import { faultyTransport } from '../helpers/faulty-transport.js'
import { propertyParameters } from '../helpers/property.js'
import { replicaState, sourceFixture } from '../helpers/replica-fixture.js'

type Action =
  | { kind: 'write'; txs: number; size: number }
  | { kind: 'start' }
  | { kind: 'stop' }
  | { kind: 'crash'; afterWrites: number }
  | { kind: 'settle' }

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('write' as const), txs: fc.integer({ min: 1, max: 15 }), size: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('start' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('stop' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('crash' as const), afterWrites: fc.integer({ min: 0, max: 6 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('settle' as const) }) },
)

const faultsArb = fc.record({ drop: fc.integer({ min: 0, max: 4 }), duplicate: fc.integer({ min: 0, max: 4 }), reorder: fc.integer({ min: 0, max: 4 }) })


class Crash extends Error {}

/** Wraps a store so that it "dies" before its n-th write: nothing more reaches the database. */
function crashing<Tx>(store: ReplicaStore<Tx>, writes: number, onCrash: () => void): ReplicaStore<Tx> {
  let left = writes
  let dead = false
  const writing = new Set(['beginBootstrap', 'writeSnapshotChunk', 'applyToBootstrap', 'finishBootstrap', 'apply', 'collectGarbage', 'release', 'renew', 'noteSourceHead'])
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown
      if (typeof value !== 'function') return value
      return (...args: unknown[]) => {
        if (dead) return Promise.reject(new Crash('crashed'))
        if (writing.has(String(prop)) && prop !== 'renew' && prop !== 'noteSourceHead' && left-- <= 0) {
          dead = true
          onCrash()
          return Promise.reject(new Crash('crashed'))
        }
        return (value as (...a: unknown[]) => unknown).apply(target, args)
      }
    },
  })
}

it('after any interleaving of writes, starts, stops, crashes and faulty deliveries, a caught-up replica equals the source, and the hook saw each change once', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(actionArb, { maxLength: 14 }), faultsArb, fc.integer(), async (actions, faults, seed) => {
      let s = seed >>> 0
      const random = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32)
      const fx = await sourceFixture()
      const path = fx.replicaPath()
      const setup = SqliteReplicaStore.open(path)
      setup.db.exec('CREATE TABLE projection (key TEXT PRIMARY KEY, value TEXT NOT NULL); CREATE TABLE seen (seq INTEGER PRIMARY KEY, n INTEGER NOT NULL)')
      await setup.close()
      // The hook writes its projection and counts each change in the same transaction: crash-proof evidence.
      const hook = (change: Change, db: Database) => {
        db.prepare('INSERT INTO seen (seq, n) VALUES (?, 1) ON CONFLICT (seq) DO UPDATE SET n = n + 1').run(change.seq)
        if (change.op === 'upsert') {
          db.prepare('INSERT INTO projection VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(change.key, JSON.stringify(change.data))
        } else db.prepare('DELETE FROM projection WHERE key = ?').run(change.key)
      }
      let current: { replica: Replica<Database>; store: SqliteReplicaStore; running: Promise<void> } | undefined
      const start = (crashAfter?: number) => {
        const store = SqliteReplicaStore.open(path)
        let replica: Replica<Database> | undefined
        const wrapped = crashAfter === undefined ? store : crashing(store, crashAfter, () => void replica?.stop())
        replica = createReplica<Database>({
          source: fx.local,
          feed: fx.feed,
          store: wrapped,
          apply: hook,
          snapshotChunk: 4,
          pullLimit: 3,
          headCheckMs: 30,
          leaseMs: crashAfter === undefined ? 15_000 : 1,
          backoff: undefined,
          transport: faultyTransport(new LongPollTransport(fx.local, { waitMs: 20, limit: 3 }), () => {
            const roll = random() * 10
            if (roll < faults.drop) return 'drop'
            if (roll < faults.drop + faults.reorder) return 'hold'
            return random() * 10 < faults.duplicate ? 'duplicate' : 'deliver'
          }),
        })
        const running = replica.run().catch((error: unknown) => {
          if (!(error instanceof Crash)) throw error
        })
        current = { replica, store, running }
      }
      const stop = async () => {
        if (!current) return
        await current.replica.stop()
        await current.running
        await current.store.close()
        current = undefined
      }
      try {
        for (const action of actions) {
          switch (action.kind) {
            case 'write':
              await fx.write(action.txs, action.size, 12, random)
              break
            case 'start':
              if (!current) start()
              break
            case 'stop':
              await stop()
              break
            case 'crash':
              await stop()
              start(action.afterWrites)
              await new Promise((r) => setTimeout(r, 5))
              break
            case 'settle':
              if (current) await Promise.race([current.replica.caughtUp().catch(() => {}), current.running])
              break
          }
        }
        await stop()
        start()
        // Bounded: a replica that never catches up fails the property instead of hanging it.
        await current!.replica.caughtUp(undefined, AbortSignal.timeout(20_000))
        const store = current!.store
        const state = await store.state(fx.feed)
        assert.equal(state!.seq, (await fx.source.getFeed(fx.feed)).head)
        assert.deepEqual(await replicaState(store, fx.feed), await fx.sourceState())
        const projected = new Map((store.db.prepare('SELECT key, value FROM projection').all() as Array<{ key: string; value: string }>).map((r) => [r.key, r.value]))
        assert.deepEqual(projected, new Map([...(await fx.sourceState())].map(([k, v]) => [k, v.data])))
        const twice = store.db.prepare('SELECT seq, n FROM seen WHERE n > 1').all()
        assert.deepEqual(twice, [], 'the hook saw a change more than once')
        const mine = await store.digestLeaves(fx.feed)
        const theirs = await fx.source.digestLeaves(fx.feed)
        assert.deepEqual(mine.leaves, theirs.leaves)
      } finally {
        await stop()
      }
    }),
    propertyParameters(25),
  )
})
