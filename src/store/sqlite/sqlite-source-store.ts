import type { Database, Statement } from 'better-sqlite3'
import { setTimeout as delay } from 'node:timers/promises'
import { BadRequestError, DigestDamagedError, LogTruncatedError, UnknownFeedError } from '../../errors.js'
import { StoredChange, StoredRow } from '../../protocol/encoded.js'
import { BUCKETS } from '../../protocol/digest-wire.js'
import { compareKeys } from '../../protocol/key-order.js'
import { LIMITS } from '../../protocol/limits.js'
import { bucketOf } from '../../digest/row-hash.js'
import type { BucketList, DigestEntry, FeedInfo, Seq, SnapshotChunk, TrackedTable, WriteOp } from '../../protocol/types.js'
import { checkFeedName } from '../../source/validate.js'
import { checkRetention, toFeedInfo, type FeedRow } from '../feed-row.js'
import {
  silentLogger,
  type ChangesOptions,
  type DigestLeaf,
  type FeedOptions,
  type Logger,
  type MaintainResult,
  type SourceStore,
  type TrackOptions,
  type WaitOptions,
} from '../store.js'
import { installCapture, removeCapture } from './capture.js'
import { ChangeWatcher } from './change-watcher.js'
import { openDatabase, translateError } from './database.js'
import { Indexer } from './indexer.js'
import { DigestTree } from '../../digest/digest-tree.js'
import { RestoreMarks } from './restore-marks.js'
import { checkSourceSchema, OP_UPSERT } from './schema.js'
import { ensureFeedRow, newEpoch, SqliteSource } from './sqlite-source.js'
import { SqliteTokenTable } from './tokens.js'
import type { TokenTable } from '../token-table.js'

/** Rows read from the log per short read transaction. */
const PAGE = 1000

interface GroupEnd {
  txs: number
  end: number
}

interface ChangeRow {
  seq: number
  key: string
  op: number
  data: string | null
  txs: number | null
  ts: number
}

export interface SqliteSourceStoreOptions {
  logger?: Logger
  /** Create the file when missing (default true). */
  create?: boolean
  /**
   * Read only (for `feeds`, `dump`): a read-only connection to an existing source, no schema created
   * or upgraded, no retention, no restore marks written. A file that is not a source (a replica, an
   * application's own database) is refused with NotAStoreError instead of getting tidemark's tables.
   */
  readonly?: boolean
}

/** The source side of the store port on a SQLite file (the owner's own database file). */
export class SqliteSourceStore implements SourceStore {
  readonly location: string
  readonly tokens: TokenTable
  private readonly db: Database
  /** The writer; none on a read-only store. */
  private readonly source: SqliteSource | undefined
  private readonly readonly: boolean
  private readonly indexer: Indexer
  /** Each feed's digest tree, kept up to date by this store's indexer (rebuilt when another process folded). */
  private readonly trees = new Map<string, { epoch: string; seq: Seq; tree: DigestTree }>()
  private readonly watcher: ChangeWatcher
  private readonly marks: RestoreMarks
  private readonly logger: Logger
  private readonly stmt: {
    feed: Statement
    feeds: Statement
    page: Statement
    groupEnd: Statement
    snapshot: Statement
    row: Statement
    head: Statement
    stateSeq: Statement
    leaves: Statement
    leaf: Statement
    bucketRows: Statement
    unfiledRows: Statement
  }

  static open(path: string, options: SqliteSourceStoreOptions = {}): SqliteSourceStore {
    const readonly = options.readonly ?? false
    const db = openDatabase(path, readonly ? { create: false, readonly: true } : { create: options.create ?? true })
    try {
      if (readonly) checkSourceSchema(db, path)
      return new SqliteSourceStore(db, path, options.logger ?? silentLogger, readonly)
    } catch (error) {
      db.close()
      throw translateError(error, path)
    }
  }

