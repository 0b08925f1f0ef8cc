import type { Database, Statement } from 'better-sqlite3'
import { applyDelta, foldChanges } from '../../digest/fold.js'
import { bucketOf, bufferToHash, hashToBuffer } from '../../digest/row-hash.js'
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

/** Unfiled keys (`fileBuckets`) worth a filing; up to this many wait, a few MB of the state table. */
export const FILE_AT = 20_000
/** Keys filed per round (held in memory, sorted by bucket) and per write transaction. */
const FILE_ROUND = 100_000
const FILE_TX = 5_000
/** Keys per read of held hashes (JSON array), and rows per multi-row INSERT (SQLite allows 32,766 parameters). */
const READ_BATCH = 500
const WRITE_BATCH = 100

export class Indexer {
  /** Told of every committed fold (digest_seq from → to), e.g. to keep a digest tree in memory. */
  onFold: ((feed: string, from: number, to: number, deltas: FoldDeltas) => void) | undefined
  private readonly feedRow: Statement
  private readonly changesAfter: Statement
  private readonly writeState: Statement
  private readonly readBucket: Statement
  private readonly writeBucket: Statement
  private readonly advance: Statement
  private readonly unfile: Statement
  private readonly unfileMany: Statement
  private readonly writeStates: Statement
  private readonly readDhashes: Statement
  private readonly unfiledCount: Statement
  private readonly unfiledPage: Statement
  private readonly file: Statement
  private readonly fileMany: Statement
  private readonly dropUnfiled: Statement
  private readonly tombstonesBefore: Statement
  private readonly unlist: Statement
  private readonly dropState: Statement

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
    // The state row alone: a new key is queued (`unfile`, an append) and filed in its bucket's key
    // list later, in bulk (`fileBuckets`). Filed as each chunk was folded, every new key's entry
    // landed at a random place (buckets are hashes), so a chunk's commit wrote a page of the list
    // per new key — a third of the indexer's time on a feed of new keys (docs/bench.md, issue 13).
    this.writeState = db.prepare(
      `INSERT INTO tidemark_state (feed, key, seq, data, dhash) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (feed, key) DO UPDATE SET seq = excluded.seq, data = excluded.data, dhash = excluded.dhash`,
    )
    this.writeStates = db.prepare(
      `INSERT INTO tidemark_state (feed, key, seq, data, dhash) VALUES ${Array(WRITE_BATCH).fill('(?, ?, ?, ?, ?)').join(', ')}
       ON CONFLICT (feed, key) DO UPDATE SET seq = excluded.seq, data = excluded.data, dhash = excluded.dhash`,
    )
    this.readDhashes = db.prepare('SELECT key, dhash FROM tidemark_state WHERE feed = ? AND key IN (SELECT value FROM json_each(?))')
    this.unfile = db.prepare('INSERT INTO tidemark_unfiled (feed, key) VALUES (?, ?)')
    this.unfileMany = db.prepare(`INSERT INTO tidemark_unfiled (feed, key) VALUES ${Array(WRITE_BATCH).fill('(?, ?)').join(', ')}`)
    this.unfiledCount = db.prepare('SELECT count(*) FROM tidemark_unfiled WHERE feed = ?').pluck()
    this.unfiledPage = db.prepare('SELECT id, key FROM tidemark_unfiled WHERE feed = ? ORDER BY id LIMIT ?')
    this.file = db.prepare('INSERT OR IGNORE INTO tidemark_state_buckets (feed, bucket, key) VALUES (?, ?, ?)')
    this.fileMany = db.prepare(`INSERT OR IGNORE INTO tidemark_state_buckets (feed, bucket, key) VALUES ${Array(WRITE_BATCH).fill('(?, ?, ?)').join(', ')}`)
    this.dropUnfiled = db.prepare('DELETE FROM tidemark_unfiled WHERE feed = ? AND id <= ?')
    this.tombstonesBefore = db.prepare('SELECT key FROM tidemark_state WHERE feed = ? AND key > ? AND data IS NULL AND dhash IS NULL AND seq < ? ORDER BY key LIMIT ?').pluck()
    this.unlist = db.prepare('DELETE FROM tidemark_state_buckets WHERE feed = ? AND bucket = ? AND key = ?')
    this.dropState = db.prepare('DELETE FROM tidemark_state WHERE feed = ? AND key = ?')
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
      // The hashes held for the chunk's keys, read in a few statements rather than one per key.
      const held = new Map<string, Buffer | null>()
      const distinct = [...new Set(chunk.map((c) => c.key))]
      for (let i = 0; i < distinct.length; i += READ_BATCH) {
        for (const r of this.readDhashes.all(feed, JSON.stringify(distinct.slice(i, i + READ_BATCH))) as Array<{ key: string; dhash: Buffer | null }>) {
          held.set(r.key, r.dhash)
        }
      }
      const { hashes, latest, deltas, keysDelta } = foldChanges(chunk, (key) => toHash(held.get(key)))
      const params: unknown[] = []
      const flush = (full: Statement, one: Statement, width: number) => {
        for (let i = 0; i + WRITE_BATCH * width <= params.length; i += WRITE_BATCH * width) full.run(params.slice(i, i + WRITE_BATCH * width))
        for (let i = params.length - (params.length % (WRITE_BATCH * width)); i < params.length; i += width) one.run(params.slice(i, i + width))
        params.length = 0
      }
      for (const [key, r] of latest) {
        const h = hashes.get(key) ?? null
        params.push(feed, key, r.seq, r.data, h === null ? null : hashToBuffer(h))
      }
      flush(this.writeStates, this.writeState, 5)
      // Keys with no state row before the chunk (not even a tombstone) are queued for filing.
      for (const key of distinct) if (!held.has(key)) params.push(feed, key)
      flush(this.unfileMany, this.unfile, 2)
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

