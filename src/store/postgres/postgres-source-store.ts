import type pg from 'pg'
import { BadRequestError, LogTruncatedError, UnknownFeedError } from '../../errors.js'
import { DigestTree } from '../../digest/digest-tree.js'
import { bufferToHash } from '../../digest/row-hash.js'
import { StoredChange, StoredRow } from '../../protocol/encoded.js'
import { BUCKETS } from '../../protocol/digest-wire.js'
import { LIMITS } from '../../protocol/limits.js'
import type { BucketList, DigestEntry, FeedInfo, Seq, SnapshotChunk, TrackedTable, WriteOp } from '../../protocol/types.js'
import { checkFeedName, checkKey, serializeData } from '../../source/validate.js'
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
import { createPool, inTransaction, redactUrl, translatePgError } from './connection.js'
import { ensureFeedRow, newEpoch } from './feeds.js'
import { HeadWatcher } from './head-watcher.js'
import { PgIndexer } from './indexer.js'
import { migrate, OP_DELETE, OP_UPSERT } from './schema.js'
import { checkRestore } from './restore-check.js'
import { Sequencer } from './sequencer.js'
import { PostgresTokenTable } from './tokens.js'
import type { TokenTable } from '../token-table.js'

/** Rows read from the log per query. */
const PAGE = 1000
/**
 * Reads of the state and digest (snapshot chunks, rows by key, digest leaves, bucket lists) are all
 * index range scans by the primary key or the bucket index, whatever the statistics say: with none
 * (tables never analysed, autovacuum off) or stale ones the planner chose a bitmap scan and a sort
 * of a third of the state for a 1,000-row chunk. Plain settings of the read's own transaction.
 */
const SNAPSHOT_READ = 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off'

interface ChangeRow {
  seq: number
  key: string
  op: number
  data: string | null
  tx: number
  ts: number
}

export interface PostgresSourceStoreOptions {
  logger?: Logger
  /** Connections in the store's pool (default 10). */
  poolSize?: number
}

/**
 * The source side of the store port on PostgreSQL (the owner's own database, tidemark's tables in
 * schema `tidemark`). Stateless beyond its pool: any number of feed servers may open the same
 * database, and each serves every request (docs/postgres.md).
 */
export class PostgresSourceStore implements SourceStore {
  readonly location: string
  readonly tokens: TokenTable
  private readonly sequencer: Sequencer
  private readonly indexer: PgIndexer
  private readonly watcher: HeadWatcher
  private readonly trees = new Map<string, { epoch: string; seq: Seq; tree: DigestTree }>()

  private constructor(
    private readonly pool: pg.Pool,
    url: string,
    private readonly logger: Logger,
  ) {
    this.location = redactUrl(url)
    this.tokens = new PostgresTokenTable(pool, this.location)
    this.sequencer = new Sequencer(pool)
    this.indexer = new PgIndexer(pool)
    this.watcher = new HeadWatcher(url, this.sequencer, (feeds) => this.heads(feeds), logger)
  }

  /** Connects (failing fast with a clear error when the database is unreachable) and migrates. */
  static async open(url: string, options: PostgresSourceStoreOptions = {}): Promise<PostgresSourceStore> {
    const pool = createPool(url, options.poolSize === undefined ? {} : { max: options.poolSize })
    try {
      const client = await pool.connect()
      try {
        await migrate(client)
      } finally {
        client.release()
      }
    } catch (error) {
      await pool.end().catch(() => {})
      throw translatePgError(error, redactUrl(url))
    }
    const store = new PostgresSourceStore(pool, url, options.logger ?? silentLogger)
    // A server starting on a restored database notices before it serves a single read. A user
    // without write rights can still read (`tidemark status`): maintain() checks again and says.
    await store.checkRestore().catch((error: unknown) => {
      store.logger.warn({ err: error }, `could not check whether the database was restored: ${(error as Error)?.message ?? String(error)}`)
    })
    return store
  }

  listFeeds(): Promise<FeedInfo[]> {
    return this.guard(async () => {
      const { rows } = await this.pool.query<{ feed: string }>('SELECT DISTINCT feed FROM tidemark.pending')
      for (const { feed } of rows) await this.settle(feed)
      return (await this.pool.query<FeedRow>('SELECT * FROM tidemark.feeds ORDER BY name')).rows.map(toFeedInfo)
    })
  }

  getFeed(name: string): Promise<FeedInfo> {
    return this.guard(async () => {
      checkFeedName(name)
      await this.settle(name)
      return toFeedInfo(await this.feedRow(name))
    })
  }

  ensureFeed(name: string, options: FeedOptions = {}): Promise<FeedInfo> {
    return this.guard(async () => {
      checkRetention(options)
      await ensureFeedRow(this.pool, name, options)
      return this.getFeed(name)
    })
  }

