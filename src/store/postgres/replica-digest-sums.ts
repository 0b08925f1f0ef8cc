import type pg from 'pg'
import type { BucketDelta } from '../../digest/fold.js'
import { DIGEST_BITS, hashToBuffer } from '../../digest/row-hash.js'
import { COPY_HEADER, sendCopy } from './replica-copy.js'

const LEAVES = 2 ** DIGEST_BITS
const MASK_128 = (1n << 128n) - 1n
/** Lane adds per bucket before the lanes are folded into the bucket's sum: each lane stays below 2^52, exact in a double. */
const FOLD_EVERY = 2 ** 20

/**
 * A generation's digest leaves summed in memory: count and sum (mod 2^128) per bucket. A bootstrap
 * adds each chunk's rows as the chunk is copied (the chunk's transaction decides whether the sums
 * are kept), so that finishBootstrap writes the digest at once instead of reading every row's hash
 * back; finishBootstrap also sums a generation's stored hashes into one when the bootstrap was not
 * all written by this store instance (a resumed bootstrap).
 *
 * Hashes are added as four 32-bit lanes read straight from the bytes they are stored as (no BigInt
 * per row: a million-row bootstrap adds a million of them), carried into the 128-bit sum only when
 * the sums are written or a lane could lose precision.
 */
export class DigestSums {
  /** Live rows counted (the generation's keys). */
  keys = 0
  private readonly counts = new Float64Array(LEAVES)
  private readonly sums: bigint[] = new Array<bigint>(LEAVES).fill(0n)
  private readonly lanes = new Float64Array(LEAVES * 4)
  private readonly laneAdds = new Uint32Array(LEAVES)

  constructor(readonly gen: number) {}

  /** Counts a live row whose 16-byte hash is `hash[at … at + 16)`, big-endian. */
  add(bucket: number, hash: Uint8Array, at = 0): void {
    const l = bucket * 4
    const h = hash
    this.lanes[l]! += ((h[at]! << 24) | (h[at + 1]! << 16) | (h[at + 2]! << 8) | h[at + 3]!) >>> 0
    this.lanes[l + 1]! += ((h[at + 4]! << 24) | (h[at + 5]! << 16) | (h[at + 6]! << 8) | h[at + 7]!) >>> 0
    this.lanes[l + 2]! += ((h[at + 8]! << 24) | (h[at + 9]! << 16) | (h[at + 10]! << 8) | h[at + 11]!) >>> 0
    this.lanes[l + 3]! += ((h[at + 12]! << 24) | (h[at + 13]! << 16) | (h[at + 14]! << 8) | h[at + 15]!) >>> 0
    this.counts[bucket]! += 1
    this.keys++
    if (++this.laneAdds[bucket]! >= FOLD_EVERY) this.fold(bucket)
  }

  /** Adds what a GenWriter accounted (its rows' old versions subtracted, new ones added). */
  merge(deltas: Map<number, BucketDelta>, keysDelta: number): void {
    for (const [bucket, d] of deltas) {
      this.counts[bucket]! += d.count
      this.sums[bucket] = (this.sums[bucket] as bigint) + d.sum - d.neg
    }
    this.keys += keysDelta
  }

  /** Replaces generation `gen`'s stored digest of replica `name` with these sums (one binary COPY: up to 65,536 rows). */
  async write(client: pg.ClientBase, name: string): Promise<void> {
    const nameBytes = Buffer.from(name)
    const rowSize = 2 + 4 * 5 + nameBytes.length + 4 + 4 + 8 + 16
    const b = Buffer.allocUnsafe(COPY_HEADER.length + LEAVES * rowSize + 2)
    let o = COPY_HEADER.copy(b, 0)
    for (const leaf of this.leaves()) {
      o = b.writeInt16BE(5, o)
      o = b.writeInt32BE(nameBytes.length, o)
      o += nameBytes.copy(b, o)
      o = b.writeInt32BE(4, o)
      o = b.writeInt32BE(this.gen, o)
      o = b.writeInt32BE(4, o)
      o = b.writeInt32BE(leaf.bucket, o)
      o = b.writeInt32BE(8, o)
      o = b.writeUInt32BE(Math.floor(leaf.count / 2 ** 32), o)
      o = b.writeUInt32BE(leaf.count >>> 0, o)
      o = b.writeInt32BE(16, o)
      o += leaf.sum.copy(b, o)
    }
    o = b.writeInt16BE(-1, o)
    await client.query('DELETE FROM tidemark.replica_digest WHERE name = $1 AND gen = $2', [name, this.gen])
    await sendCopy(client, 'COPY tidemark.replica_digest (name, gen, bucket, count, sum) FROM STDIN (FORMAT binary)', [b.subarray(0, o)])
  }

