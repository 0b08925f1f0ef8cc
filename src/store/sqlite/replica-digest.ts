import type { Database, Statement } from 'better-sqlite3'
import { bufferToHash, hashToBuffer } from '../../digest/row-hash.js'
import type { DigestLeaf } from '../store.js'

const MASK_128 = (1n << 128n) - 1n

/** One packed delta: bucket (u32), count (i32), sum (16 bytes, big-endian, mod 2^128). */
const DELTA_BYTES = 24

/** Deltas pending in the log before they are folded into the leaves. */
export const FOLD_AT = 256 * 1024

export interface BucketDelta {
  count: number
  /** Any bigint: reduced mod 2^128 when written. */
  sum: bigint
}

/**
 * A replica's digest on SQLite: per generation and bucket, the count and sum of its live rows'
 * hashes, exact at every commit.
 *
 * Writing each touched leaf in every transaction would dirty a page of the leaf table per bucket:
 * the buckets of a transaction's keys are spread over all 65,536 leaves, so a transaction of 100
 * changes would rewrite ~100 pages of leaves, and a snapshot chunk of 1,000 rows nearly all of
 * them, at every commit — which costs more than the rows themselves. So a transaction appends its
 * deltas, packed in one row, to `tidemark_replica_digest_log`, and the log is folded into the leaves
 * (`tidemark_replica_digest`) now and then, each leaf once per fold. The digest of a generation is
 * its leaves plus its logged deltas, read in one read transaction, so it is exact at every commit
 * all the same, and a fold (an atomic rewrite of the same sums) changes nothing a reader can see.
 */
export class ReplicaDigest {
  /** Deltas appended by this connection since its last fold (what the log holds, roughly). */
  pending = 0
  private readonly s: {
    append: Statement
    logOf: Statement
    leavesOf: Statement
    log: Statement
    leaf: Statement
    writeLeaf: Statement
    dropLog: Statement
    dropGenLeaves: Statement
    dropGenLog: Statement
    dropOtherLeaves: Statement
    dropOtherLog: Statement
  }

  constructor(private readonly db: Database) {
    this.s = {
      append: db.prepare('INSERT INTO tidemark_replica_digest_log (name, gen, deltas) VALUES (?, ?, ?)'),
      logOf: db.prepare('SELECT deltas FROM tidemark_replica_digest_log WHERE name = ? AND gen = ? ORDER BY id').pluck(),
      leavesOf: db.prepare('SELECT bucket, count, sum FROM tidemark_replica_digest WHERE name = ? AND gen = ?'),
      log: db.prepare('SELECT id, name, gen, deltas FROM tidemark_replica_digest_log ORDER BY id'),
      leaf: db.prepare('SELECT count, sum FROM tidemark_replica_digest WHERE name = ? AND gen = ? AND bucket = ?'),
      writeLeaf: db.prepare(
        `INSERT INTO tidemark_replica_digest (name, gen, bucket, count, sum) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name, gen, bucket) DO UPDATE SET count = excluded.count, sum = excluded.sum`,
      ),
      dropLog: db.prepare('DELETE FROM tidemark_replica_digest_log WHERE id <= ?'),
      dropGenLeaves: db.prepare('DELETE FROM tidemark_replica_digest WHERE name = ? AND gen = ?'),
      dropGenLog: db.prepare('DELETE FROM tidemark_replica_digest_log WHERE name = ? AND gen = ?'),
      dropOtherLeaves: db.prepare('DELETE FROM tidemark_replica_digest WHERE name = ? AND gen NOT IN (?, ?)'),
      dropOtherLog: db.prepare('DELETE FROM tidemark_replica_digest_log WHERE name = ? AND gen NOT IN (?, ?)'),
    }
  }

