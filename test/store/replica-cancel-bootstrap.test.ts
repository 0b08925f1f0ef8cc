import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import { tmpDb } from '../helpers/tmp.js'

const FEED = 'customers'
const SOURCE = 'http://source.test'

async function keys(store: SqliteReplicaStore): Promise<string[]> {
  return (await store.rows(FEED, null, 100)).map((r) => `${r.key}@${r.seq}`)
}

describe('ReplicaStore.cancelBootstrap', () => {
  it('abandons a bootstrap half-written over a copy: the copy, checkpoint and digest stay as they were', async () => {
    const store = SqliteReplicaStore.open(tmpDb('replica.db'))
    await store.claim(FEED, FEED, SOURCE)
    await store.beginBootstrap(FEED, 'e1', 2)
    await store.writeSnapshotChunk(FEED, [{ key: 'a', seq: 1, data: 1 }, { key: 'b', seq: 2, data: 2 }], { afterKey: 'b', readHead: 2, done: true })
    await store.finishBootstrap(FEED)
    const before = await store.state(FEED)
    const digest = await store.digestLeaves(FEED)

    await store.beginBootstrap(FEED, 'e2', 9)
    await store.writeSnapshotChunk(FEED, [{ key: 'c', seq: 9, data: 3 }], { afterKey: 'c', readHead: 9, done: false })
    await store.cancelBootstrap(FEED)

    const after = await store.state(FEED)
    assert.deepEqual({ ...after, appliedAt: null }, { ...before, appliedAt: null })
    assert.equal(after?.bootstrap, null)
    assert.deepEqual(await keys(store), ['a@1', 'b@2'])
    assert.deepEqual(await store.digestLeaves(FEED), digest)
    assert.ok((await store.collectGarbage(FEED)) >= 1, 'the abandoned generation is garbage')
    // A later bootstrap starts from nothing, not from the abandoned rows.
    await store.beginBootstrap(FEED, 'e2', 9)
    await store.writeSnapshotChunk(FEED, [{ key: 'd', seq: 9, data: 4 }], { afterKey: 'd', readHead: 9, done: true })
    await store.finishBootstrap(FEED)
    assert.deepEqual(await keys(store), ['d@9'])
    await store.close()
  })

  it('leaves a replica without a copy without one, and is a no-op with no bootstrap in progress', async () => {
    const store = SqliteReplicaStore.open(tmpDb('replica.db'))
    await store.claim(FEED, FEED, SOURCE)
    await store.cancelBootstrap(FEED)
    await store.beginBootstrap(FEED, 'e1', 5)
    await store.writeSnapshotChunk(FEED, [{ key: 'a', seq: 5, data: 1 }], { afterKey: 'a', readHead: 5, done: true })
    await store.cancelBootstrap(FEED)
    const state = await store.state(FEED)
    assert.equal(state?.gen, 0)
    assert.equal(state?.bootstrap, null)
    assert.deepEqual(await keys(store), [])
    await store.close()
  })

  it('is refused to a store that does not hold the claim', async () => {
    const path = tmpDb('replica.db')
    const a = SqliteReplicaStore.open(path)
    await a.claim(FEED, FEED, SOURCE)
    const b = SqliteReplicaStore.open(path)
    await assert.rejects(b.cancelBootstrap(FEED), /not claimed by this replicator/)
    await a.close()
    await b.close()
  })
})