  private constructor(db: Database, path: string, logger: Logger, readonly: boolean) {
    this.db = db
    this.location = path
    this.logger = logger
    this.readonly = readonly
    this.source = readonly ? undefined : new SqliteSource(db)
    // After the writer, which creates or upgrades the schema (the table is schema 5's).
    this.tokens = new SqliteTokenTable(db)
    this.indexer = new Indexer(db)
    this.indexer.onFold = (feed, from, to, deltas) => {
      const cached = this.trees.get(feed)
      if (cached === undefined) return
      if (cached.seq !== from) {
        this.trees.delete(feed) // folded by another process meanwhile: rebuilt on the next read
        return
      }
      for (const [bucket, d] of deltas) {
        cached.tree.add(bucket, d.count, d.sum)
        cached.tree.subtract(bucket, 0, d.neg)
      }
      cached.seq = to
    }
    this.watcher = new ChangeWatcher(db, db.memory ? undefined : `${db.name}-wal`)
    this.stmt = {
      feed: db.prepare('SELECT * FROM tidemark_feeds WHERE name = ?'),
      feeds: db.prepare('SELECT * FROM tidemark_feeds ORDER BY name'),
      page: db.prepare('SELECT seq, key, op, data, txs, ts FROM tidemark_changes WHERE feed = ? AND seq > ? ORDER BY seq LIMIT ?'),
      groupEnd: db
        .prepare('SELECT seq FROM tidemark_changes WHERE feed = ? AND seq > ? AND (txs IS NULL OR txs <> ?) ORDER BY seq LIMIT 1')
        .pluck(),
      snapshot: db.prepare(
        'SELECT key, seq, data FROM tidemark_state WHERE feed = ? AND key > ? AND data IS NOT NULL ORDER BY key LIMIT ?',
      ),
      row: db.prepare('SELECT key, seq, data FROM tidemark_state WHERE feed = ? AND key = ?'),
      head: db.prepare('SELECT head FROM tidemark_feeds WHERE name = ?').pluck(),
      stateSeq: db.prepare('SELECT digest_seq FROM tidemark_feeds WHERE name = ?').pluck(),
      // Up to 65,536 leaves per digest: read as one text `bucket count hexsum …`, which costs less
      // than as many row objects with a Buffer each (about a third of the time). Hashes are read
      // as hex text elsewhere too, for the same reason (see hexToHash).
      leaves: db
        .prepare(
          `SELECT group_concat(bucket || ' ' || count || ' ' || hex(sum), ' ' ORDER BY bucket) FROM tidemark_digest WHERE feed = ? AND count > 0`,
        )
        .pluck(),
      leaf: db.prepare('SELECT count, hex(sum) AS sum FROM tidemark_digest WHERE feed = ? AND bucket = ?'),
      // Named: without statistics the planner prefers walking the primary key in key order, a scan per bucket.
      // Keys the indexer has queued but not filed yet (a read-only look lists them itself).
      unfiledRows: db.prepare(
        `SELECT DISTINCT s.key, s.seq, CASE WHEN s.dhash IS NULL THEN NULL ELSE hex(s.dhash) END AS dhash
         FROM tidemark_unfiled u JOIN tidemark_state s ON s.feed = u.feed AND s.key = u.key WHERE u.feed = ?`,
      ),
      bucketRows: db.prepare(
        `SELECT s.key, s.seq, CASE WHEN s.dhash IS NULL THEN NULL ELSE hex(s.dhash) END AS dhash
         FROM tidemark_state_buckets b JOIN tidemark_state s ON s.feed = b.feed AND s.key = b.key WHERE b.feed = ? AND b.bucket = ? ORDER BY b.key`,
      ),
    }
    // A read-only look neither resets an epoch nor writes the marks file beside the database.
    this.marks = new RestoreMarks(db, db.memory || readonly ? undefined : `${db.name}-tidemark.json`)
    for (const feed of readonly ? [] : this.marks.check()) {
      logger.warn({ feed }, `feed "${feed}" went back in history (the database was restored from an older copy): new epoch, replicas will re-bootstrap`)
    }
  }

  async listFeeds(): Promise<FeedInfo[]> {
    return (this.stmt.feeds.all() as FeedRow[]).map(toFeedInfo)
  }

  async getFeed(name: string): Promise<FeedInfo> {
    return toFeedInfo(this.feedRow(name))
  }

  async ensureFeed(name: string, options: FeedOptions = {}): Promise<FeedInfo> {
    checkRetention(options)
    this.writable()
    this.db.transaction(() => ensureFeedRow(this.db, name, options)).immediate()
    return this.getFeed(name)
  }

