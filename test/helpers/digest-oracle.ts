import { DigestTree } from '../../src/digest/digest-tree.js'
import { addHash, bucketOf, rowHash } from '../../src/digest/row-hash.js'
import { compareKeys } from '../../src/protocol/key-order.js'
import type { BucketList, DigestEntry } from '../../src/protocol/types.js'
import type { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'

export interface Oracle {
  head: number
  /** Every bucket with an entry (tombstones included), entries in key order. */
  lists: Map<number, BucketList>
  tree: DigestTree
}

/**
 * A feed's digest worked out from its log alone (no retention in these tests): each key's last
 * change, hashed here, bucketed here, summed here. Nothing of the indexer or the digest tables is
 * used, so the store and the server are checked against an independent computation.
 */
export async function oracle(store: SqliteSourceStore, feed: string): Promise<Oracle> {
  const latest = new Map<string, { seq: number; data: string | null }>()
  let head = 0
  for await (const batch of store.changes(feed, 0)) {
    for (const c of batch) {
      latest.set(c.key, { seq: c.seq, data: c.dataText })
      head = c.seq
    }
  }
  const lists = new Map<number, BucketList>()
  for (const [key, v] of latest) {
    const bucket = bucketOf(key)
    let list = lists.get(bucket)
    if (!list) lists.set(bucket, (list = { bucket, count: 0, sum: 0n, entries: [] }))
    const hash = v.data === null ? null : rowHash(key, v.seq, v.data)
    list.entries.push({ key, seq: v.seq, hash } satisfies DigestEntry)
    if (hash !== null) {
      list.count++
      list.sum = addHash(list.sum, hash)
    }
  }
  for (const list of lists.values()) list.entries.sort((a, b) => compareKeys(a.key, b.key))
  const tree = new DigestTree([...lists.values()].filter((l) => l.count > 0).map((l) => ({ bucket: l.bucket, count: l.count, sum: l.sum })))
  return { head, lists, tree }
}

/** The oracle's list of a bucket, empty when it has no key. */
export function listOf(o: Oracle, bucket: number): BucketList {
  return o.lists.get(bucket) ?? { bucket, count: 0, sum: 0n, entries: [] }
}

/** Keys `${prefix}0 …` until `count` of them fall into `bucket` (bucketOf is MD5's leading 16 bits). */
export function keysInBucket(bucket: number, count: number, prefix = 'k'): string[] {
  const out: string[] = []
  for (let i = 0; out.length < count; i++) if (bucketOf(`${prefix}${i}`) === bucket) out.push(`${prefix}${i}`)
  return out
}
