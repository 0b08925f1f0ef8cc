import type pg from 'pg'
import { installMissingTruncateCapture, reinstallCaptureFunctions } from './capture.js'

/**
 * tidemark's tables in the owner's PostgreSQL database, in their own schema `tidemark`, created and
 * upgraded by numbered migrations (MIGRATIONS[n - 1] takes the schema from version n - 1 to n; the
 * version is the list's length).
 * docs/postgres.md explains the design; in short:
 *
 * - pending: what owners' transactions write (the API and capture triggers). No seq yet: `xid` is
 *   the writer's top-level transaction, `ord` the order of the write (a CACHE 1 sequence, so ords
 *   follow the order in which the writes happened, across sessions). No index: it is a short queue
 *   that the sequencer empties, and every index would cost the owner on each write. Partitioned by
 *   period and emptied by TRUNCATE (PENDING_SLOTS), so that it stays short without vacuum.
 * - changes: the log. The sequencer moves committed pending rows here with gap-free seqs, whole
 *   transactions at a time; `tx` is the seq of the transaction's last change.
 * - state, digest: each key's latest version and the digest's leaves, folded in from the log by
 *   the indexer, exact as of feeds.digest_seq; `bucket` (the key's digest bucket) is indexed with
 *   the key, so that reconciliation reads one bucket's keys in key order. Keys sort with COLLATE "C" (UTF-8 byte order, as
 *   SQLite's BINARY and protocol/key-order.ts).
 * - tokens: the feed server's bearer tokens (migration 5), read by every feed server over the database.
 */

/**
 * The capture queue's partitions (migration 3): `tidemark.pending` is partitioned by `slot`, the
 * writer's transaction start time (`now()`) in periods of PENDING_PERIOD_MS, modulo PENDING_SLOTS.
 * Writers insert into the current period's partition without reading anything; the sequencer's
 * rotation empties a partition two or more periods old with TRUNCATE once every row in it is moved
 * (sequencer.ts), so the queue's dead rows are gone every few seconds whether or not (auto)vacuum
 * ever runs.
 */
export const PENDING_SLOTS = 4
export const PENDING_PERIOD_MS = 1000
export const PENDING_SLOT_SQL = `(((extract(epoch FROM now()) * 1000)::bigint / ${PENDING_PERIOD_MS}) % ${PENDING_SLOTS})::smallint`

export const OP_UPSERT = 1
export const OP_DELETE = 2

/** "now" in ms since the Unix epoch, as the writer's clock sees it (SQLite's NOW_MS_SQL). */
export const NOW_MS_SQL = `(extract(epoch FROM clock_timestamp()) * 1000)::bigint`

/** A migration: SQL, or a step that needs more than SQL (it runs in the migration's transaction). */
export type Migration = string | ((client: pg.ClientBase) => Promise<void>)

const PARTITION_PENDING = `
ALTER TABLE tidemark.pending RENAME TO pending_unpartitioned;
CREATE TABLE tidemark.pending (
  feed text COLLATE "C" NOT NULL,
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  ord bigint NOT NULL DEFAULT nextval('tidemark.pending_ord'),
  key text COLLATE "C" NOT NULL,
  op smallint NOT NULL,
  data text,
  ts bigint NOT NULL DEFAULT ${NOW_MS_SQL},
  slot smallint NOT NULL DEFAULT ${PENDING_SLOT_SQL}
) PARTITION BY LIST (slot);
${Array.from({ length: PENDING_SLOTS }, (_, i) => `CREATE TABLE tidemark.pending_${i} PARTITION OF tidemark.pending FOR VALUES IN (${i});`).join('\n')}
INSERT INTO tidemark.pending (feed, xid, ord, key, op, data, ts) SELECT feed, xid, ord, key, op, data, ts FROM tidemark.pending_unpartitioned;
DROP TABLE tidemark.pending_unpartitioned;
-- Room on every page for a key's next version: the indexer's updates of state and digest stay HOT
-- (no new index entries) and a page's dead versions are pruned by the next update, without vacuum.
ALTER TABLE tidemark.state SET (fillfactor = 80);
ALTER TABLE tidemark.digest SET (fillfactor = 50);
`

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
  // 3: the queue partitioned by period, so that it can be emptied by TRUNCATE (PENDING_SLOTS above).
  // Renaming takes the old queue's lock: writers in flight finish first, and their rows are copied.
  async (client) => {
    const { rows } = await client.query<{ kind: string }>(`SELECT relkind AS kind FROM pg_class WHERE oid = 'tidemark.pending'::regclass`)
    if (rows[0]?.kind !== 'p') await client.query(PARTITION_PENDING)
  },
  // 4: capture triggers insert into the queue's current partition by name (capture.ts, enqueue).
  (client) => reinstallCaptureFunctions(client),
  // 5: the feed server's bearer tokens (store/token-table.ts), secrets only as hashes; a name is
  // unique among the tokens not revoked. Idempotent, as the others: a database set back to an older
  // version (a test does) runs it again.
  `
CREATE TABLE IF NOT EXISTS tidemark.tokens (
  id text PRIMARY KEY,
  name text NOT NULL,
  feeds text,
  scopes text NOT NULL,
  hash text NOT NULL,
  previous_hash text,
  previous_until bigint,
  created_at bigint NOT NULL,
  expires_at bigint,
  revoked_at bigint,
  last_used_at bigint
);
CREATE UNIQUE INDEX IF NOT EXISTS tokens_live_name ON tidemark.tokens (name) WHERE revoked_at IS NULL;
`,
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
