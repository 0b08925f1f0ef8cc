import { addHash, bucketOf, rowHash, subHash } from './row-hash.js'

/** A change of the log as an indexer folds it: `data` null for a delete. */
export interface FoldChange {
  seq: number
  key: string
  data: string | null
}

export interface BucketDelta {
  count: number
  sum: bigint
  neg: bigint
}

export interface Folded<C extends FoldChange> {
  /** Per key touched, the row hash the digest holds for it afterwards (null: no live row). */
  hashes: Map<string, bigint | null>
  /** Per key touched, its latest change in the chunk. */
  latest: Map<string, C>
  /** Per bucket touched, what to add to its count and sum (and subtract: `neg`). */
  deltas: Map<number, BucketDelta>
  /** Live keys gained (negative: lost). */
  keysDelta: number
  /** Each key's bucket, hashed once per chunk (the state stores it for per-bucket key lists). */
  buckets: Map<string, number>
}

/**
 * Folds a chunk of the log, in seq order, into what the state and the digest must change by: the
 * indexers of every backend share it, so that they hash and count alike. `held(key)` is the hash
 * the digest holds for a key before the chunk (null: none).
 */
export function foldChanges<C extends FoldChange>(changes: C[], held: (key: string) => bigint | null): Folded<C> {
  const hashes = new Map<string, bigint | null>()
  const latest = new Map<string, C>()
  const deltas = new Map<number, BucketDelta>()
  const buckets = new Map<string, number>()
  let keysDelta = 0
  for (const c of changes) {
    const old = hashes.has(c.key) ? (hashes.get(c.key) ?? null) : held(c.key)
    const next = c.data !== null ? rowHash(c.key, c.seq, c.data) : null
    let b = buckets.get(c.key)
    if (b === undefined) buckets.set(c.key, (b = bucketOf(c.key)))
    if (old !== null || next !== null) {
      let d = deltas.get(b)
      if (!d) deltas.set(b, (d = { count: 0, sum: 0n, neg: 0n }))
      if (old !== null) {
        d.count -= 1
        d.neg += old
        keysDelta -= 1
      }
      if (next !== null) {
        d.count += 1
        d.sum += next
        keysDelta += 1
      }
    }
    hashes.set(c.key, next)
    latest.set(c.key, c)
  }
  return { hashes, latest, deltas, keysDelta, buckets }
}

/** A bucket's count and sum after a delta. */
export function applyDelta(current: { count: number; sum: bigint } | undefined, d: BucketDelta): { count: number; sum: bigint } {
  return { count: (current?.count ?? 0) + d.count, sum: subHash(addHash(current?.sum ?? 0n, d.sum), d.neg) }
}
