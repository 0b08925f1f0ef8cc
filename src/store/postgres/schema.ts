import type pg from 'pg'
import { installMissingTruncateCapture } from './capture.js'

/**
 * tidemark's tables in the owner's PostgreSQL database, in their own schema `tidemark`, created and
 * upgraded by numbered migrations (MIGRATIONS[n - 1] takes the schema from version n - 1 to n; the
 * version is the list's length).
 * docs/postgres.md explains the design; in short:
 *
 * - pending: what owners' transactions write (the API and capture triggers). No seq yet: `xid` is
 *   the writer's top-level transaction, `ord` the order of the write (a CACHE 1 sequence, so ords
 *   follow the order in which the writes happened, across sessions). No index: it is a short queue
 *   that the sequencer empties, and every index would cost the owner on each write.
 * - changes: the log. The sequencer moves committed pending rows here with gap-free seqs, whole
 *   transactions at a time; `tx` is the seq of the transaction's last change.
 * - state, digest: each key's latest version and the digest's leaves, folded in from the log by
 *   the indexer, exact as of feeds.digest_seq; `bucket` (the key's digest bucket) is indexed with
 *   the key, so that reconciliation reads one bucket's keys in key order. Keys sort with COLLATE "C" (UTF-8 byte order, as
 *   SQLite's BINARY and protocol/key-order.ts).
 */

export const OP_UPSERT = 1
export const OP_DELETE = 2

/** "now" in ms since the Unix epoch, as the writer's clock sees it (SQLite's NOW_MS_SQL). */
export const NOW_MS_SQL = `(extract(epoch FROM clock_timestamp()) * 1000)::bigint`

/** A migration: SQL, or a step that needs more than SQL (it runs in the migration's transaction). */
export type Migration = string | ((client: pg.ClientBase) => Promise<void>)

const MIGRATIONS: Migration[] = [
  `
CREATE TABLE tidemark.feeds (
  name text COLLATE "C" PRIMARY KEY,
  epoch text NOT NULL,
  head bigint NOT NULL DEFAULT 0,
  min_seq bigint NOT NULL DEFAULT 1,
  digest_seq bigint NOT NULL DEFAULT 0,
  keys bigint NOT NULL DEFAULT 0,
  retain_changes bigint,
  retain_ms bigint,
  tracked text,
  created_at bigint NOT NULL
);
CREATE SEQUENCE tidemark.pending_ord AS bigint CACHE 1;
CREATE TABLE tidemark.pending (
  feed text COLLATE "C" NOT NULL,
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  ord bigint NOT NULL DEFAULT nextval('tidemark.pending_ord'),
  key text COLLATE "C" NOT NULL,
  op smallint NOT NULL,
  data text,
  ts bigint NOT NULL DEFAULT ${NOW_MS_SQL}
);
CREATE TABLE tidemark.changes (
  feed text COLLATE "C" NOT NULL,
  seq bigint NOT NULL,
  key text COLLATE "C" NOT NULL,
  op smallint NOT NULL,
  data text,
  tx bigint NOT NULL,
  ts bigint NOT NULL,
  ord bigint NOT NULL,
  PRIMARY KEY (feed, seq)
);
CREATE TABLE tidemark.state (
  feed text COLLATE "C" NOT NULL,
  key text COLLATE "C" NOT NULL,
  seq bigint NOT NULL,
  data text,
  dhash bytea,
  bucket integer NOT NULL,
  PRIMARY KEY (feed, key)
);
CREATE INDEX state_bucket ON tidemark.state (feed, bucket, key);
CREATE TABLE tidemark.digest (
  feed text COLLATE "C" NOT NULL,
  bucket integer NOT NULL,
  count bigint NOT NULL,
  sum bytea NOT NULL,
  PRIMARY KEY (feed, bucket)
);
`,
  // 2: tables tracked before TRUNCATE was captured get its trigger (tracking them again did it).
  (client) => installMissingTruncateCapture(client),
]

/** Creates or upgrades the source's tables; refuses a schema newer than this tidemark knows. */
export function migrate(client: pg.ClientBase): Promise<void> {
  return runMigrations(client, 'schema', MIGRATIONS, 'tidemark schema')
}

/**
 * Runs the migrations `list` above the version recorded under `key` in tidemark.meta, in one
 * transaction under an advisory lock, so that servers starting together do not race.
 */
export async function runMigrations(client: pg.ClientBase, key: string, list: Migration[], what: string): Promise<void> {
  await client.query('BEGIN')
  try {
    await client.query(`SELECT pg_advisory_xact_lock(0, hashtext('tidemark.migrate'))`)
    await client.query('CREATE SCHEMA IF NOT EXISTS tidemark')
    await client.query('CREATE TABLE IF NOT EXISTS tidemark.meta (name text PRIMARY KEY, value text NOT NULL)')
    const { rows } = await client.query<{ value: string }>('SELECT value FROM tidemark.meta WHERE name = $1', [key])
    const version = rows[0] ? Number(rows[0].value) : 0
    if (version > list.length) {
      throw new Error(`this database has ${what} ${version}; this tidemark knows up to ${list.length}: upgrade tidemark`)
    }
    for (let v = version + 1; v <= list.length; v++) {
      const step = list[v - 1] as Migration
      if (typeof step === 'string') await client.query(step)
      else await step(client)
    }
    // Nothing is written when the schema is current (`tidemark status` only reads).
    if (version < list.length) {
      await client.query('INSERT INTO tidemark.meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value', [
        key,
        String(list.length),
      ])
    }
    await client.query('COMMIT')
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw error
  }
}
