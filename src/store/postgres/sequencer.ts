import type pg from 'pg'
import { inTransaction } from './connection.js'
import { PENDING_PERIOD_MS, PENDING_SLOTS } from './schema.js'

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
/** A pass that moves at least this many changes leaves the log's statistics stale: it ANALYZEs it. */
export const ANALYZE_AFTER = 50_000

/** How often one process tries a rotation (rotateIfDue) at most. */
const ROTATE_EVERY_MS = 1000

/** A partition smaller than this is left for a later rotation: it is cheap to scan, and a TRUNCATE is not free. */
const ROTATE_MIN_BYTES = 64 * 1024

export class Sequencer {
  private rotatedAt = 0

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
      return move(client, feed)
    }).then(async (moved) => {
      if (moved !== null && moved.count >= ANALYZE_AFTER) await this.pool.query('ANALYZE tidemark.changes')
      return moved?.head ?? null
    })
  }

  /** `rotate()`, at most once per second from this process (the long-poll tick calls it). */
  async rotateIfDue(now = Date.now()): Promise<void> {
    if (now - this.rotatedAt < ROTATE_EVERY_MS) return
    this.rotatedAt = now
    await this.rotate()
  }

  /**
   * Empties with TRUNCATE each queue partition that writers have left (two or more periods old by
   * the server's clock) and that has grown past ROTATE_MIN_BYTES: in one transaction it takes the
   * partition's ACCESS EXCLUSIVE lock without waiting (NOWAIT — a writer still in it, or a pass
   * reading it, means: try again later; nobody ever waits for a rotation), so every transaction
   * that wrote into it has ended; then it runs a pass for every feed with rows in it (under each
   * feed's sequencer lock, taken without waiting too), which moves every committed row; the rest
   * were rolled back. Only then does it truncate. Returns the partitions emptied.
   */
  async rotate(): Promise<number[]> {
    const { rows } = await this.pool.query<{ slot: number; bytes: string }>(
      `SELECT s.slot, pg_relation_size(format('tidemark.pending_%s', s.slot)::regclass) AS bytes,
              ((extract(epoch FROM clock_timestamp()) * 1000)::bigint / ${PENDING_PERIOD_MS}) % ${PENDING_SLOTS} AS current
       FROM generate_series(0, ${PENDING_SLOTS - 1}) AS s(slot)`,
    )
    const current = Number((rows[0] as { current?: string } | undefined)?.current ?? 0)
    const old = rows
      .filter((r) => r.slot !== current && r.slot !== (current + PENDING_SLOTS - 1) % PENDING_SLOTS && Number(r.bytes) >= ROTATE_MIN_BYTES)
      .map((r) => r.slot)
    const emptied: number[] = []
    for (const slot of old) {
      const done = await inTransaction(this.pool, async (client) => {
        // One rotation at a time (two, each holding one partition, would deadlock on the other's in their passes).
        if (!(await client.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock(3, 0) AS ok')).rows[0]?.ok) return false
        try {
          await client.query(`LOCK TABLE tidemark.pending_${slot} IN ACCESS EXCLUSIVE MODE NOWAIT`)
        } catch (error) {
          if ((error as { code?: string }).code === '55P03') return false
          throw error
        }
        const feeds = (await client.query<{ feed: string }>(`SELECT DISTINCT feed FROM tidemark.pending_${slot}`)).rows.map((r) => r.feed)
        for (const feed of feeds) {
          if (!(await client.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock(1, hashtext($1)) AS ok', [feed])).rows[0]?.ok) return false
        }
        for (const feed of feeds) await move(client, feed)
        // Rows of a feed that no longer exists are never moved (MOVE checks the feed): they go too.
        await client.query(`TRUNCATE tidemark.pending_${slot}`)
        return true
      }).catch((error: unknown) => {
        // A lock that was not free is not an error of the rotation: the next one tries again.
        if ((error as { code?: string }).code === '55P03') return false
        throw error
      })
      if (done) emptied.push(slot)
    }
    return emptied
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

/** One pass's statement and its NOTIFY, in `client`'s transaction, which holds the feed's sequencer lock. */
async function move(client: pg.ClientBase, feed: string): Promise<{ head: number; count: number } | null> {
  // One statement, one snapshot (taken after the lock, so it sees the previous pass's commit).
  const { rows } = await client.query<{ head: string; moved: string }>(MOVE, [feed])
  const row = rows[0]
  if (!row) return null
  const head = Number(row.head)
  await client.query('SELECT pg_notify($1, $2)', [HEAD_CHANNEL, `${feed}:${head}`])
  return { head, count: Number(row.moved) }
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
RETURNING head, (SELECT count(*) FROM inserted) AS moved`
