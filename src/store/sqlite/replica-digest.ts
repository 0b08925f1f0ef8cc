import type { Database, Statement } from 'better-sqlite3'
import { DIGEST_BITS, hashToBuffer } from '../../digest/row-hash.js'
import type { DigestLeaf } from '../store.js'

const BUCKETS = 2 ** DIGEST_BITS

/** One packed delta: bucket (u32), count (i32), sum (16 bytes, big-endian, mod 2^128). */
const DELTA_BYTES = 24

/**
 * Deltas logged before they are folded into the leaves. A fold rewrites up to every leaf (65,536)
 * once, so it is worth doing only for many deltas; the log then holds up to ~24 MB, which a digest
 * read adds up in tens of milliseconds.
 */
export const FOLD_AT = 1024 * 1024

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
  /** Deltas in the log: counted at the start, then by this connection's appends and folds. */
  pending: number
  private readonly s: {
    append: Statement
    logOf: Statement
    leavesOf: Statement
    log: Statement
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
      leavesOf: db.prepare('SELECT bucket, count, sum FROM tidemark_replica_digest WHERE name = ? AND gen = ?').raw(),
      log: db.prepare('SELECT id, name, gen, deltas FROM tidemark_replica_digest_log ORDER BY id'),
      writeLeaf: db.prepare(
        `INSERT INTO tidemark_replica_digest (name, gen, bucket, count, sum) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (name, gen, bucket) DO UPDATE SET count = excluded.count, sum = excluded.sum`,
      ),
      dropLog: db.prepare('DELETE FROM tidemark_replica_digest_log WHERE id <= ?'),
      dropGenLeaves: db.prepare('DELETE FROM tidemark_replica_digest WHERE name = ? AND gen = ?'),
      dropGenLog: db.prepare('DELETE FROM tidemark_replica_digest_log WHERE name = ? AND gen = ?'),
      dropOtherLeaves: db.prepare('DELETE FROM tidemark_replica_digest WHERE name = ? AND gen NOT IN (SELECT value FROM json_each(?))'),
      dropOtherLog: db.prepare('DELETE FROM tidemark_replica_digest_log WHERE name = ? AND gen NOT IN (SELECT value FROM json_each(?))'),
    }
    // Blob lengths come from the records' headers: this reads no delta.
    const bytes = db.prepare('SELECT coalesce(sum(length(deltas)), 0) FROM tidemark_replica_digest_log').pluck().get() as number
    this.pending = bytes / DELTA_BYTES
  }

  /** Told of every append, inside the transaction (the store applies it to its tree once committed). */
  onAppend: ((name: string, gen: number, packed: Buffer) => void) | undefined

  /** Records one transaction's deltas (call inside it), and clears them. */
  append(name: string, gen: number, deltas: DigestDeltas): void {
    const packed = deltas.pack()
    if (packed === null) return
    this.s.append.run(name, gen, packed)
    this.pending += packed.length / DELTA_BYTES
    this.onAppend?.(name, gen, packed)
  }

  /** The generation's non-empty leaves in bucket order (call inside a transaction, for one position). */
  leaves(name: string, gen: number): DigestLeaf[] {
    const table = this.load(name, gen)
    for (const deltas of this.s.logOf.all(name, gen) as Buffer[]) table.addPacked(deltas)
    const out: DigestLeaf[] = []
    for (let b = 0; b < BUCKETS; b++) if (table.counts[b]! > 0) out.push({ bucket: b, count: table.counts[b]!, sum: table.sum(b) })
    return out
  }

  /** Folds the whole log into the leaves, in one transaction; returns the deltas folded. */
  fold(): number {
    const folded = this.db
      .transaction(() => {
        const tables = new Map<string, { name: string; gen: number; table: LeafTable }>()
        let last = 0
        let n = 0
        for (const r of this.s.log.all() as Array<{ id: number; name: string; gen: number; deltas: Buffer }>) {
          const id = `${r.gen}\u0000${r.name}`
          let t = tables.get(id)
          if (t === undefined) tables.set(id, (t = { name: r.name, gen: r.gen, table: this.load(r.name, r.gen) }))
          n += t.table.addPacked(r.deltas)
          last = r.id
        }
        for (const { name, gen, table } of tables.values()) {
          for (let b = 0; b < BUCKETS; b++) {
            if (table.touched[b] === 1) this.s.writeLeaf.run(name, gen, b, table.counts[b], table.sumBytes(b))
          }
        }
        this.s.dropLog.run(last)
        return n
      })
      .immediate()
    this.pending = 0
    return folded
  }

  /** Replaces the generation's digest with these leaves (a rehash), inside the caller's transaction. */
  replace(name: string, gen: number, leaves: DigestLeaf[]): void {
    this.dropGen(name, gen)
    for (const leaf of leaves) if (leaf.count !== 0) this.s.writeLeaf.run(name, gen, leaf.bucket, leaf.count, hashToBuffer(leaf.sum))
  }

  dropGen(name: string, gen: number): void {
    this.s.dropGenLeaves.run(name, gen)
    this.s.dropGenLog.run(name, gen)
  }

  /** Drops every generation of `name` but those kept. */
  dropAllBut(name: string, keep: number[]): void {
    this.s.dropOtherLeaves.run(name, JSON.stringify(keep))
    this.s.dropOtherLog.run(name, JSON.stringify(keep))
  }

  private load(name: string, gen: number): LeafTable {
    const table = new LeafTable()
    for (const [bucket, count, sum] of this.s.leavesOf.iterate(name, gen) as IterableIterator<[number, number, Buffer]>) {
      table.set(bucket, count, sum)
    }
    return table
  }
}

