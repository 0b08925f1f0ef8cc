import type { Database, Statement } from 'better-sqlite3'
import { applyDelta, foldChanges } from '../../digest/fold.js'
import { bufferToHash, hashToBuffer } from '../../digest/row-hash.js'
import { OP_UPSERT } from './schema.js'

/**
 * Folds the log into the state and the digest, in seq order, a chunk per short write transaction:
 * the owner's write path stays one head bump and one log insert per change (no second table, no
 * hashing — which a trigger fired by the `sqlite3` shell could not do anyway), and a feed's state
 * and digest are exact as of its `digest_seq`. Readers of the state (snapshot, rows, digest) catch
 * the indexer up first. Retention runs here too, never dropping a change the indexer has not seen.
 */
/** One fold's change to the digest, per bucket: rows added, and the hashes added and removed. */
export type FoldDeltas = Map<number, { count: number; sum: bigint; neg: bigint }>

export class Indexer {
  /** Told of every committed fold (digest_seq from → to), e.g. to keep a digest tree in memory. */
  onFold: ((feed: string, from: number, to: number, deltas: FoldDeltas) => void) | undefined
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
    let folded: { from: number; to: number; deltas: FoldDeltas } | undefined
    const n = this.db.transaction(() => {
      const f = this.feedRow.get(feed) as FeedRow | undefined
      if (!f || f.digestSeq >= f.head) return 0
      const rows = this.changesAfter.all(feed, f.digestSeq, this.chunk) as ChangeRow[]
      if (rows.length === 0) return 0
      if ((rows[0] as ChangeRow).seq !== f.digestSeq + 1) {
        throw new Error(`feed "${feed}": the log has no change ${f.digestSeq + 1} to digest (it starts at ${rows[0]?.seq})`)
      }
      // Deletes carry no data; upserts always do.
      const chunk = rows.map((r) => ({ ...r, data: r.op === OP_UPSERT ? r.data : null }))
      const { hashes, latest, deltas, keysDelta, buckets } = foldChanges(chunk, (key) => toHash(this.readDhash.get(feed, key) as Buffer | null))
      for (const [key, r] of latest) {
        const h = hashes.get(key) ?? null
        this.writeState.run(feed, key, r.seq, r.data, h === null ? null : hashToBuffer(h), buckets.get(key))
      }
      for (const [bucket, d] of deltas) {
        const cur = this.readBucket.get(feed, bucket) as { count: number; sum: Buffer } | undefined
        const next = applyDelta(cur ? { count: cur.count, sum: bufferToHash(cur.sum) } : undefined, d)
        this.writeBucket.run(feed, bucket, next.count, hashToBuffer(next.sum))
      }
      const to = (rows[rows.length - 1] as ChangeRow).seq
      this.advance.run(to, keysDelta, feed)
      folded = { from: f.digestSeq, to, deltas }
      return rows.length
    }).immediate()
    if (folded !== undefined) this.onFold?.(feed, folded.from, folded.to, folded.deltas)
    return n
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