  /** Each bucket holding rows, in bucket order: its count and its sum mod 2^128 (16 bytes, big-endian). */
  *leaves(): Generator<{ bucket: number; count: number; sum: Buffer }> {
    for (let bucket = 0; bucket < LEAVES; bucket++) {
      const count = this.counts[bucket] as number
      if (count === 0) continue
      const sum = Buffer.allocUnsafe(16)
      this.sumInto(bucket, sum, 0)
      yield { bucket, count, sum }
    }
  }

  /** The bucket's sum mod 2^128 as 16 bytes, big-endian, at `out[at]`: the lanes carried in plain numbers unless merges left a BigInt part. */
  private sumInto(bucket: number, out: Buffer, at: number): void {
    if (this.sums[bucket] !== 0n) {
      this.fold(bucket)
      // Subtractions may leave the running sum negative or past 2^128: reduce it here, once.
      hashToBuffer((((this.sums[bucket] as bigint) % (MASK_128 + 1n)) + MASK_128 + 1n) & MASK_128).copy(out, at)
      return
    }
    const l = bucket * 4
    let carry = 0
    for (let i = 3; i >= 0; i--) {
      const v = (this.lanes[l + i] as number) + carry
      const low = v % 2 ** 32
      carry = (v - low) / 2 ** 32
      out.writeUInt32BE(low, at + 4 * i)
    }
  }

  private fold(bucket: number): void {
    if (this.laneAdds[bucket] === 0) return
    const l = bucket * 4
    const lanes = this.lanes
    this.sums[bucket] =
      (this.sums[bucket] as bigint) +
      (BigInt(lanes[l] as number) << 96n) +
      (BigInt(lanes[l + 1] as number) << 64n) +
      (BigInt(lanes[l + 2] as number) << 32n) +
      BigInt(lanes[l + 3] as number)
    lanes.fill(0, l, l + 4)
    this.laneAdds[bucket] = 0
  }
}

/** Generation `gen`'s digest summed from its rows' stored hashes, read a page at a time. */
export async function sumDigest(client: pg.ClientBase, name: string, gen: number): Promise<DigestSums> {
  const sums = new DigestSums(gen)
  let after = ''
  for (;;) {
    const { rows } = await client.query<{ key: string; bucket: number; hash: Buffer }>(
      `SELECT key, bucket, hash FROM tidemark.replica_rows WHERE name = $1 AND gen = $2 AND key > $3 AND hash IS NOT NULL ORDER BY key LIMIT 10000`,
      [name, gen, after],
    )
    for (const r of rows) sums.add(r.bucket, r.hash)
    if (rows.length < 10000) break
    after = (rows[rows.length - 1] as { key: string }).key
  }
  return sums
}

/**
 * Per replica bootstrapping through one store instance: the new generation's digest so far, trusted
 * only while every write to the generation since beginBootstrap went through that instance and
 * succeeded (dropped on any failure, claim or overlap; finishBootstrap then sums the stored hashes).
 */
export class HeldSums {
  private readonly sums = new Map<string, DigestSums>()
  private readonly tickets = new Map<string, number>()

  /** A bootstrap begun at generation `gen`: its sums start empty. */
  begin(name: string, gen: number): void {
    this.sums.set(name, new DigestSums(gen))
  }

  /** Takes the sums out for one write (none held: undefined); put them back with `keep` once it committed. */
  take(name: string): { sums: DigestSums | undefined; ticket: number } {
    const sums = this.sums.get(name)
    this.sums.delete(name)
    const ticket = (this.tickets.get(name) ?? 0) + 1
    this.tickets.set(name, ticket)
    return { sums, ticket }
  }

  /** Keeps the sums after a committed write to generation `gen`, when no other write to the replica overlapped it. */
  keep(name: string, taken: { sums: DigestSums | undefined; ticket: number }, gen: number): void {
    if (taken.sums !== undefined && taken.sums.gen === gen && this.tickets.get(name) === taken.ticket) this.sums.set(name, taken.sums)
  }

  drop(name: string): void {
    this.sums.delete(name)
  }
}
