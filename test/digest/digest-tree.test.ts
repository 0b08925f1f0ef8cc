import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DigestTree, FANOUT, TREE_DEPTH, childrenAddUp } from '../../src/digest/digest-tree.js'
import { addHash, hashToBuffer, subHash } from '../../src/digest/row-hash.js'
import { createReplica } from '../../src/replica/replica.js'
import { prng } from '../../src/util/prng.js'
import { sourceFixture } from '../helpers/replica-fixture.js'

function randomHash(rand: () => number): bigint {
  let h = 0n
  for (let i = 0; i < 4; i++) h = (h << 32n) | BigInt(Math.floor(rand() * 2 ** 32))
  return h
}

/** Every node of both trees equal. */
function assertSameTree(a: DigestTree, b: DigestTree): void {
  for (let level = 0; level <= TREE_DEPTH; level++) {
    for (let i = 0; i < FANOUT ** level; i++) {
      const x = a.node(level, i)
      const y = b.node(level, i)
      if (x.count !== y.count || x.sum !== y.sum) assert.fail(`node ${i} of level ${level}: ${x.count}/${x.sum} vs ${y.count}/${y.sum}`)
    }
  }
}

describe('digest tree', () => {
  it('kept up to date by deltas (added, removed, packed) equals the tree rebuilt from the final leaves', () => {
    const rand = prng(7)
    const leaves = new Map<number, { count: number; sum: bigint }>()
    const live = new DigestTree()
    for (let i = 0; i < 5000; i++) {
      const bucket = Math.floor(rand() * 2 ** 16)
      const h = randomHash(rand)
      const leaf = leaves.get(bucket) ?? { count: 0, sum: 0n }
      const kind = rand()
      if (kind < 0.5) {
        live.add(bucket, 1, h)
        leaves.set(bucket, { count: leaf.count + 1, sum: addHash(leaf.sum, h) })
      } else if (kind < 0.8) {
        live.subtract(bucket, 1, h)
        leaves.set(bucket, { count: leaf.count - 1, sum: subHash(leaf.sum, h) })
      } else {
        const packed = Buffer.alloc(24)
        packed.writeUInt32BE(bucket, 0)
        packed.writeInt32BE(2, 4)
        hashToBuffer(h).copy(packed, 8)
        live.addPacked(packed)
        leaves.set(bucket, { count: leaf.count + 2, sum: addHash(leaf.sum, h) })
      }
    }
    const rebuilt = new DigestTree([...leaves].map(([bucket, l]) => ({ bucket, ...l })))
    assertSameTree(live, rebuilt)
    assert.ok(childrenAddUp(live.root, live.children(0, 0)))
    assertSameTree(live.clone(), live)
  })

  it("the stores' trees kept in memory stay equal to trees rebuilt from their leaves", async () => {
    const fx = await sourceFixture()
    await fx.write(200, 3, 300)
    const store = fx.openReplicaStore(fx.replicaPath())
    const replica = createReplica({ source: fx.local, feed: fx.feed, store })
    const running = replica.run()
    await replica.caughtUp()
    await store.digestTree(fx.feed)
    await fx.source.digestTree(fx.feed)
    for (let round = 0; round < 5; round++) {
      await fx.write(50, 3, 300)
      await replica.caughtUp()
      const source = await fx.source.digestTree(fx.feed)
      assertSameTree(source.tree, new DigestTree((await fx.source.digestLeaves(fx.feed)).leaves))
      const mine = await store.digestTree(fx.feed)
      assertSameTree(mine.tree, new DigestTree((await store.digestLeaves(fx.feed)).leaves))
      assertSameTree(mine.tree, source.tree)
    }
    await replica.stop()
    await running
  })
})
