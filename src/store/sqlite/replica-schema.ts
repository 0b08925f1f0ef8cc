import type { Database } from 'better-sqlite3'
import { bucketOf } from '../../digest/row-hash.js'
import { NotAStoreError, SchemaTooNewError, StoreUnavailableError } from '../../errors.js'

/**
 * A replica's tables inside the consumer's SQLite file, all named `tidemark_replica_…` so that they
 * sit beside the consumer's own tables (and beside a source's `tidemark_…` tables, when one service
 * both owns a feed and copies another) without a clash. The schema version is kept apart from the
 * source's, in `tidemark_replica_meta`, so either side migrates on its own.
 *
 * - tidemark_replica_replicas: one row per replica (by name): what it copies (feed, source), its
 *   checkpoint (epoch, seq) and current generation, the bootstrap in progress (JSON of
 *   BootstrapProgress, NULL when none, and the live rows of its generation so far), lag
 *   bookkeeping, and the lease of the process that writes it. `previous_gen` is set when a forced
 *   rebind emptied the copy: the generation the consumer's own tables still reflect, kept until the
 *   next swap so that its hook diff starts from there.
 * - tidemark_replica_rows: every generation's rows. A bootstrap builds a new generation beside the
 *   current one, and the swap is one update of `gen`. `data` is the JSON text exactly as the source
 *   sent it; NULL is a tombstone (kept while bootstrapping, so that an older snapshot row cannot
 *   bring back a key the log deleted). `hash` is the row's digest hash (NULL for a tombstone), kept
 *   so that replacing a version needs no recomputation.
 * - tidemark_replica_digest: per generation and leaf bucket, count and sum mod 2^128 (16 bytes,
 *   big-endian) of the live rows' hashes, as of the last fold;
 *   tidemark_replica_digest_log: the deltas each write transaction made since (one packed row per
 *   transaction, written with the rows). A digest is its leaves plus its log (replica-digest.ts).
 * - `bucket` on tidemark_replica_rows (schema 2): the key's leaf bucket, so that a reconciliation
 *   lists the keys of a few buckets without reading the whole copy. Schema 3 indexes it per
 *   generation (`tidemark_replica_rows_bucket_<gen>`, a partial index on `gen = <gen>`), built once
 *   the generation is complete, at its swap: a bucket is the leading bits of a hash, so an index kept
 *   up to date during a bootstrap took a random-order insert per row, and every chunk's commit
 *   rewrote pages all over it (a 1,000,000-row bootstrap ran 2.8× slower). Sorting it once at the
 *   swap costs a fraction of that; live writes into a current generation keep it up to date.
 * - tidemark_replica_runs: the last reconciliation runs of each replica (JSON of ReconcileRun);
 *   tidemark_replica_requests: runs asked for on demand (`tidemark verify|repair` while another
 *   process replicates), taken by that process.
 *
 * - tidemark_replica_current (a view): each replica's current copy, live rows only. A consumer reads
 *   its copy with plain SQL, e.g.
 *     SELECT data ->> '$.email' FROM tidemark_replica_current WHERE name = 'customers' AND key = ?
 *   and the lookup stays a primary-key search (the view joins on the replica's current `gen`).
 */
export const REPLICA_SCHEMA_VERSION = 3

const DDL = `
CREATE TABLE IF NOT EXISTS tidemark_replica_meta (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tidemark_replica_replicas (
  name TEXT PRIMARY KEY,
  feed TEXT NOT NULL,
  source TEXT NOT NULL,
  epoch TEXT,
  seq INTEGER NOT NULL DEFAULT 0,
  gen INTEGER NOT NULL DEFAULT 0,
  keys INTEGER NOT NULL DEFAULT 0,
  bootstrap TEXT,
  bootstrap_keys INTEGER NOT NULL DEFAULT 0,
  previous_gen INTEGER,
  applied_at INTEGER,
  source_head INTEGER NOT NULL DEFAULT 0,
  source_head_at INTEGER,
  behind_since INTEGER,
  owner_id TEXT,
  owner_pid INTEGER,
  owner_host TEXT,
  owner_expires INTEGER,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tidemark_replica_rows (
  name TEXT NOT NULL,
  gen INTEGER NOT NULL,
  key TEXT NOT NULL,
  seq INTEGER NOT NULL,
  data TEXT,
  hash BLOB,
  bucket INTEGER,
  PRIMARY KEY (name, gen, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tidemark_replica_digest (
  name TEXT NOT NULL,
  gen INTEGER NOT NULL,
  bucket INTEGER NOT NULL,
  count INTEGER NOT NULL,
  sum BLOB NOT NULL,
  PRIMARY KEY (name, gen, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tidemark_replica_digest_log (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  gen INTEGER NOT NULL,
  deltas BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS tidemark_replica_runs (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  at INTEGER NOT NULL,
  record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tidemark_replica_requests (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  mode TEXT NOT NULL,
  deep INTEGER NOT NULL,
  requested_at INTEGER NOT NULL,
  taken_at INTEGER
);
CREATE VIEW IF NOT EXISTS tidemark_replica_current (name, key, seq, data) AS
  SELECT r.name, w.key, w.seq, w.data
  FROM tidemark_replica_replicas r
  JOIN tidemark_replica_rows w ON w.name = r.name AND w.gen = r.gen
  WHERE w.data IS NOT NULL;
`