  resetEpoch(name: string): Promise<FeedInfo> {
    return this.guard(async () => {
      await this.feedRow(name)
      await this.pool.query('UPDATE tidemark.feeds SET epoch = $1 WHERE name = $2', [newEpoch(), name])
      return this.getFeed(name)
    })
  }

  /**
   * One transaction of its own; after the commit it runs the sequencer, so the seqs are known.
   * A 100,000-op call travels as one multi-row insert per 5,000 ops.
   */
  write(feed: string, ops: WriteOp[]): Promise<Seq[]> {
    return this.guard(async () => {
      const rows = ops.map((o) => ({ key: checkKey(o.key), op: o.op === 'upsert' ? OP_UPSERT : OP_DELETE, data: o.op === 'upsert' ? serializeData(o.data) : null }))
      const { before, firstOrd } = await inTransaction(this.pool, async (client) => {
        const f = await this.feedRow(feed, client)
        if (f.tracked !== null) {
          const { table } = JSON.parse(f.tracked) as TrackedTable
          throw new BadRequestError(`feed "${feed}" is captured from table "${table}": write to the table, not through the API`)
        }
        let firstOrd: number | undefined
        for (let i = 0; i < rows.length; i += 5000) {
          const slice = rows.slice(i, i + 5000)
          const { rows: ords } = await client.query<{ ord: number }>(
            `INSERT INTO tidemark.pending (feed, key, op, data)
             SELECT $1, u.key, u.op, u.data FROM unnest($2::text[], $3::smallint[], $4::text[]) WITH ORDINALITY AS u(key, op, data, n) ORDER BY u.n
             RETURNING ord`,
            [feed, slice.map((r) => r.key), slice.map((r) => r.op), slice.map((r) => r.data)],
          )
          if (firstOrd === undefined && ords.length > 0) firstOrd = Math.min(...ords.map((o) => o.ord))
        }
        return { before: f.head, firstOrd }
      })
      if (firstOrd === undefined) return []
      await this.settle(feed)
      const { rows: found } = await this.pool.query<{ seq: number }>('SELECT seq FROM tidemark.changes WHERE feed = $1 AND seq > $2 AND ord = $3', [
        feed,
        before,
        firstOrd,
      ])
      const first = found[0]?.seq
      if (first === undefined) throw new Error(`feed "${feed}": the changes just written were not sequenced`)
      return rows.map((_, i) => first + i)
    })
  }

  async *changes(feed: string, after: Seq, options: ChangesOptions = {}): AsyncIterable<StoredChange[]> {
    const limit = options.limit ?? Number.POSITIVE_INFINITY
    const size = Math.max(1, Math.min(PAGE, limit))
    let cursor = after
    let count = 0
    await this.guard(async () => {
      checkFeedName(feed)
      await this.settle(feed)
      const f = await this.feedRow(feed)
      if (after < f.min_seq - 1) throw new LogTruncatedError(feed, after, f.min_seq)
    })
    for (;;) {
      options.signal?.throwIfAborted()
      // Only sequenced changes are read, and the log grows only at its end: a page ending inside a
      // transaction is continued by the next one, and `tx` is stored with each change. Seqs are
      // gap-free, so the page is also bounded above: with statistics older than the log's end the
      // planner took `seq > $2 … LIMIT` for a few rows and read everything after the cursor in a
      // bitmap scan, then sorted it — every page of a 200,000-change burst read the rest of it.
      const rows = await this.guard(
        async () =>
          (
            await this.pool.query<ChangeRow>(
              'SELECT seq, key, op, data, tx, ts FROM tidemark.changes WHERE feed = $1 AND seq > $2 AND seq <= $2::bigint + $3 ORDER BY seq LIMIT $3',
              [feed, cursor, size],
            )
          ).rows,
      )
      if (rows.length === 0) return
      const first = rows[0] as ChangeRow
      if (first.seq !== cursor + 1) throw new LogTruncatedError(feed, cursor, first.seq)
      const batch: StoredChange[] = []
      for (const r of rows) {
        const change = new StoredChange(r.seq, r.key, r.op === OP_UPSERT ? 'upsert' : 'delete', r.tx, r.ts, r.data)
        batch.push(change)
        count++
        if (count >= limit && change.seq === change.tx) {
          yield batch
          return
        }
      }
      yield batch
      if (rows.length < size) return
      cursor = (rows[rows.length - 1] as ChangeRow).seq
    }
  }

