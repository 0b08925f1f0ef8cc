/**
 * Figure 4 of the source suite: the measurements behind the digest's two choices.
 *
 * - The row hash: MD5 vs SHA-1 vs SHA-256 (node:crypto's one-shot `hash()`), each turned into the
 *   128-bit integer the digest sums, over `key \0 seq \0 data's stored JSON text` of ~200-byte
 *   rows, as `rowHash` hashes them.
 * - The number of leaf buckets: DIGEST_BITS is a constant of src/digest/row-hash.ts, so this is a
 *   stand-alone copy of the indexer's bucket update (group a chunk's hash deltas by bucket, then
 *   read and write each touched bucket's count and sum in one transaction) on a digest table
 *   filled with 2^bits buckets, as a feed with many keys has them.
 */
import Database from 'better-sqlite3'
import { hash } from 'node:crypto'
import { join } from 'node:path'
import { addHash, bucketOf, bufferToHash, hashToBuffer, rowHash, subHash } from '../../src/digest/row-hash.js'
import { gc, median, prng, timeSyncMs } from '../harness.js'
import { makeCustomer } from './customers.js'

export const HASHES = ['md5', 'sha1', 'sha256'] as const
export type HashName = (typeof HASHES)[number]

function hash128(algorithm: HashName, text: string): bigint {
  return BigInt(`0x${hash(algorithm, text, 'hex').slice(0, 32)}`)
}

export interface HashRates {
  /** Row hashes per second by algorithm. */
  byAlgorithm: Map<HashName, number>
  /** Changes per second through what the indexer computes for each: `rowHash` and `bucketOf` (two MD5s). */
  indexerHashing: number
}

export function measureHashes(rows: number, rounds: number): HashRates {
  const rand = prng(7)
  const stored: Array<{ key: string; seq: number; text: string }> = []
  for (let i = 0; i < rows; i++) {
    const c = makeCustomer(i + 1, rand)
    stored.push({ key: String(c.id), seq: i + 1, text: JSON.stringify(c) })
  }
  const texts = stored.map((r) => `${r.key}\u0000${r.seq}\u0000${r.text}`)
  let sink = 0n
  const samples = new Map<HashName | 'full', number[]>([...HASHES, 'full' as const].map((h) => [h, []]))
  for (let round = 0; round < rounds; round++) {
    for (const algorithm of HASHES) {
      gc()
      const ms = timeSyncMs(() => {
        for (const text of texts) sink ^= hash128(algorithm, text)
      })
      samples.get(algorithm)?.push(rows / (ms / 1000))
    }
    gc()
    const ms = timeSyncMs(() => {
      for (const r of stored) sink ^= rowHash(r.key, r.seq, r.text) + BigInt(bucketOf(r.key))
    })
    samples.get('full')?.push(rows / (ms / 1000))
  }
  if (sink === -1n) throw new Error('unreachable: keeps the hashing from being optimised away')
  return {
    byAlgorithm: new Map(HASHES.map((h) => [h, median(samples.get(h) as number[])])),
    indexerHashing: median(samples.get('full') as number[]),
  }
}

/** Changes per second through the bucket update, with 2^bits leaf buckets. */
export function measureBucketUpdates(dir: string, bits: number, changes: number, rounds: number, chunk = 2000): number {
  if (bits % 4 !== 0) throw new RangeError('bits must be a multiple of 4 (buckets are read as hex digits)')
  const db = new Database(join(dir, `digest-${bits}.db`))
  try {
    db.pragma('journal_mode = WAL')
    db.exec(`CREATE TABLE digest (feed TEXT NOT NULL, bucket INTEGER NOT NULL, count INTEGER NOT NULL, sum BLOB NOT NULL,
      PRIMARY KEY (feed, bucket)) WITHOUT ROWID`)
    const rand = prng(bits)
    const randomHash = (): bigint =>
      (BigInt(Math.floor(rand() * 2 ** 32)) << 96n) | (BigInt(Math.floor(rand() * 2 ** 32)) << 64n) | BigInt(Math.floor(rand() * 2 ** 53))
    const fill = db.prepare('INSERT INTO digest (feed, bucket, count, sum) VALUES (?, ?, ?, ?)')
    db.transaction(() => {
      for (let b = 0; b < 2 ** bits; b++) fill.run('customers', b, 3, hashToBuffer(randomHash()))
    })()
    const readBucket = db.prepare('SELECT count, sum FROM digest WHERE feed = ? AND bucket = ?')
    const writeBucket = db.prepare(
      `INSERT INTO digest (feed, bucket, count, sum) VALUES (?, ?, ?, ?)
       ON CONFLICT (feed, bucket) DO UPDATE SET count = excluded.count, sum = excluded.sum`,
    )
    const digits = bits / 4
    const step = db.transaction((keys: string[], hashes: bigint[]) => {
      const deltas = new Map<number, { count: number; sum: bigint; neg: bigint }>()
      for (let i = 0; i < keys.length; i++) {
        const b = Number.parseInt(hash('md5', keys[i] as string, 'hex').slice(0, digits), 16)
        let d = deltas.get(b)
        if (!d) deltas.set(b, (d = { count: 0, sum: 0n, neg: 0n }))
        // An update: the key's old hash goes out, its new one comes in.
        d.sum += hashes[i] as bigint
        d.neg += hashes[(i + 1) % hashes.length] as bigint
      }
      for (const [bucket, d] of deltas) {
        const cur = readBucket.get('customers', bucket) as { count: number; sum: Buffer } | undefined
        const sum = subHash(addHash(cur ? bufferToHash(cur.sum) : 0n, d.sum), d.neg)
        writeBucket.run('customers', bucket, (cur?.count ?? 0) + d.count, hashToBuffer(sum))
      }
    })
    const rates: number[] = []
    for (let round = 0; round < rounds; round++) {
      const chunks: Array<[string[], bigint[]]> = []
      for (let c = 0; c < Math.ceil(changes / chunk); c++) {
        const keys: string[] = []
        const hashes: bigint[] = []
        for (let i = 0; i < chunk; i++) {
          keys.push(`customer-${Math.floor(rand() * 1e9)}`)
          hashes.push(randomHash())
        }
        chunks.push([keys, hashes])
      }
      gc()
      const ms = timeSyncMs(() => {
        for (const [keys, hashes] of chunks) step(keys, hashes)
      })
      rates.push((chunks.length * chunk) / (ms / 1000))
    }
    return median(rates)
  } finally {
    db.close()
  }
}