/**
 * One transaction's changes to the digest, per bucket, in flat arrays (one instance is reused from
 * transaction to transaction: `reset` at the start of each, `pack` at its end).
 */
export class DigestDeltas {
  private readonly counts = new Int32Array(BUCKETS)
  private readonly limbs = new Uint32Array(BUCKETS * 4)
  private readonly seen = new Uint8Array(BUCKETS)
  private readonly touched: number[] = []

  /** A row with this hash (16 bytes at `at`) joins the bucket. */
  add(bucket: number, h: Uint8Array, at: number): void {
    const o = this.touch(bucket)
    this.counts[bucket]! += 1
    const limbs = this.limbs
    let carry = 0
    for (let i = 0; i < 4; i++) {
      const v = limbs[o + i]! + word(h, at + 12 - 4 * i) + carry
      limbs[o + i] = v >>> 0
      carry = v > 0xffff_ffff ? 1 : 0
    }
  }

  /** A row with this hash leaves the bucket. */
  remove(bucket: number, h: Uint8Array, at: number): void {
    const o = this.touch(bucket)
    this.counts[bucket]! -= 1
    const limbs = this.limbs
    let borrow = 0
    for (let i = 0; i < 4; i++) {
      const v = limbs[o + i]! - word(h, at + 12 - 4 * i) - borrow
      limbs[o + i] = v >>> 0
      borrow = v < 0 ? 1 : 0
    }
  }

  /** The non-zero deltas packed for the log (null: none), and clears them. */
  pack(): Buffer | null {
    const buf = Buffer.allocUnsafe(this.touched.length * DELTA_BYTES)
    let at = 0
    for (const b of this.touched) {
      const o = b * 4
      const l = this.limbs
      if (this.counts[b] === 0 && (l[o]! | l[o + 1]! | l[o + 2]! | l[o + 3]!) === 0) continue
      buf.writeUInt32BE(b, at)
      buf.writeInt32BE(this.counts[b]!, at + 4)
      for (let i = 0; i < 4; i++) buf.writeUInt32BE(l[o + i]!, at + 20 - 4 * i)
      at += DELTA_BYTES
    }
    this.reset()
    return at === 0 ? null : buf.subarray(0, at)
  }

  reset(): void {
    for (const b of this.touched) {
      this.counts[b] = 0
      this.limbs.fill(0, b * 4, b * 4 + 4)
      this.seen[b] = 0
    }
    this.touched.length = 0
  }

  private touch(bucket: number): number {
    if (this.seen[bucket] === 0) {
      this.seen[bucket] = 1
      this.touched.push(bucket)
    }
    return bucket * 4
  }
}

function word(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0
}

/**
 * Every leaf of one generation in flat arrays, each sum as four 32-bit limbs (least significant
 * first), so that adding up hundreds of thousands of deltas needs no bigint.
 */
class LeafTable {
  readonly counts = new Float64Array(BUCKETS)
  readonly limbs = new Uint32Array(BUCKETS * 4)
  /** Changed by a delta (to be written back by a fold). */
  readonly touched = new Uint8Array(BUCKETS)

  set(bucket: number, count: number, sum: Buffer): void {
    this.counts[bucket] = count
    const o = bucket * 4
    for (let i = 0; i < 4; i++) this.limbs[o + i] = sum.readUInt32BE(12 - 4 * i)
  }

  /** Adds packed deltas; returns how many there were. */
  addPacked(buf: Buffer): number {
    const limbs = this.limbs
    for (let at = 0; at < buf.length; at += DELTA_BYTES) {
      const bucket = buf.readUInt32BE(at)
      if (bucket >= BUCKETS) throw new RangeError(`digest log: bucket ${bucket} is out of range`)
      this.counts[bucket]! += buf.readInt32BE(at + 4)
      this.touched[bucket] = 1
      const o = bucket * 4
      let carry = 0
      for (let i = 0; i < 4; i++) {
        const v = limbs[o + i]! + buf.readUInt32BE(at + 20 - 4 * i) + carry
        limbs[o + i] = v >>> 0
        carry = v > 0xffff_ffff ? 1 : 0
      }
    }
    return buf.length / DELTA_BYTES
  }

  sum(bucket: number): bigint {
    const o = bucket * 4
    const l = this.limbs
    return (BigInt(l[o + 3]!) << 96n) | (BigInt(l[o + 2]!) << 64n) | (BigInt(l[o + 1]!) << 32n) | BigInt(l[o]!)
  }

  /** 16 bytes, big-endian, as sums are stored. */
  sumBytes(bucket: number): Buffer {
    const buf = Buffer.allocUnsafe(16)
    const o = bucket * 4
    for (let i = 0; i < 4; i++) buf.writeUInt32BE(this.limbs[o + i]!, 12 - 4 * i)
    return buf
  }
}
