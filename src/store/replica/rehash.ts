import { addHash, bucketOf, DIGEST_BITS, rowHash } from '../../digest/row-hash.js'
import type { Seq } from '../../protocol/types.js'
import type { RehashReport } from '../replica-store.js'
import type { DigestLeaf } from '../store.js'

/** A stored row as a rehash reads it. */
export interface RehashRow {
  key: string
  seq: Seq
  data: string
  hash: bigint | null
  bucket: number | null
}

/**
 * The rules of ReplicaStore.rehash, without I/O: every live row's hash and bucket recomputed from
 * its key, seq and data (a row whose stored ones differ is stale and is rewritten), the digest summed
 * from them and compared bucket by bucket with the stored one (replaced when any bucket is wrong),
 * and the key count taken from the rows. The backend reads the rows in pages and writes what this
 * says is wrong.
 */
export class RehashCheck {
  private readonly counts = new Float64Array(2 ** DIGEST_BITS)
  private readonly sums = new Map<number, bigint>()
  rows = 0
  staleRows = 0

  /** Counts one row; returns its right hash and bucket when the stored ones are wrong, else null. */
  row(r: RehashRow): { hash: bigint; bucket: number } | null {
    const hash = rowHash(r.key, r.seq, r.data)
    const bucket = bucketOf(r.key)
    this.rows++
    this.counts[bucket]! += 1
    this.sums.set(bucket, addHash(this.sums.get(bucket) ?? 0n, hash))
    if (r.hash === hash && r.bucket === bucket) return null
    this.staleRows++
    return { hash, bucket }
  }

  /** Compares the sums with the stored leaves: the right leaves, and how many buckets were wrong. */
  compare(stored: DigestLeaf[]): { leaves: DigestLeaf[]; wrongBuckets: number } {
    const held = new Map(stored.map((l) => [l.bucket, l]))
    const leaves: DigestLeaf[] = []
    let wrongBuckets = 0
    for (let b = 0; b < this.counts.length; b++) {
      const count = this.counts[b]!
      const sum = this.sums.get(b) ?? 0n
      const h = held.get(b)
      if ((h?.count ?? 0) !== count || (h?.sum ?? 0n) !== sum) wrongBuckets++
      if (count > 0) leaves.push({ bucket: b, count, sum })
    }
    return { leaves, wrongBuckets }
  }

  report(wrongBuckets: number): RehashReport {
    return { rows: this.rows, staleRows: this.staleRows, wrongBuckets }
  }
}