/** Schema 1 → 2: the bucket column, filled in from the keys (SQLite has no md5: computed here). */
function addBuckets(db: Database): void {
  const columns = db.prepare(`SELECT name FROM pragma_table_info('tidemark_replica_rows')`).pluck().all() as string[]
  if (!columns.includes('bucket')) db.exec('ALTER TABLE tidemark_replica_rows ADD COLUMN bucket INTEGER')
  const page = db.prepare('SELECT name, gen, key FROM tidemark_replica_rows WHERE (name, gen, key) > (?, ?, ?) ORDER BY name, gen, key LIMIT 1000')
  const set = db.prepare('UPDATE tidemark_replica_rows SET bucket = ? WHERE name = ? AND gen = ? AND key = ?')
  let at: [string, number, string] = ['', -1, '']
  for (;;) {
    const rows = page.all(...at) as Array<{ name: string; gen: number; key: string }>
    for (const r of rows) set.run(bucketOf(r.key), r.name, r.gen, r.key)
    const last = rows[rows.length - 1]
    if (last === undefined) return
    at = [last.name, last.gen, last.key]
  }
}

/** The bucket index of one generation (its number is an integer the store chose: safe in a name). */
export function bucketIndexName(gen: number): string {
  if (!Number.isSafeInteger(gen) || gen < 0) throw new RangeError(`generation ${gen} is not a whole number`)
  return `tidemark_replica_rows_bucket_${gen}`
}

/** Builds generation `gen`'s bucket index when it is missing (one sort of the generation's rows). */
export function ensureBucketIndex(db: Database, gen: number): void {
  db.exec(`CREATE INDEX IF NOT EXISTS ${bucketIndexName(gen)} ON tidemark_replica_rows (name, bucket) WHERE gen = ${gen}`)
}

export function dropBucketIndex(db: Database, gen: number): void {
  db.exec(`DROP INDEX IF EXISTS ${bucketIndexName(gen)}`)
}

/** Schema 2 → 3: the one bucket index over every generation becomes one per current generation. */
function bucketIndexPerGeneration(db: Database): void {
  db.exec('DROP INDEX IF EXISTS tidemark_replica_rows_bucket')
  const gens = db.prepare('SELECT DISTINCT gen FROM tidemark_replica_replicas WHERE gen > 0').pluck().all() as number[]
  for (const gen of gens) ensureBucketIndex(db, gen)
}

export function migrateReplica(db: Database): void {
  const run = (): void => {
    if (!db.readonly) db.exec(DDL)
    else if (db.prepare(`SELECT 1 FROM sqlite_schema WHERE name = 'tidemark_replica_meta'`).get() === undefined) {
      // A read-only look (`tidemark status`) cannot add the tables, nor should it.
      throw new NotAStoreError(`${db.name} is not a tidemark replica: it has no replica tables`)
    }
    const row = db.prepare(`SELECT value FROM tidemark_replica_meta WHERE name = 'schema'`).get() as { value: string } | undefined
    const version = row ? Number(row.value) : 0
    if (version > REPLICA_SCHEMA_VERSION) throw new SchemaTooNewError(db.name, version, REPLICA_SCHEMA_VERSION)
    if (version < REPLICA_SCHEMA_VERSION && db.readonly) {
      throw new StoreUnavailableError(
        `${db.name} has tidemark replica schema ${version}; this tidemark reads ${REPLICA_SCHEMA_VERSION}: run \`tidemark replicate\` on it once to upgrade it`,
      )
    }
    if (version === 1 && !db.readonly) addBuckets(db)
    if (version < 3 && !db.readonly) bucketIndexPerGeneration(db)
    if (version < REPLICA_SCHEMA_VERSION && !db.readonly) {
      db.prepare(`INSERT OR REPLACE INTO tidemark_replica_meta (name, value) VALUES ('schema', ?)`).run(String(REPLICA_SCHEMA_VERSION))
    }
  }
  // BEGIN IMMEDIATE (a read-only connection only reads); a savepoint when a consumer that attached
  // its own connection is inside a transaction.
  if (db.readonly) db.transaction(run)()
  else db.transaction(run).immediate()
}
