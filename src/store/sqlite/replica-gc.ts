import type { Database } from 'better-sqlite3'
import type { BucketRows } from './replica-buckets.js'
import type { ReplicaDigest } from './replica-digest.js'
import { dropBucketIndex } from './replica-schema.js'
import type { Statements } from './replica-statements.js'

/** Rows deleted per transaction by the garbage collector. */
const GC_CHUNK = 10_000

/**
 * One garbage-collection step inside the caller's transaction: up to GC_CHUNK rows of one
 * generation not in `keep`; when none is left, the digests of the generations not kept, and 0.
 */
export function collectStep(db: Database, s: Statements, digest: ReplicaDigest, bucketRows: BucketRows, name: string, keep: number[]): number {
  let gen = -1
  for (;;) {
    const next = s.nextRowGen.get(name, gen) as number | undefined
    if (next === undefined) {
      digest.dropAllBut(name, keep)
      return 0
    }
    gen = next
    if (!keep.includes(gen)) break
  }
  // Its index first, when no replica of the store uses the generation: deleting rows through it
  // would cost an index write each.
  if (s.genInUse.get(gen, gen, gen) === undefined) {
    dropBucketIndex(db, gen)
    bucketRows.forget(gen)
  }
  const last = s.gcBoundary.get(name, gen, GC_CHUNK - 1) as string | undefined
  if (last !== undefined) return s.deleteGenRowsUpTo.run(name, gen, last).changes
  const n = s.deleteGenRows.run(name, gen).changes
  digest.dropGen(name, gen)
  return n
}
