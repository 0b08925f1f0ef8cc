import type { Database } from 'better-sqlite3'
import { bucketOf } from '../../digest/row-hash.js'
import { NotAStoreError, SchemaTooNewError, StoreUnavailableError } from '../../errors.js'

/**
 * tidemark's tables inside the owner's SQLite file. Every statement here runs on SQLite ≥ 3.38
 * (Debian 12's `sqlite3` shell) because capture triggers fire inside any client's writes.
 *
 * - tidemark_changes: the log. `txs` is the seq of the first change of the source transaction
 *   (NULL when the writer could not tell: each such change is its own transaction).
 * - tidemark_state: each key's latest version as of the feed's digest_seq, folded in from the log by
 *   the indexer (not in the owner's transaction); `data` NULL is a tombstone; `dhash` is the row
 *   hash the digest holds for the key; `bucket` is the key's digest bucket (`bucketOf`), indexed with
 *   the key so that reconciliation reads one bucket's keys in key order.
 * - tidemark_digest: per leaf bucket, count and sum (16 bytes, big-endian) as of the feed's digest_seq.
 * - tidemark_tokens: the feed server's bearer tokens, secrets only as hashes (store/token-table.ts).
 */
export const SCHEMA_VERSION = 5

const DDL = `
CREATE TABLE IF NOT EXISTS tidemark_meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tidemark_feeds (
  name TEXT PRIMARY KEY,
  epoch TEXT NOT NULL,
  head INTEGER NOT NULL DEFAULT 0,
  min_seq INTEGER NOT NULL DEFAULT 1,
  digest_seq INTEGER NOT NULL DEFAULT 0,
  keys INTEGER NOT NULL DEFAULT 0,
  retain_changes INTEGER,
  retain_ms INTEGER,
  tracked TEXT,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tidemark_changes (
  feed TEXT NOT NULL,
  seq INTEGER NOT NULL,
  key TEXT NOT NULL,
  op INTEGER NOT NULL,
  data TEXT,
  txs INTEGER,
  ts INTEGER NOT NULL,
  PRIMARY KEY (feed, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tidemark_state (
  feed TEXT NOT NULL,
  key TEXT NOT NULL,
  seq INTEGER NOT NULL,
  data TEXT,
  dhash BLOB,
  bucket INTEGER,
  PRIMARY KEY (feed, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tidemark_state_buckets (
  feed TEXT NOT NULL,
  bucket INTEGER NOT NULL,
  key TEXT NOT NULL,
  PRIMARY KEY (feed, bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tidemark_unfiled (
  id INTEGER PRIMARY KEY,
  feed TEXT NOT NULL,
  key TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tidemark_digest (
  feed TEXT NOT NULL,
  bucket INTEGER NOT NULL,
  count INTEGER NOT NULL,
  sum BLOB NOT NULL,
  PRIMARY KEY (feed, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tidemark_tokens (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  feeds TEXT,
  scopes TEXT NOT NULL,
  hash TEXT NOT NULL,
  previous_hash TEXT,
  previous_until INTEGER,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  revoked_at INTEGER,
  last_used_at INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS tidemark_tokens_live_name ON tidemark_tokens (name) WHERE revoked_at IS NULL;
`


/** State rows given their bucket per write transaction of upgrade 3 (all inside the migration's transaction). */
const BACKFILL_CHUNK = 5000

/**
 * - 2: schema 1 kept the state table up to date with a trigger on the log, in the owner's
 *   transaction; that doubled the owner's write cost. From schema 2 the indexer folds the log into
 *   the state too.
 * - 3: the state's `bucket` column, for reconciliation's per-bucket key lists. SQLite has no MD5,
 *   so the backfill computes buckets here, in JS.
 * - 4: the per-bucket key lists move from an index on the state (`tidemark_state_bucket`, which
 *   took every new key at a random place in the indexer's short transactions) to their own table,
 *   `tidemark_state_buckets`, which the indexer fills in bulk from the keys it queues in
 *   `tidemark_unfiled` (indexer.ts, fileBuckets). The state's `bucket` column is no longer read.
 * - 5: the feed server's tokens, `tidemark_tokens`: a new table, made by the DDL above (which runs
 *   on every open), so the upgrade itself has nothing to do.
 */