  /**
   * Files the keys queued since the last filing in their buckets' key lists; returns how many.
   * Unless `all`, only once FILE_AT wait: then in bulk, sorted by bucket, a write transaction per
   * slice of the bucket range, so that each dirties only its slice's pages of the lists. Readers
   * of bucket lists file everything first (read-only ones add the queued keys themselves).
   */
  fileBuckets(feed: string, all: boolean): number {
    if (!all && (this.unfiledCount.get(feed) as number) < FILE_AT) return 0
    let filed = 0
    for (;;) {
      const queued = this.unfiledPage.all(feed, FILE_ROUND) as Array<{ id: number; key: string }>
      if (queued.length === 0) return filed
      const entries = queued.map((q) => ({ key: q.key, bucket: bucketOf(q.key) })).sort((a, b) => a.bucket - b.bucket || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)) // order for locality only
      const lastId = (queued[queued.length - 1] as { id: number }).id
      for (let i = 0; i < entries.length; i += FILE_TX) {
        const end = Math.min(i + FILE_TX, entries.length)
        this.db
          .transaction(() => {
            let j = i
            for (; j + WRITE_BATCH <= end; j += WRITE_BATCH) {
              const params: unknown[] = []
              for (let k = j; k < j + WRITE_BATCH; k++) params.push(feed, (entries[k] as Entry).bucket, (entries[k] as Entry).key)
              this.fileMany.run(params)
            }
            for (; j < end; j++) this.file.run(feed, (entries[j] as Entry).bucket, (entries[j] as Entry).key)
            // With the last slice, the queue goes (filing twice after a crash in between is harmless).
            if (end === entries.length) this.dropUnfiled.run(feed, lastId)
          })
          .immediate()
      }
      filed += queued.length
      if (queued.length < FILE_ROUND) return filed
    }
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
    // A tombstone older than minSeq may go: with neither row nor tombstone, a key was deleted before
    // minSeq. Its bucket list entry goes with it (filed first, so that none is left queued).
    let filed = false
    for (let after = ''; ; ) {
      const keys = this.tombstonesBefore.all(feed, after, keepFrom, FILE_TX) as string[]
      if (keys.length === 0) break
      after = keys[keys.length - 1] as string
      if (!filed) filed = this.fileBuckets(feed, true) >= 0
      this.db
        .transaction(() => {
          for (const key of keys) {
            this.unlist.run(feed, bucketOf(key), key)
            this.dropState.run(feed, key)
          }
        })
        .immediate()
    }
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

interface Entry {
  key: string
  bucket: number
}
