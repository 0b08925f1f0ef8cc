import type { Database } from 'better-sqlite3'

/**
 * tidemark's tables inside the owner's SQLite file. Every statement here runs on SQLite ≥ 3.38
 * (Debian 12's `sqlite3` shell) because capture triggers fire inside any client's writes.
 *
 * - tidemark_changes: the log. `txs` is the seq of the first change of the source transaction
 *   (NULL when the writer could not tell: each such change is its own transaction).
 * - tidemark_state: each key's latest version as of the feed's digest_seq, folded in from the log by
 *   the indexer (not in the owner's transaction); `data` NULL is a tombstone; `dhash` is the row
 *   hash the digest holds for the key.
 * - tidemark_digest: per leaf bucket, count and sum (16 bytes, big-endian) as of the feed's digest_seq.
 */
export const SCHEMA_VERSION = 2

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
  PRIMARY KEY (feed, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tidemark_digest (
  feed TEXT NOT NULL,
  bucket INTEGER NOT NULL,
  count INTEGER NOT NULL,
  sum BLOB NOT NULL,
  PRIMARY KEY (feed, bucket)
) WITHOUT ROWID;
`

/**
 * Schema 1 kept the state table up to date with a trigger on the log, in the owner's transaction;
 * that doubled the owner's write cost. From schema 2 the indexer folds the log into the state too.
 */
const UPGRADES: Record<number, string> = {
  2: 'DROP TRIGGER IF EXISTS tidemark_changes_to_state;',
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
    if (version > SCHEMA_VERSION) {
      throw new Error(`this database has tidemark schema ${version}; this tidemark knows up to ${SCHEMA_VERSION}: upgrade tidemark`)
    }
    for (let v = Math.max(version, 1) + 1; v <= SCHEMA_VERSION; v++) if (UPGRADES[v]) db.exec(UPGRADES[v] as string)
    db.prepare(`INSERT OR REPLACE INTO tidemark_meta (name, value) VALUES ('schema', ?)`).run(String(SCHEMA_VERSION))
    db.exec('COMMIT')
  } catch (error) {
    db.exec('ROLLBACK')
    throw error
  }
}
