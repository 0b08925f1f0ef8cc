import type { Database, Statement } from 'better-sqlite3'
import { addHash, bucketOf, bufferToHash, hashToBuffer, rowHash, subHash } from '../../digest/row-hash.js'
import { OP_UPSERT } from './schema.js'

/**
 * Folds the log into the state and the digest, in seq order, a chunk per short write transaction:
 * the owner's write path stays one head bump and one log insert per change (no second table, no
 * hashing — which a trigger fired by the `sqlite3` shell could not do anyway), and a feed's state
 * and digest are exact as of its `digest_seq`. Readers of the state (snapshot, rows, digest) catch
 * the indexer up first. Retention runs here too, never dropping a change the indexer has not seen.
 */
export class Indexer {
  private readonly feedRow: Statement
  private readonly changesAfter: Statement
  private readonly readDhash: Statement
  private readonly writeState: Statement
  private readonly readBucket: Statement
  private readonly writeBucket: Statement
  private readonly advance: Statement

  constructor(
    private readonly db: Database,
    private readonly chunk = 2000,
  ) {
    this.feedRow = db.prepare(
      'SELECT head, digest_seq AS digestSeq, min_seq AS minSeq, retain_changes AS retainChanges, retain_ms AS retainMs FROM tidemark_feeds WHERE name = ?',
    )
    this.changesAfter = db.prepare(
      'SELECT seq, key, op, data FROM tidemark_changes WHERE feed = ? AND seq > ? ORDER BY seq LIMIT ?',
    )
    this.readDhash = db.prepare('SELECT dhash FROM tidemark_state WHERE feed = ? AND key = ?').pluck()
    this.writeState = db.prepare(
      `INSERT INTO tidemark_state (feed, key, seq, data, dhash, bucket) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (feed, key) DO UPDATE SET seq = excluded.seq, data = excluded.data, dhash = excluded.dhash, bucket = excluded.bucket`,
    )
    this.readBucket = db.prepare('SELECT count, sum FROM tidemark_digest WHERE feed = ? AND bucket = ?')
    this.writeBucket = db.prepare(
      `INSERT INTO tidemark_digest (feed, bucket, count, sum) VALUES (?, ?, ?, ?)
       ON CONFLICT (feed, bucket) DO UPDATE SET count = excluded.count, sum = excluded.sum`,
    )
    this.advance = db.prepare('UPDATE tidemark_feeds SET digest_seq = ?, keys = keys + ? WHERE name = ?')
  }

  /** Digests everything committed so far; returns how many changes it folded in. */
  catchUp(feed: string): number {
    let total = 0
    for (;;) {
      const n = this.step(feed)
      if (n === 0) return total
      total += n
    }
  }

  /** One chunk in one short transaction. */
  step(feed: string): number {
    return this.db.transaction(() => {
      const f = this.feedRow.get(feed) as FeedRow | undefined
      if (!f || f.digestSeq >= f.head) return 0
      const rows = this.changesAfter.all(feed, f.digestSeq, this.chunk) as ChangeRow[]
      if (rows.length === 0) return 0
      if ((rows[0] as ChangeRow).seq !== f.digestSeq + 1) {
        throw new Error(`feed "${feed}": the log has no change ${f.digestSeq + 1} to digest (it starts at ${rows[0]?.seq})`)
      }
      // Per key, the hash the digest holds and the key's latest version in this chunk.
      const digested = new Map<string, bigint | null>()
      const latest = new Map<string, ChangeRow>()
      // Each key's bucket, hashed once per chunk: the digest needs it and the state row stores it.
      const bucketOfKey = new Map<string, number>()
      const deltas = new Map<number, { count: number; sum: bigint; neg: bigint }>()
      let keysDelta = 0
      for (const r of rows) {
        const old = digested.has(r.key) ? digested.get(r.key)! : toHash(this.readDhash.get(feed, r.key) as Buffer | null)
        const next = r.op === OP_UPSERT ? rowHash(r.key, r.seq, r.data as string) : null
        let b = bucketOfKey.get(r.key)
        if (b === undefined) bucketOfKey.set(r.key, (b = bucketOf(r.key)))
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
        digested.set(r.key, next)
        latest.set(r.key, r)
      }
      for (const [key, r] of latest) {
        const h = digested.get(key) ?? null
        this.writeState.run(feed, key, r.seq, r.op === OP_UPSERT ? r.data : null, h === null ? null : hashToBuffer(h), bucketOfKey.get(key))
      }
      for (const [bucket, d] of deltas) {
        const cur = this.readBucket.get(feed, bucket) as { count: number; sum: Buffer } | undefined
        let sum = cur ? bufferToHash(cur.sum) : 0n
        sum = subHash(addHash(sum, d.sum), d.neg)
        this.writeBucket.run(feed, bucket, (cur?.count ?? 0) + d.count, hashToBuffer(sum))
      }
      this.advance.run((rows[rows.length - 1] as ChangeRow).seq, keysDelta, feed)
      return rows.length
    }).immediate()
  }

  /** Drops what retention allows; returns how many changes went. */
  prune(feed: string, now = Date.now()): number {
    const f = this.feedRow.get(feed) as FeedRow | undefined
    if (!f || (f.retainChanges === null && f.retainMs === null)) return 0
    const bounds: number[] = []
    if (f.retainChanges !== null) bounds.push(f.head - f.retainChanges + 1)
    if (f.retainMs !== null) {
      const first = this.db
        .prepare('SELECT seq FROM tidemark_changes WHERE feed = ? AND seq >= ? AND ts >= ? ORDER BY seq LIMIT 1')
        .pluck()
        .get(feed, f.minSeq, now - f.retainMs) as number | undefined
      bounds.push(first ?? f.head + 1)
    }
    const keepFrom = Math.min(...bounds, f.digestSeq + 1)
    if (keepFrom <= f.minSeq) return 0
    let pruned = 0
    // Short transactions: the owner's writer is never held up for long.
    for (let from = f.minSeq; from < keepFrom; from += 10_000) {
      const to = Math.min(from + 10_000, keepFrom)
      pruned += this.db.transaction(() => {
        const n = this.db.prepare('DELETE FROM tidemark_changes WHERE feed = ? AND seq >= ? AND seq < ?').run(feed, from, to).changes
        this.db.prepare('UPDATE tidemark_feeds SET min_seq = ? WHERE name = ?').run(to, feed)
        return n
      }).immediate()
    }
    // A tombstone older than minSeq may go: with neither row nor tombstone, a key was deleted before minSeq.
    this.db
      .prepare('DELETE FROM tidemark_state WHERE feed = ? AND data IS NULL AND dhash IS NULL AND seq < ?')
      .run(feed, keepFrom)
    return pruned
  }
}

interface FeedRow {
  head: number
  digestSeq: number
  minSeq: number
  retainChanges: number | null
  retainMs: number | null
}

interface ChangeRow {
  seq: number
  key: string
  op: number
  data: string | null
}

function toHash(buf: Buffer | null | undefined): bigint | null {
  return buf ? bufferToHash(buf) : null
}
