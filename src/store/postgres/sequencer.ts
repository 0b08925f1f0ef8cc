import type pg from 'pg'
import { inTransaction } from './connection.js'

/** The channel the sequencer notifies on, with `<feed>:<head>` as the payload. */
export const HEAD_CHANNEL = 'tidemark_head'

/**
 * Gives committed pending changes their seqs (docs/postgres.md, "Commit order").
 *
 * Owners' transactions only insert into tidemark.pending, with no lock on the feed. One sequencer
 * per feed at a time (a transaction-scoped advisory lock) moves every pending row its statement
 * can see — rows of committed transactions only, each transaction whole, since a commit becomes
 * visible all at once — into the log, numbering them from the head on: transactions in the order
 * of their last write (`max(ord)`), rows within one in the order they were written. The head moves
 * in the same transaction. Sequencers of one feed run one after another, each seeing what the one
 * before committed, so the log only ever grows at its end: a reader that has seen seq N never
 * finds a change below N appear later.
 */
export class Sequencer {
  constructor(private readonly pool: pg.Pool) {}

  /**
   * Runs one pass for `feed`; resolves with the new head when it moved changes, else null.
   * `wait`: wait for a pass under way elsewhere (then run one), so that what was committed before
   * this call is sequenced when it resolves; without it, return at once when another pass runs.
   */
  async run(feed: string, wait: boolean): Promise<number | null> {
    return inTransaction(this.pool, async (client) => {
      if (wait) await client.query('SELECT pg_advisory_xact_lock(1, hashtext($1))', [feed])
      else {
        const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock(1, hashtext($1)) AS ok', [feed])
        if (!rows[0]?.ok) return null
      }
      // One statement, one snapshot (taken after the lock, so it sees the previous pass's commit).
      const { rows } = await client.query<{ head: string }>(MOVE, [feed])
      const head = rows[0] ? Number(rows[0].head) : null
      if (head !== null) await client.query('SELECT pg_notify($1, $2)', [HEAD_CHANNEL, `${feed}:${head}`])
      return head
    })
  }

  /** Which of `feeds` have changes waiting to be sequenced: one scan of the queue for all of them. */
  async pendingFeeds(feeds: string[]): Promise<string[]> {
    if (feeds.length === 0) return []
    const { rows } = await this.pool.query<{ feed: string }>('SELECT DISTINCT feed FROM tidemark.pending WHERE feed = ANY($1::text[])', [feeds])
    return rows.map((r) => r.feed)
  }

  /** Whether anything waits to be sequenced (a cheap check before opening a transaction). */
  async pending(feed: string): Promise<boolean> {
    const { rows } = await this.pool.query<{ any: boolean }>('SELECT EXISTS (SELECT 1 FROM tidemark.pending WHERE feed = $1) AS any', [feed])
    return rows[0]?.any === true
  }
}

const MOVE = `
WITH moved AS (
  DELETE FROM tidemark.pending
  WHERE feed = $1 AND EXISTS (SELECT 1 FROM tidemark.feeds WHERE name = $1)
  RETURNING xid, ord, key, op, data, ts
), ranked AS (
  SELECT moved.*, max(ord) OVER (PARTITION BY xid) AS last FROM moved
), numbered AS (
  SELECT ranked.*, f.head + row_number() OVER (ORDER BY last, ord) AS seq
  FROM ranked, tidemark.feeds f WHERE f.name = $1
), inserted AS (
  INSERT INTO tidemark.changes (feed, seq, key, op, data, tx, ts, ord)
  SELECT $1, seq, key, op, data, max(seq) OVER (PARTITION BY xid), ts, ord FROM numbered
  RETURNING seq
)
UPDATE tidemark.feeds SET head = (SELECT max(seq) FROM inserted)
WHERE name = $1 AND EXISTS (SELECT 1 FROM inserted)
RETURNING head`
