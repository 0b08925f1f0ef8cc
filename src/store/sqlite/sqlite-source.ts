import BetterSqlite3, { type Database, type Statement } from 'better-sqlite3'
import { randomBytes } from 'node:crypto'
import { BadRequestError, UnknownFeedError } from '../../errors.js'
import type { JsonCompatible, Seq } from '../../protocol/types.js'
import type { FeedWriter } from '../../source/feed-writer.js'
import { checkFeedName, checkKey, serializeData } from '../../source/validate.js'
import type { FeedOptions } from '../store.js'
import { migrate, OP_DELETE, OP_UPSERT } from './schema.js'

export function newEpoch(): string {
  return randomBytes(8).toString('hex')
}

/**
 * The owner's side on SQLite: attach it to the owner's own better-sqlite3 connection, then call
 * `feed(name).put(key, data)` inside the owner's own transactions. The change lands in the same
 * transaction as the owner's write, so a rollback leaves no trace and a commit cannot lose it.
 *
 * The calls are synchronous because better-sqlite3 transactions cannot span an `await`.
 */
export class SqliteSource {
  readonly db: Database
  /**
   * A second, read-only connection to the same file. In WAL mode it sees only what is committed,
   * so "committed head + 1" is the first seq of the owner's open transaction: that is how a change
   * learns its transaction (`tx`) without a hook at commit, which better-sqlite3 does not offer.
   */
  private readonly committed: Database | undefined
  private readonly committedHead: Statement | undefined
  private readonly writers = new Map<string, SqliteFeedWriter>()

  constructor(db: Database) {
    this.db = db
    if (!db.readonly && db.pragma('journal_mode', { simple: true }) !== 'wal' && !db.memory) {
      db.pragma('journal_mode = WAL')
    }
    migrate(db)
    if (!db.memory && db.name !== '') {
      this.committed = new BetterSqlite3(db.name, { readonly: true, fileMustExist: true })
      this.committed.pragma('busy_timeout = 10000')
      this.committedHead = this.committed.prepare('SELECT head FROM tidemark_feeds WHERE name = ?').pluck()
    }
  }

  /** The writer of a feed, creating the feed (with a new epoch) when it does not exist yet. */
  feed(name: string, options: FeedOptions = {}): SqliteFeedWriter {
    let writer = this.writers.get(name)
    if (!writer) {
      ensureFeedRow(this.db, name, options)
      const row = this.db.prepare('SELECT tracked FROM tidemark_feeds WHERE name = ?').get(name) as { tracked: string | null }
      if (row.tracked !== null) {
        const { table } = JSON.parse(row.tracked) as { table: string }
        throw new BadRequestError(`feed "${name}" is captured from table "${table}": write to the table, not through feed.put`)
      }
      writer = new SqliteFeedWriter(this.db, name, (feed) => this.committedHead?.get(feed) as number | undefined)
      this.writers.set(name, writer)
    } else if (options.retention) {
      ensureFeedRow(this.db, name, options)
    }
    return writer
  }

  close(): void {
    this.committed?.close()
  }
}

export class SqliteFeedWriter implements FeedWriter {
  private readonly bumpHead: Statement
  private readonly insert: Statement

  constructor(
    private readonly db: Database,
    readonly feed: string,
    private readonly readCommittedHead: (feed: string) => number | undefined,
  ) {
    this.bumpHead = db.prepare('UPDATE tidemark_feeds SET head = head + 1 WHERE name = ? RETURNING head').pluck()
    this.insert = db.prepare(
      'INSERT INTO tidemark_changes (feed, seq, key, op, data, txs, ts) VALUES (?, ?, ?, ?, ?, ?, ?)',
    )
  }

  put<T>(key: string, data: T & JsonCompatible<T>): Seq {
    return this.append(checkKey(key), OP_UPSERT, serializeData(data))
  }

  delete(key: string): Seq {
    return this.append(checkKey(key), OP_DELETE, null)
  }

  private append(key: string, op: number, data: string | null): Seq {
    if (!this.db.inTransaction) {
      // On its own: one change, one transaction.
      return this.db.transaction(() => this.appendIn(key, op, data, true))()
    }
    return this.appendIn(key, op, data, false)
  }

  private appendIn(key: string, op: number, data: string | null, alone: boolean): Seq {
    const seq = this.bumpHead.get(this.feed) as number | undefined
    if (seq === undefined) throw new UnknownFeedError(this.feed)
    let txs: number | null = seq
    if (!alone) {
      const committed = this.readCommittedHead(this.feed)
      txs = committed === undefined ? null : committed + 1
    }
    this.insert.run(this.feed, seq, key, op, data, txs, Date.now())
    return seq
  }
}

export function ensureFeedRow(db: Database, name: string, options: FeedOptions = {}): void {
  checkFeedName(name)
  const retention = options.retention
  db.prepare(
    `INSERT INTO tidemark_feeds (name, epoch, retain_changes, retain_ms, created_at) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (name) DO NOTHING`,
  ).run(name, newEpoch(), retention?.changes ?? null, retention?.ageMs ?? null, Date.now())
  if (retention) {
    db.prepare('UPDATE tidemark_feeds SET retain_changes = ?, retain_ms = ? WHERE name = ?').run(
      retention.changes ?? null,
      retention.ageMs ?? null,
      name,
    )
  }
}
