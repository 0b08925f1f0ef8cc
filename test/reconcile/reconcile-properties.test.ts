import assert from 'node:assert/strict'
import fc from 'fast-check'
import { copyFileSync, rmSync } from 'node:fs'
import { it } from 'node:test'
import { reconcile } from '../../src/reconcile/reconcile.js'
import type { ReconcileMode } from '../../src/reconcile/run.js'
import { createReplica } from '../../src/replica/replica.js'
import type { Seq } from '../../src/protocol/types.js'
import type { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import { propertyParameters } from '../helpers/property.js'
import { replicaState, sourceFixture } from '../helpers/replica-fixture.js'

type Fixture = Awaited<ReturnType<typeof sourceFixture>>

type Corruption =
  | { kind: 'edit'; pick: number }
  | { kind: 'delete'; pick: number }
  | { kind: 'insert'; n: number }
  | { kind: 'wrong-version'; pick: number }

const corruptionArb: fc.Arbitrary<Corruption> = fc.oneof(
  fc.record({ kind: fc.constant('edit' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('delete' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), n: fc.nat({ max: 1000 }) }),
  fc.record({ kind: fc.constant('wrong-version' as const), pick: fc.nat() }),
)

/** Catches the replica up with the source and stops it. */
async function sync(fx: Fixture, store: SqliteReplicaStore): Promise<void> {
  const replica = createReplica({ source: fx.local, feed: fx.feed, store })
  const running = replica.run()
  await replica.caughtUp()
  await replica.stop()
  await running
}

/** The source's state at `seq`, replayed from its log (the whole log is kept in these tests). */
async function sourceStateAt(fx: Fixture, seq: Seq): Promise<Map<string, { seq: number; data: string }>> {
  const out = new Map<string, { seq: number; data: string }>()
  for await (const batch of fx.source.changes(fx.feed, 0)) {
    for (const c of batch) {
      if (c.seq > seq) return out
      if (c.op === 'delete') out.delete(c.key)
      else out.set(c.key, { seq: c.seq, data: JSON.stringify(c.data) })
    }
  }
  return out
}

async function once(fx: Fixture, store: SqliteReplicaStore, mode: ReconcileMode) {
  await store.claim(fx.feed, fx.feed, fx.local.description)
  try {
    return await reconcile({ source: fx.local, feed: fx.feed, store, name: fx.feed, mode, deep: true, trigger: 'demand' })
  } finally {
    await store.release(fx.feed)
  }
}

/** Applies one corruption with plain SQL (or through the store, as a faulty writer); returns the key it touched. */
async function corrupt(fx: Fixture, store: SqliteReplicaStore, c: Corruption): Promise<string | undefined> {
  const state = (await store.state(fx.feed))!
  const keys = (store.db.prepare('SELECT key FROM tidemark_replica_rows WHERE name = ? AND gen = ? AND data IS NOT NULL ORDER BY key').pluck().all(fx.feed, state.gen) as string[])
  const pick = (n: number): string | undefined => keys[n % Math.max(1, keys.length)]
  switch (c.kind) {
    case 'edit': {
      const key = pick(c.pick)
      if (key === undefined) return undefined
      store.db.prepare('UPDATE tidemark_replica_rows SET data = ? WHERE name = ? AND gen = ? AND key = ?').run(JSON.stringify({ edited: c.pick }), fx.feed, state.gen, key)
      return key
    }
    case 'delete': {
      const key = pick(c.pick)
      if (key === undefined) return undefined
      store.db.prepare('DELETE FROM tidemark_replica_rows WHERE name = ? AND gen = ? AND key = ?').run(fx.feed, state.gen, key)
      return key
    }
    case 'insert': {
      const key = `extra${c.n}`
      store.db.prepare('INSERT OR REPLACE INTO tidemark_replica_rows (name, gen, key, seq, data) VALUES (?, ?, ?, ?, ?)').run(fx.feed, state.gen, key, Math.max(1, state.seq), '"x"')
      return key
    }
    case 'wrong-version': {
      const key = pick(c.pick) ?? 'k0'
      await store.claim(fx.feed, fx.feed, fx.local.description)
      await store.repair(fx.feed, [{ key, row: { key, seq: 1, data: { wrong: c.pick } } }], { epoch: state.epoch!, seq: state.seq })
      await store.release(fx.feed)
      return key
    }
  }
}

it('after random corruptions (edits, deletes, extra rows, wrong versions, an older copy of the file) with the owner writing, repair leaves the replica equal to the source at its checkpoint, and verify finds no false drift', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(corruptionArb, { maxLength: 8 }), fc.boolean(), fc.integer(), async (corruptions, rollBack, seed) => {
      let s = seed >>> 0
      const random = () => (s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32
      const fx = await sourceFixture()
      const path = fx.replicaPath()
      const older = `${path}.older`
      await fx.write(60, 3, 80, random)
      let store = fx.openReplicaStore(path)
      await sync(fx, store)
      if (rollBack) {
        // An older copy of the replica file, consistent at its own checkpoint (as a backup is).
        await store.close()
        copyFileSync(path, older)
        store = fx.openReplicaStore(path)
      }
      await fx.write(40, 3, 80, random)
      await sync(fx, store)

      // Plain lag is never drift: the owner has moved on, nothing was corrupted.
      await fx.write(20, 3, 80, random)
      const lagOnly = await once(fx, store, 'verify')
      assert.equal(lagOnly.drifted, 0, `false drift: ${JSON.stringify(lagOnly.drift)}`)
      assert.equal(lagOnly.outcome, 'intact')

      if (rollBack) {
        await store.close()
        for (const suffix of ['-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true })
        copyFileSync(older, path)
        store = fx.openReplicaStore(path)
      }
      const touched = new Set<string>()
      for (const c of corruptions) {
        const key = await corrupt(fx, store, c)
        if (key !== undefined) touched.add(key)
      }

      // Repair while the owner keeps writing.
      let writing = true
      const owner = (async () => {
        while (writing) {
          await fx.write(1, 2, 80, random)
          await new Promise((resolve) => setImmediate(resolve))
        }
      })()
      let repair
      try {
        repair = await once(fx, store, 'repair')
      } finally {
        writing = false
        await owner
      }
      assert.notEqual(repair.outcome, 'failed', repair.error)
      for (const d of repair.drift) assert.ok(touched.has(d.key), `drift reported for untouched key ${d.key}: ${JSON.stringify(d)}`)

      // At its checkpoint the replica now equals the source, except keys the owner wrote again
      // since (lag: the log brings them) …
      const checkpoint = (await store.state(fx.feed))!.seq
      const mine = await replicaState(store, fx.feed)
      const theirs = await sourceStateAt(fx, checkpoint)
      for (const key of new Set([...mine.keys(), ...theirs.keys()])) {
        if (JSON.stringify(mine.get(key)) === JSON.stringify(theirs.get(key))) continue
        const now = (await fx.source.rows(fx.feed, [key])).rows[0]
        assert.ok(now !== undefined && now.seq > checkpoint, `key ${key} differs from the source at ${checkpoint} and is not lag: ${JSON.stringify([mine.get(key), theirs.get(key)])}`)
      }
      // … and once caught up, it equals the source.
      await sync(fx, store)
      assert.deepEqual(await replicaState(store, fx.feed), await fx.sourceState(), 'caught up after repair, the replica equals the source')
      const again = await once(fx, store, 'verify')
      assert.equal(again.outcome, 'intact')
      assert.equal(again.drifted, 0)
      assert.equal(again.digestRepair, undefined, 'the repaired digest matches the rows')
      await store.close()
    }),
    propertyParameters(12),
  )
})