  async resetEpoch(name: string): Promise<FeedInfo> {
    this.writable()
    this.feedRow(name)
    this.db.prepare('UPDATE tidemark_feeds SET epoch = ? WHERE name = ?').run(newEpoch(), name)
    this.marks.save(true)
    this.watcher.notify()
    return this.getFeed(name)
  }

  async write(feed: string, ops: WriteOp[]): Promise<Seq[]> {
    this.feedRow(feed)
    const writer = this.writable().feed(feed)
    const seqs = this.db
      .transaction(() => ops.map((o) => (o.op === 'upsert' ? writer.put(o.key, o.data) : writer.delete(o.key))))
      .immediate()
    this.watcher.notify()
    return seqs
  }

  async *changes(feed: string, after: Seq, options: ChangesOptions = {}): AsyncIterable<StoredChange[]> {
    const limit = options.limit ?? Number.POSITIVE_INFINITY
    const f = this.feedRow(feed)
    if (after < f.min_seq - 1) throw new LogTruncatedError(feed, after, f.min_seq)
    let cursor = after
    let count = 0
    let carry: GroupEnd | undefined
    // A small request reads a small page: a replica asking for 100 changes should not pay for 1,000.
    const size = Math.max(1, Math.min(PAGE, limit))
    for (;;) {
      options.signal?.throwIfAborted()
      const page = this.readPage(feed, cursor, carry, size)
      carry = page.carry
      if (page.rows.length === 0) return
      const first = page.rows[0] as ChangeRow
      if (first.seq !== cursor + 1) {
        // Retention dropped what we were about to read.
        throw new LogTruncatedError(feed, cursor, first.seq)
      }
      const batch: StoredChange[] = []
      for (let i = 0; i < page.rows.length; i++) {
        const r = page.rows[i] as ChangeRow
        const change = new StoredChange(r.seq, r.key, r.op === OP_UPSERT ? 'upsert' : 'delete', page.tx[i] as number, r.ts, r.data)
        batch.push(change)
        count++
        if (count >= limit && change.seq === change.tx) {
          yield batch
          return
        }
      }
      yield batch
      if (page.rows.length < size) return
      cursor = (page.rows[page.rows.length - 1] as ChangeRow).seq
      // Give the event loop a turn between pages: other requests and the owner's writes go on.
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
  }

  /**
   * One page of the log and each row's `tx`, in one read transaction (one consistent position).
   * `carry` is where the previous page's last transaction ends, so that a transaction spanning many
   * pages is looked up once, not once per page.
   */
  private readPage(
    feed: string,
    cursor: Seq,
    carry: GroupEnd | undefined,
    size: number,
  ): { rows: ChangeRow[]; tx: number[]; carry: GroupEnd | undefined } {
    return this.db.transaction(() => {
      const rows = this.stmt.page.all(feed, cursor, size) as ChangeRow[]
      const tx = new Array<number>(rows.length)
      if (rows.length === 0) return { rows, tx, carry: undefined }
      const last = rows[rows.length - 1] as ChangeRow
      // The last group may go on past this page: find where it ends. A short page ends at the head,
      // which is a commit boundary.
      let end = last.seq
      let nextCarry: GroupEnd | undefined
      if (rows.length === size && last.txs !== null) {
        if (carry && carry.txs === last.txs) end = carry.end
        else {
          const next = this.stmt.groupEnd.get(feed, last.seq, last.txs) as number | undefined
          end = next === undefined ? (this.stmt.head.get(feed) as number) : next - 1
        }
        nextCarry = { txs: last.txs, end }
      }
      for (let i = rows.length - 1; i >= 0; i--) {
        const r = rows[i] as ChangeRow
        const n = rows[i + 1]
        if (n !== undefined && !(r.txs !== null && n.txs === r.txs)) end = r.seq
        tx[i] = end
      }
      return { rows, tx, carry: nextCarry }
    })()
  }

  async waitForChanges(feed: string, after: Seq, options: WaitOptions): Promise<Seq> {
    const head = (): number => {
      const h = this.stmt.head.get(feed) as number | undefined
      if (h === undefined) throw new UnknownFeedError(feed)
      return h
    }
    const now = head()
    if (now > after || options.timeoutMs <= 0) return now
    options.signal?.throwIfAborted()
    return new Promise<Seq>((resolve, reject) => {
      let unsubscribe = (): void => {}
      const finish = (fn: () => void): void => {
        unsubscribe()
        clearTimeout(timer)
        options.signal?.removeEventListener('abort', onAbort)
        fn()
      }
      const onAbort = (): void => finish(() => reject(options.signal?.reason))
      const timer = setTimeout(() => {
        finish(() => {
          try {
            resolve(head())
          } catch (error) {
            reject(error)
          }
        })
      }, options.timeoutMs)
      options.signal?.addEventListener('abort', onAbort, { once: true })
      unsubscribe = this.watcher.subscribe(() => {
        try {
          const h = head()
          if (h > after) finish(() => resolve(h))
        } catch (error) {
          finish(() => reject(error))
        }
      })
    })
  }

  async snapshot(feed: string, after: string | null, limit: number): Promise<SnapshotChunk> {
    this.feedRow(feed)
    // The state is exact as of digest_seq: bring it up to the head read before this call, so that a
    // bootstrap that remembered that head gets rows at least that recent.
    this.catchUp(feed)
    return this.db.transaction(() => {
      const head = this.stmt.stateSeq.get(feed) as number
      const rows = (this.stmt.snapshot.all(feed, after ?? '', limit + 1) as Array<{ key: string; seq: number; data: string }>).map(
        (r) => new StoredRow(r.key, r.seq, r.data),
      )
      const done = rows.length <= limit
      if (!done) rows.pop()
      return { head, rows, last: rows.length > 0 ? (rows[rows.length - 1] as StoredRow).key : after, done }
    })()
  }

  async rows(feed: string, keys: string[]): Promise<{ head: Seq; rows: StoredRow[] }> {
    this.feedRow(feed)
    this.catchUp(feed)
    return this.db.transaction(() => {
      const head = this.stmt.stateSeq.get(feed) as number
      const rows: StoredRow[] = []
      for (const key of keys) {
        const r = this.stmt.row.get(feed, key) as { key: string; seq: number; data: string | null } | undefined
        if (r) rows.push(new StoredRow(r.key, r.seq, r.data))
      }
      return { head, rows }
    })()
  }

  async digestTree(feed: string): Promise<{ seq: Seq; tree: DigestTree }> {
    this.feedRow(feed)
    this.catchUp(feed)
    const { epoch, digest_seq: seq } = this.feedRow(feed)
    const cached = this.trees.get(feed)
    if (cached !== undefined && cached.seq === seq && cached.epoch === epoch) return { seq, tree: cached.tree }
    const built = await this.digestLeaves(feed)
    const tree = new DigestTree(built.leaves)
    this.trees.set(feed, { epoch, seq: built.seq, tree })
    return { seq: built.seq, tree }
  }

  async digestLeaves(feed: string): Promise<{ seq: Seq; leaves: DigestLeaf[] }> {
    this.feedRow(feed)
    this.catchUp(feed)
    return this.db.transaction(() => {
      const seq = this.feedRow(feed).digest_seq
      const text = this.stmt.leaves.get(feed) as string | null
      const leaves: DigestLeaf[] = []
      if (text !== null) {
        const parts = text.split(' ')
        for (let i = 0; i + 2 < parts.length; i += 3) {
          leaves.push({ bucket: Number(parts[i]), count: Number(parts[i + 1]), sum: hexToHash(parts[i + 2] as string) })
        }
      }
      return { seq, leaves }
    })()
  }

  async bucketEntries(feed: string, buckets: number[]): Promise<{ seq: Seq; minSeq: Seq; lists: BucketList[] }> {
    if (buckets.length > LIMITS.bucketsPerRead) {
      throw new BadRequestError(`read at most ${LIMITS.bucketsPerRead} buckets at a time, not ${buckets.length}`)
    }
    for (const b of buckets) {
      if (!Number.isSafeInteger(b) || b < 0 || b >= BUCKETS) throw new BadRequestError(`bucket ${b} is not a bucket number (0 to ${BUCKETS - 1})`)
    }
    this.feedRow(feed)
    this.catchUp(feed)
    if (!this.readonly) this.indexer.fileBuckets(feed, true)
    // One read transaction: every list and its count and sum are exact at the same digest_seq.
    return this.db.transaction(() => {
      const f = this.feedRow(feed)
      // Keys the indexer has not filed in their bucket's list yet (none unless read-only), by bucket.
      const unfiled = new Map<number, StateEntryRow[]>()
      for (const r of this.stmt.unfiledRows.all(feed) as StateEntryRow[]) {
        const b = bucketOf(r.key)
        const list = unfiled.get(b)
        if (list) list.push(r)
        else unfiled.set(b, [r])
      }
      const lists = buckets.map((bucket): BucketList => {
        const leaf = this.stmt.leaf.get(feed, bucket) as { count: number; sum: string } | undefined
        let rows = this.stmt.bucketRows.all(feed, bucket) as StateEntryRow[]
        const more = unfiled.get(bucket)
        if (more) {
          // A key may be both filed and still queued (a filing cut short): once.
          const listed = new Set(rows.map((r) => r.key))
          rows = [...rows, ...more.filter((r) => !listed.has(r.key))].sort((a, b) => compareKeys(a.key, b.key))
        }
        const entries = rows.map((r): DigestEntry => ({ key: r.key, seq: r.seq, hash: r.dhash === null ? null : hexToHash(r.dhash) }))
        return { bucket, count: leaf?.count ?? 0, sum: leaf ? hexToHash(leaf.sum) : 0n, entries }
      })
      return { seq: f.digest_seq, minSeq: f.min_seq, lists }
    })()
  }

  async track(options: TrackOptions): Promise<FeedInfo> {
    checkRetention(options)
    this.writable()
    const { feed, captured } = installCapture(this.db, options, (name) => this.indexer.catchUp(name))
    this.logger.info({ feed, table: options.table, captured }, `capturing table "${options.table}" into feed "${feed}"`)
    this.watcher.notify()
    return this.getFeed(feed)
  }

  async untrack(feed: string): Promise<void> {
    this.writable()
    const f = this.feedRow(feed)
    if (f.tracked === null || (JSON.parse(f.tracked) as TrackedTable).active === false) {
      throw new BadRequestError(`feed "${feed}" does not capture a table`)
    }
    removeCapture(this.db, feed)
  }

  async maintain(): Promise<MaintainResult> {
    this.writable()
    const result: MaintainResult = { digested: 0, pruned: 0, reset: this.marks.check() }
    for (const feed of result.reset) {
      this.logger.warn({ feed }, `feed "${feed}" went back in history (restored from an older copy): new epoch, replicas will re-bootstrap`)
    }
    for (const { name } of this.stmt.feeds.all() as FeedRow[]) {
      // One chunk at a time with a yield in between: the owner's writes interleave.
      for (;;) {
        const n = this.indexer.step(name)
        result.digested += n
        if (n === 0) break
        await delay(0)
      }
      // Filed in bulk once enough are waiting, or when the log is quiet (a read-only reader of
      // bucket lists then has few unfiled keys to look at itself).
      this.indexer.fileBuckets(name, result.digested === 0)
      result.pruned += this.indexer.prune(name)
    }
    this.marks.save()
    return result
  }

  async close(): Promise<void> {
    this.watcher.close()
    this.source?.close()
    this.db.close()
  }

  private writable(): SqliteSource {
    if (this.source === undefined) throw new BadRequestError(`${this.location} was opened read-only`)
    return this.source
  }

  /** Folds the log into the state and digest before a read of them; a read-only store reads them as of digest_seq. */
  private catchUp(feed: string): void {
    if (!this.readonly) this.indexer.catchUp(feed)
  }

  private feedRow(name: string): FeedRow {
    checkFeedName(name)
    const row = this.stmt.feed.get(name) as FeedRow | undefined
    if (!row) throw new UnknownFeedError(name)
    return row
  }
}

/** A 16-byte hash read with SQL's hex(). */
function hexToHash(hex: string): bigint {
  if (hex.length !== 32) {
    throw new DigestDamagedError(
      `a stored digest hash has ${hex.length / 2} bytes, not 16: the source's digest tables are damaged (restore them from a backup, or re-track the feed)`,
    )
  }
  return BigInt(`0x${hex}`)
}

/** A state row as a bucket list reads it (the hash as hex). */
interface StateEntryRow {
  key: string
  seq: number
  dhash: string | null
}
