import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { addHash, bufferToHash, hashToBuffer, subHash } from '../../src/digest/row-hash.js'
import { DigestSums } from '../../src/store/postgres/replica-digest-sums.js'
import { prng } from '../../src/util/prng.js'

/** What DigestSums.write stores: bucket → [count, sum]. */
function written(sums: DigestSums): Map<number, [number, bigint]> {
  return new Map([...sums.leaves()].map((l) => [l.bucket, [l.count, bufferToHash(l.sum)]]))
}

describe('DigestSums (the PostgreSQL bootstrap digest in memory)', () => {
  it('sums 128-bit hashes mod 2^128 from their bytes, past the point where its 32-bit lanes are carried, and with merged subtractions', async () => {
    const random = prng(7)
    const byte = () => Math.floor(random() * 256)
    const sums = new DigestSums(1)
    const want = new Map<number, [number, bigint]>()
    const add = (bucket: number, h: Buffer, at = 0) => {
      sums.add(bucket, h, at)
      const [count, sum] = want.get(bucket) ?? [0, 0n]
      want.set(bucket, [count + 1, addHash(sum, bufferToHash(h.subarray(at, at + 16)))])
    }
    // Bucket 0 gets more adds than a double lane could hold exactly (2^21 of 2^32 - 1); all-ones hashes make every carry count.
    const ones = Buffer.alloc(16, 0xff)
    for (let i = 0; i < 2 ** 21 + 3; i++) add(0, ones)
    for (let i = 0; i < 5000; i++) {
      const h = Buffer.from(Array.from({ length: 20 }, byte))
      add(Math.floor(random() * 8), h, 2)
    }
    // A GenWriter's deltas: one row of bucket 3 replaced by another.
    const [count3, sum3] = want.get(3) ?? [0, 0n]
    const removed = bufferToHash(Buffer.from(Array.from({ length: 16 }, byte)))
    const added = bufferToHash(Buffer.from(Array.from({ length: 16 }, byte)))
    sums.merge(new Map([[3, { count: 0, sum: added, neg: removed }]]), 0)
    want.set(3, [count3, subHash(addHash(sum3, added), removed)])
    assert.deepEqual(written(sums), want)
    assert.equal(sums.keys, 2 ** 21 + 3 + 5000)
    assert.equal(hashToBuffer((want.get(0) as [number, bigint])[1]).length, 16)
  })
})