const UPGRADES: Record<number, (db: Database) => void> = {
  2: (db) => db.exec('DROP TRIGGER IF EXISTS tidemark_changes_to_state;'),
  3: addBucketColumn,
  4: (db) => {
    db.exec(`INSERT OR IGNORE INTO tidemark_state_buckets (feed, bucket, key)
               SELECT feed, bucket, key FROM tidemark_state WHERE bucket IS NOT NULL ORDER BY feed, bucket, key`)
    db.exec('DROP INDEX IF EXISTS tidemark_state_bucket')
  },
}

function addBucketColumn(db: Database): void {
  const columns = db.prepare(`SELECT name FROM pragma_table_info('tidemark_state')`).pluck().all() as string[]
  // A file created by schema 3's DDL has the column already (its version 0 runs every upgrade).
  if (!columns.includes('bucket')) db.exec('ALTER TABLE tidemark_state ADD COLUMN bucket INTEGER')
  const page = db.prepare(
    'SELECT feed, key FROM tidemark_state WHERE bucket IS NULL AND (feed, key) > (?, ?) ORDER BY feed, key LIMIT ?',
  )
  const set = db.prepare('UPDATE tidemark_state SET bucket = ? WHERE feed = ? AND key = ?')
  let cursor = { feed: '', key: '' }
  for (;;) {
    const rows = page.all(cursor.feed, cursor.key, BACKFILL_CHUNK) as Array<{ feed: string; key: string }>
    for (const r of rows) set.run(bucketOf(r.key), r.feed, r.key)
    if (rows.length < BACKFILL_CHUNK) return
    cursor = rows[rows.length - 1] as { feed: string; key: string }
  }
}

/** The SQL expression for "now" in ms since the Unix epoch, valid on any SQLite ≥ 3.8. */
export const NOW_MS_SQL = `CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)`

export const OP_UPSERT = 1
export const OP_DELETE = 2

export function migrate(db: Database): void {
  db.exec('BEGIN IMMEDIATE')
  try {
    db.exec(DDL)
    const row = db.prepare(`SELECT value FROM tidemark_meta WHERE name = 'schema'`).get() as { value: string } | undefined
    const version = row ? Number(row.value) : 0
    if (version > SCHEMA_VERSION) throw new SchemaTooNewError(db.name, version, SCHEMA_VERSION)
    for (let v = Math.max(version, 1) + 1; v <= SCHEMA_VERSION; v++) UPGRADES[v]?.(db)
    db.prepare(`INSERT OR REPLACE INTO tidemark_meta (name, value) VALUES ('schema', ?)`).run(String(SCHEMA_VERSION))
    db.exec('COMMIT')
  } catch (error) {
    db.exec('ROLLBACK')
    throw error
  }
}

/**
 * For a read-only look (`tidemark feeds`, `dump`): the file must hold a source's tables at this
 * tidemark's schema. Nothing is created or upgraded; the wrong kind of file is named as such.
 */
export function checkSourceSchema(db: Database, path: string): void {
  const has = (table: string): boolean => db.prepare(`SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?`).get(table) !== undefined
  if (!has('tidemark_feeds') || !has('tidemark_meta')) {
    if (has('tidemark_replica_meta')) {
      throw new NotAStoreError(`${path} is a tidemark replica, not a source: see its replicas with \`tidemark status ${path}\``)
    }
    throw new NotAStoreError(
      `${path} is not a tidemark source: it has no tidemark tables (is it the right file? \`tidemark write\`, \`track\` or \`serve\` add them to an owner's database)`,
    )
  }
  const row = db.prepare(`SELECT value FROM tidemark_meta WHERE name = 'schema'`).get() as { value: string } | undefined
  const version = row ? Number(row.value) : 0
  if (version > SCHEMA_VERSION) throw new SchemaTooNewError(path, version, SCHEMA_VERSION)
  if (version < SCHEMA_VERSION) {
    throw new StoreUnavailableError(
      `${path} has tidemark schema ${version}; this tidemark reads ${SCHEMA_VERSION}: a command that writes to it (\`tidemark serve\`, \`write\`, \`retention\`) upgrades it`,
    )
  }
}
