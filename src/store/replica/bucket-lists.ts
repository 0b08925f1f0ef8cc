import { addHash, bufferToHash } from '../../digest/row-hash.js'
import { compareKeys } from '../../protocol/key-order.js'
import type { BucketList, DigestEntry, Seq } from '../../protocol/types.js'

/** A stored row as a bucket listing reads it. */
export interface BucketRow {
  bucket: number
  key: string
  seq: Seq
  hash: Uint8Array | null
}

/**
 * The listings of ReplicaStore.bucketEntries from the buckets' rows, in any order: each bucket's
 * entries in key order (compareKeys) with their count and sum, in the order the buckets were asked
 * for. A row without a stored hash was written outside tidemark and is left out: only a deep run
 * (rehash) sees it.
 */
export function bucketLists(buckets: readonly number[], rows: Iterable<BucketRow>): BucketList[] {
  const lists = new Map<number, BucketList>(buckets.map((bucket) => [bucket, { bucket, count: 0, sum: 0n, entries: [] }]))
  for (const row of rows) {
    const list = lists.get(row.bucket)
    if (list === undefined || row.hash === null) continue
    const hash = bufferToHash(row.hash)
    list.entries.push({ key: row.key, seq: row.seq, hash } satisfies DigestEntry)
    list.count++
    list.sum = addHash(list.sum, hash)
  }
  for (const list of lists.values()) list.entries.sort((a, b) => compareKeys(a.key, b.key))
  return buckets.map((b) => lists.get(b) as BucketList)
}