  waitForChanges(feed: string, after: Seq, options: WaitOptions): Promise<Seq> {
    return this.guard(async () => {
      checkFeedName(feed)
      await this.settle(feed)
      const now = (await this.feedRow(feed)).head
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
            this.feedRow(feed).then(
              (f) => resolve(f.head),
              (error: unknown) => reject(translatePgError(error, this.location)),
            )
          })
        }, options.timeoutMs)
        options.signal?.addEventListener('abort', onAbort, { once: true })
        unsubscribe = this.watcher.subscribe(feed, (head) => {
          if (head > after) finish(() => resolve(head))
        })
      })
    })
  }

  snapshot(feed: string, after: string | null, limit: number): Promise<SnapshotChunk> {
    return this.atDigest(feed, async (client, head) => {
      // Rows as arrays: no object with named fields built per row only to be copied into a StoredRow.
      const rows = (
        await client.query<[string, number, string]>({
          text: 'SELECT key, seq, data FROM tidemark.state WHERE feed = $1 AND key > $2 AND data IS NOT NULL ORDER BY key LIMIT $3',
          values: [feed, after ?? '', limit + 1],
          rowMode: 'array',
        })
      ).rows.map((r) => new StoredRow(r[0], r[1], r[2]))
      const done = rows.length <= limit
      if (!done) rows.pop()
      return { head, rows, last: rows.length > 0 ? (rows[rows.length - 1] as StoredRow).key : after, done }
    })
  }

  rows(feed: string, keys: string[]): Promise<{ head: Seq; rows: StoredRow[] }> {
    return this.atDigest(feed, async (client, head) => {
      const found = (
        await client.query<{ key: string; seq: number; data: string | null }>(
          'SELECT key, seq, data FROM tidemark.state WHERE feed = $1 AND key = ANY($2::text[])',
          [feed, keys],
        )
      ).rows
      const byKey = new Map(found.map((r) => [r.key, r]))
      const rows: StoredRow[] = []
      for (const key of keys) {
        const r = byKey.get(key)
        if (r) rows.push(new StoredRow(r.key, r.seq, r.data))
      }
      return { head, rows }
    })
  }

  /**
   * Built from the leaves and kept per feed: within one epoch the digest at a seq is always the same,
   * whichever server folded it, so (epoch, seq) is a safe key even with several servers.
   */
  async digestTree(feed: string): Promise<{ seq: Seq; tree: DigestTree }> {
    const { seq, leaves } = await this.digestLeaves(feed)
    const { epoch } = await this.guard(() => this.feedRow(feed))
    const cached = this.trees.get(feed)
    if (cached !== undefined && cached.seq === seq && cached.epoch === epoch) return { seq, tree: cached.tree }
    const tree = new DigestTree(leaves)
    this.trees.set(feed, { epoch, seq, tree })
    return { seq, tree }
  }

  digestLeaves(feed: string): Promise<{ seq: Seq; leaves: DigestLeaf[] }> {
    return this.atDigest(feed, async (client, seq) => {
      const leaves = (
        await client.query<{ bucket: number; count: number; sum: Buffer }>(
          'SELECT bucket, count, sum FROM tidemark.digest WHERE feed = $1 AND count > 0 ORDER BY bucket',
          [feed],
        )
      ).rows.map((r) => ({ bucket: r.bucket, count: r.count, sum: bufferToHash(r.sum) }))
      return { seq, leaves }
    })
  }

  bucketEntries(feed: string, buckets: number[]): Promise<{ seq: Seq; minSeq: Seq; lists: BucketList[] }> {
    if (buckets.length > LIMITS.bucketsPerRead) {
      throw new BadRequestError(`read at most ${LIMITS.bucketsPerRead} buckets at a time, not ${buckets.length}`)
    }
    for (const b of buckets) {
      if (!Number.isSafeInteger(b) || b < 0 || b >= BUCKETS) throw new BadRequestError(`bucket ${b} is not a bucket number (0 to ${BUCKETS - 1})`)
    }
    return this.atDigest(feed, async (client, seq) => {
      const minSeq = (await this.feedRow(feed, client)).min_seq
      const leaves = new Map(
        (
          await client.query<{ bucket: number; count: number; sum: Buffer }>('SELECT bucket, count, sum FROM tidemark.digest WHERE feed = $1 AND bucket = ANY($2::int[])', [
            feed,
            buckets,
          ])
        ).rows.map((r) => [r.bucket, r]),
      )
      const entries = new Map<number, DigestEntry[]>(buckets.map((b) => [b, []]))
      const { rows } = await client.query<{ bucket: number; key: string; seq: number; dhash: Buffer | null }>(
        'SELECT bucket, key, seq, dhash FROM tidemark.state WHERE feed = $1 AND bucket = ANY($2::int[]) ORDER BY bucket, key',
        [feed, buckets],
      )
      for (const r of rows) entries.get(r.bucket)?.push({ key: r.key, seq: r.seq, hash: r.dhash === null ? null : bufferToHash(r.dhash) })
      const lists = buckets.map((bucket): BucketList => {
        const leaf = leaves.get(bucket)
        return { bucket, count: leaf?.count ?? 0, sum: leaf ? bufferToHash(leaf.sum) : 0n, entries: entries.get(bucket) ?? [] }
      })
      return { seq, minSeq, lists }
    })
  }

  /**
   * Brings the state and digest up to everything committed before the call, then runs `read` in
   * one snapshot (REPEATABLE READ) with the position it is exact at (digest_seq).
   */
  private atDigest<T>(feed: string, read: (client: pg.ClientBase, digestSeq: Seq) => Promise<T>): Promise<T> {
    return this.guard(async () => {
      await this.indexed(feed)
      return inTransaction(this.pool, async (client) => read(client, (await this.feedRow(feed, client)).digest_seq), SNAPSHOT_READ)
    })
  }

  track(options: TrackOptions): Promise<FeedInfo> {
    return this.guard(async () => {
      checkRetention(options)
      const feed = checkFeedName(options.feed ?? options.table)
      // Re-tracking compares the table with the feed's state: bring the state up to date first.
      const existing = await this.feedRowOrNone(feed)
      if (existing?.tracked) await this.indexed(feed)
      const { captured } = await inTransaction(this.pool, (client) => installCapture(client, options))
      this.logger.info({ feed, table: options.table, captured }, `capturing table "${options.table}" into feed "${feed}"`)
      return this.getFeed(feed)
    })
  }

  untrack(feed: string): Promise<void> {
    return this.guard(async () => {
      await inTransaction(this.pool, async (client) => {
        const f = await this.feedRow(feed, client)
        const tracked = f.tracked === null ? undefined : (JSON.parse(f.tracked) as TrackedTable)
        if (!tracked || tracked.active === false) throw new BadRequestError(`feed "${feed}" does not capture a table`)
        await removeCapture(client, feed, tracked)
      })
    })
  }

  /**
   * Notices a restore (restore-check.ts: every feed gets a new epoch), then sequences, digests and
   * prunes every feed.
   */
  maintain(): Promise<MaintainResult> {
    return this.guard(async () => {
      const result: MaintainResult = { digested: 0, pruned: 0, reset: await this.checkRestore() }
      const { rows } = await this.pool.query<{ name: string }>('SELECT name FROM tidemark.feeds ORDER BY name')
      for (const { name } of rows) {
        await this.settle(name)
        result.digested += await this.indexer.catchUp(name)
        result.pruned += await this.indexer.prune(name)
      }
      await this.sequencer.rotate()
      return result
    })
  }

  async close(): Promise<void> {
    await this.watcher.close()
    await this.pool.end()
  }

  /** Long-polls this store is holding (for tests). */
  get waiting(): number {
    return this.watcher.size
  }

  private async checkRestore(): Promise<string[]> {
    const reset = await checkRestore(this.pool)
    for (const feed of reset) {
      this.logger.warn({ feed }, `feed "${feed}": the database was restored or replaced (its identity changed): new epoch, replicas will re-bootstrap`)
    }
    return reset
  }

  /** Sequences what was committed before this call, so that reads see it. */
  private async settle(feed: string): Promise<void> {
    if (!(await this.sequencer.pending(feed))) return
    const head = await this.sequencer.run(feed, true)
    if (head !== null) this.watcher.notify(feed, head)
  }

  /** The state and digest up to date with everything committed before this call. */
  private async indexed(feed: string): Promise<void> {
    checkFeedName(feed)
    await this.settle(feed)
    await this.feedRow(feed)
    await this.indexer.catchUp(feed)
  }

  private async heads(feeds: string[]): Promise<Map<string, number>> {
    const { rows } = await this.pool.query<{ name: string; head: string }>('SELECT name, head FROM tidemark.feeds WHERE name = ANY($1::text[])', [feeds])
    return new Map(rows.map((r) => [r.name, Number(r.head)]))
  }

  private async feedRowOrNone(name: string, db: pg.Pool | pg.ClientBase = this.pool): Promise<FeedRow | undefined> {
    return (await db.query<FeedRow>('SELECT * FROM tidemark.feeds WHERE name = $1', [name])).rows[0]
  }

  private async feedRow(name: string, db: pg.Pool | pg.ClientBase = this.pool): Promise<FeedRow> {
    checkFeedName(name)
    const row = await this.feedRowOrNone(name, db)
    if (!row) throw new UnknownFeedError(name)
    return row
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (error) {
      throw translatePgError(error, this.location)
    }
  }
}