  /** Records one transaction's deltas (call inside it). */
  append(name: string, gen: number, deltas: Map<number, BucketDelta>): void {
    if (deltas.size === 0) return
    const buf = Buffer.allocUnsafe(deltas.size * DELTA_BYTES)
    let at = 0
    for (const [bucket, d] of deltas) {
      const sum = d.sum & MASK_128
      buf.writeUInt32BE(bucket, at)
      buf.writeInt32BE(d.count, at + 4)
      buf.writeBigUInt64BE(sum >> 64n, at + 8)
      buf.writeBigUInt64BE(sum & 0xffff_ffff_ffff_ffffn, at + 16)
      at += DELTA_BYTES
    }
    this.s.append.run(name, gen, buf)
    this.pending += deltas.size
  }

  /** The generation's non-empty leaves in bucket order (call inside a transaction, for one position). */
  leaves(name: string, gen: number): DigestLeaf[] {
    const leaves = new Map<number, BucketDelta>()
    for (const l of this.s.leavesOf.iterate(name, gen) as IterableIterator<{ bucket: number; count: number; sum: Buffer }>) {
      leaves.set(l.bucket, { count: l.count, sum: bufferToHash(l.sum) })
    }
    for (const deltas of this.s.logOf.all(name, gen) as Buffer[]) unpack(deltas, leaves)
    const out: DigestLeaf[] = []
    for (const [bucket, l] of leaves) if (l.count > 0) out.push({ bucket, count: l.count, sum: l.sum & MASK_128 })
    return out.sort((a, b) => a.bucket - b.bucket)
  }

  /** Live rows of the generation. */
  keys(name: string, gen: number): number {
    let n = 0
    for (const l of this.leaves(name, gen)) n += l.count
    return n
  }

  /** Folds the whole log into the leaves, in one transaction; returns the deltas folded. */
  fold(): number {
    const folded = this.db
      .transaction(() => {
        const byLeaf = new Map<string, { name: string; gen: number; deltas: Map<number, BucketDelta> }>()
        let last = 0
        let n = 0
        for (const r of this.s.log.all() as Array<{ id: number; name: string; gen: number; deltas: Buffer }>) {
          const id = `${r.gen}\u0000${r.name}`
          let g = byLeaf.get(id)
          if (g === undefined) byLeaf.set(id, (g = { name: r.name, gen: r.gen, deltas: new Map() }))
          n += unpack(r.deltas, g.deltas)
          last = r.id
        }
        for (const { name, gen, deltas } of byLeaf.values()) {
          for (const [bucket, d] of deltas) {
            const cur = this.s.leaf.get(name, gen, bucket) as { count: number; sum: Buffer } | undefined
            const sum = ((cur ? bufferToHash(cur.sum) : 0n) + d.sum) & MASK_128
            this.s.writeLeaf.run(name, gen, bucket, (cur?.count ?? 0) + d.count, hashToBuffer(sum))
          }
        }
        this.s.dropLog.run(last)
        return n
      })
      .immediate()
    this.pending = 0
    return folded
  }

  dropGen(name: string, gen: number): void {
    this.s.dropGenLeaves.run(name, gen)
    this.s.dropGenLog.run(name, gen)
  }

  /** Drops every generation of `name` but the two kept. */
  dropAllBut(name: string, keep: number, alsoKeep: number): void {
    this.s.dropOtherLeaves.run(name, keep, alsoKeep)
    this.s.dropOtherLog.run(name, keep, alsoKeep)
  }
}

/** Adds packed deltas into `into`; returns how many there were. */
function unpack(buf: Buffer, into: Map<number, BucketDelta>): number {
  const n = buf.length / DELTA_BYTES
  for (let at = 0; at < buf.length; at += DELTA_BYTES) {
    const bucket = buf.readUInt32BE(at)
    const sum = (buf.readBigUInt64BE(at + 8) << 64n) | buf.readBigUInt64BE(at + 16)
    const d = into.get(bucket)
    if (d === undefined) into.set(bucket, { count: buf.readInt32BE(at + 4), sum })
    else {
      d.count += buf.readInt32BE(at + 4)
      d.sum = (d.sum + sum) & MASK_128
    }
  }
  return n
}
