import type pg from 'pg'
import type { BucketDelta } from '../../digest/fold.js'
import { DIGEST_BITS, hashToBuffer } from '../../digest/row-hash.js'

const LEAVES = 2 ** DIGEST_BITS
const MASK_128 = (1n << 128n) - 1n

/**
 * A generation's digest leaves summed in memory: count and sum (mod 2^128) per bucket. A bootstrap
 * adds each chunk's rows as the chunk commits, so that finishBootstrap writes the digest at once
 * instead of reading every row's hash back; finishBootstrap also sums a generation's stored hashes
 * into one when the bootstrap was not all written by this store instance (a resumed bootstrap).
 */
export class DigestSums {
  /** Live rows counted (the generation's keys). */
  keys = 0
  private readonly counts = new Float64Array(LEAVES)
  private readonly sums: bigint[] = new Array<bigint>(LEAVES).fill(0n)

  constructor(readonly gen: number) {}

  add(bucket: number, hash: bigint): void {
    this.counts[bucket]! += 1
    this.sums[bucket]! += hash
    this.keys++
  }

  /** Adds what a GenWriter accounted (its rows' old versions subtracted, new ones added). */
  merge(deltas: Map<number, BucketDelta>, keysDelta: number): void {
    for (const [bucket, d] of deltas) {
      this.counts[bucket]! += d.count
      this.sums[bucket] = (this.sums[bucket] as bigint) + d.sum - d.neg
    }
    this.keys += keysDelta
  }

  /** Replaces generation `gen`'s stored digest of replica `name` with these sums. */
  async write(client: pg.ClientBase, name: string): Promise<void> {
    const buckets: number[] = []
    const counts: number[] = []
    const sums: Buffer[] = []
    for (let b = 0; b < LEAVES; b++) {
      const count = this.counts[b] as number
      if (count === 0) continue
      buckets.push(b)
      counts.push(count)
      // Subtractions may leave the running sum negative or past 2^128: reduce it here, once.
      sums.push(hashToBuffer((((this.sums[b] as bigint) % (MASK_128 + 1n)) + MASK_128 + 1n) & MASK_128))
    }
    await client.query('DELETE FROM tidemark.replica_digest WHERE name = $1 AND gen = $2', [name, this.gen])
    await client.query(
      'INSERT INTO tidemark.replica_digest (name, gen, bucket, count, sum) SELECT $1, $2, * FROM unnest($3::int[], $4::bigint[], $5::bytea[])',
      [name, this.gen, buckets, counts, sums],
    )
  }
}
