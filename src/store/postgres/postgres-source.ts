import type pg from 'pg'
import { BadRequestError, UnknownFeedError } from '../../errors.js'
import type { JsonCompatible, Seq } from '../../protocol/types.js'
import { checkFeedName, checkKey, serializeData } from '../../source/validate.js'
import type { FeedOptions } from '../store.js'
import { inTransaction, type PgQueryable } from './connection.js'
import { ensureFeedRow } from './feeds.js'
import { migrate } from './schema.js'
import { OP_DELETE, OP_UPSERT } from './schema.js'
import { Sequencer } from './sequencer.js'

const INSERT = 'INSERT INTO tidemark.pending (feed, key, op, data) VALUES ($1, $2, $3, $4)'

/**
 * The owner's side on PostgreSQL. Set it up once with the owner's pool (it creates tidemark's
 * schema), then record changes with `feed(name).put(client, key, data)` on the client of the
 * owner's own transaction: the change commits or rolls back with the owner's write.
 *
 * Unlike SQLite, `put` does not return the change's seq: seqs are given after commit, by the
 * sequencer, in commit order (docs/postgres.md), so none exists while the transaction is open.
 * After the commit, `await source.sequenced(feed)` gives a position at or above it (to wait for a
 * replica to have read the write, say).
 * Call `put` after the owner's own write of the row (an UPDATE, or SELECT … FOR UPDATE): that row
 * lock is what orders two transactions writing one key, and the change must be recorded under it.
 */
export class PostgresSource {
  private readonly feeds = new Map<string, PostgresFeedWriter>()

  private constructor(private readonly pool: pg.Pool) {}

  static async attach(pool: pg.Pool): Promise<PostgresSource> {
    const client = await pool.connect()
    try {
      await migrate(client)
    } finally {
      client.release()
    }
    return new PostgresSource(pool)
  }

  /**
   * Sequences every change of `feed` committed before this call and returns the feed's head: each
   * of those changes has a seq at or below it. Waits for a sequencer pass under way elsewhere.
   */
  async sequenced(feed: string): Promise<Seq> {
    checkFeedName(feed)
    const moved = await new Sequencer(this.pool).run(feed, true)
    if (moved !== null) return moved
    const { rows } = await this.pool.query<{ head: string }>('SELECT head FROM tidemark.feeds WHERE name = $1', [feed])
    if (!rows[0]) throw new UnknownFeedError(feed)
    return Number(rows[0].head)
  }

  /** The writer of a feed, creating the feed (with a new epoch) when it does not exist yet. */
  async feed(name: string, options: FeedOptions = {}): Promise<PostgresFeedWriter> {
    let writer = this.feeds.get(name)
    if (writer && !options.retention) return writer
    await inTransaction(this.pool, async (client) => {
      await ensureFeedRow(client, name, options)
      const { rows } = await client.query<{ tracked: string | null }>('SELECT tracked FROM tidemark.feeds WHERE name = $1', [name])
      const tracked = rows[0]?.tracked
      if (tracked) {
        const { table } = JSON.parse(tracked) as { table: string }
        throw new BadRequestError(`feed "${name}" is captured from table "${table}": write to the table, not through feed.put`)
      }
    })
    writer ??= new PostgresFeedWriter(name)
    this.feeds.set(name, writer)
    return writer
  }
}

/** Records changes of one feed on the client of the owner's transaction (or on its own, autocommitted). */
export class PostgresFeedWriter {
  constructor(readonly feed: string) {}

  async put<T>(client: PgQueryable, key: string, data: T & JsonCompatible<T>): Promise<void> {
    await client.query(INSERT, [this.feed, checkKey(key), OP_UPSERT, serializeData(data)])
  }

  async delete(client: PgQueryable, key: string): Promise<void> {
    await client.query(INSERT, [this.feed, checkKey(key), OP_DELETE, null])
  }
}
