import { hash } from 'node:crypto'
import type pg from 'pg'
import { runMigrations } from './schema.js'

/**
 * A replica's tables in the consumer's PostgreSQL database, in schema `tidemark` beside the
 * consumer's own tables (and beside a source's tables when one service both owns a feed and copies
 * another), versioned apart from the source's schema (meta row 'replica-schema'). The same shape as
 * the SQLite replica tables (src/store/sqlite/replica-schema.ts): generations of rows, a digest per
 * generation and bucket — here updated in place in each write transaction, since one writer holds
 * a replica at a time — the last reconciliation runs and the runs asked for, and a view of the
 * current copy:
 *   SELECT data::jsonb ->> 'email' FROM tidemark.replica_current WHERE name = 'customers' AND key = $1
 *
 * Schema 2: the index of keys by digest bucket (for reconciliation) is one partial index per
 * current generation, built (concurrently) once a bootstrap has made its generation current, instead of one index
 * over every row maintained row by row: snapshot rows arrive in key order, so the primary key
 * grows at its end, but their buckets are random and cost a random index insertion each (most of
 * a bootstrap's time on PostgreSQL before). Pages are filled to 85 %: a live update then finds
 * room for the row's new version on its own page, and no index changes (a HOT update), where a
 * full page (a bootstrap's COPY fills them) moved it and inserted into both indexes.
 */
const MIGRATIONS: string[] = [
  `
CREATE TABLE tidemark.replica_replicas (
  name text COLLATE "C" PRIMARY KEY,
  feed text NOT NULL,
  source text NOT NULL,
  epoch text,
  seq bigint NOT NULL DEFAULT 0,
  gen integer NOT NULL DEFAULT 0,
  keys bigint NOT NULL DEFAULT 0,
  bootstrap text,
  bootstrap_keys bigint NOT NULL DEFAULT 0,
  previous_gen integer,
  applied_at bigint,
  source_head bigint NOT NULL DEFAULT 0,
  source_head_at bigint,
  behind_since bigint,
  owner_id text,
  owner_pid integer,
  owner_host text,
  owner_expires bigint,
  created_at bigint NOT NULL
);
CREATE TABLE tidemark.replica_rows (
  name text COLLATE "C" NOT NULL,
  gen integer NOT NULL,
  key text COLLATE "C" NOT NULL,
  seq bigint NOT NULL,
  data text,
  hash bytea,
  bucket integer,
  PRIMARY KEY (name, gen, key)
);
CREATE INDEX replica_rows_bucket ON tidemark.replica_rows (name, gen, bucket);
CREATE TABLE tidemark.replica_digest (
  name text COLLATE "C" NOT NULL,
  gen integer NOT NULL,
  bucket integer NOT NULL,
  count bigint NOT NULL,
  sum bytea NOT NULL,
  PRIMARY KEY (name, gen, bucket)
);
CREATE TABLE tidemark.replica_runs (
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  at bigint NOT NULL,
  record text NOT NULL
);
CREATE TABLE tidemark.replica_requests (
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  mode text NOT NULL,
  deep boolean NOT NULL,
  requested_at bigint NOT NULL,
  taken_at bigint
);
CREATE VIEW tidemark.replica_current (name, key, seq, data) AS
  SELECT r.name, w.key, w.seq, w.data
  FROM tidemark.replica_replicas r
  JOIN tidemark.replica_rows w ON w.name = r.name AND w.gen = r.gen
  WHERE w.data IS NOT NULL;
`,
  `
DROP INDEX tidemark.replica_rows_bucket;
ALTER TABLE tidemark.replica_rows SET (fillfactor = 85);
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT name, gen FROM tidemark.replica_replicas WHERE gen > 0 LOOP
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON tidemark.replica_rows (bucket, key) WHERE name = %L AND gen = %s',
      'replica_rows_bucket_' || left(md5(r.name), 16) || '_' || r.gen, r.name, r.gen);
  END LOOP;
END
$$;
`,
]

/** The bucket index of generation `gen` of replica `name` (identifiers are at most 63 bytes: the name is hashed). */
export function bucketIndexName(name: string, gen: number): string {
  return `${bucketIndexPrefix(name)}${gen}`
}

function bucketIndexPrefix(name: string): string {
  return `replica_rows_bucket_${hash('md5', name, 'hex').slice(0, 16)}_`
}

/**
 * Builds the bucket index of generation `gen` of replica `name` if it is missing, without blocking
 * writers: the generation is already current (a bootstrap's swap does not wait for it; the
 * replicator builds it right after, and a reconciliation reading buckets first makes sure of it).
 * One process builds it at a time (a session advisory lock); an index left invalid by a build that
 * failed is dropped and built again. Returns whether the index is there and usable.
 */
export async function ensureBucketIndex(pool: pg.Pool, name: string, gen: number): Promise<boolean> {
  if (!Number.isSafeInteger(gen)) throw new Error(`generation ${gen} is not a whole number`)
  const index = bucketIndexName(name, gen)
  const client = await pool.connect()
  try {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(3, hashtext($1)) AS locked', [index])
    // Another process is building it: the caller reads without it meanwhile (slower, as correct).
    if (rows[0]?.locked !== true) return false
    try {
      const { rows: found } = await client.query<{ valid: boolean }>(
        `SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'tidemark' AND c.relname = $1`,
        [index],
      )
      if (found[0]?.valid === true) return true
      if (found[0] !== undefined) await client.query(`DROP INDEX CONCURRENTLY IF EXISTS tidemark.${index}`)
      await client.query(
        `CREATE INDEX CONCURRENTLY IF NOT EXISTS ${index} ON tidemark.replica_rows (bucket, key) WHERE name = '${name.replaceAll("'", "''")}' AND gen = ${gen}`,
      )
      return true
    } finally {
      await client.query('SELECT pg_advisory_unlock(3, hashtext($1))', [index])
    }
  } finally {
    client.release()
  }
}

/** Drops the bucket indexes of the generations of `name` other than `keep` (after their rows have gone). */
export async function dropBucketIndexes(pool: pg.Pool, name: string, keep: number[]): Promise<void> {
  const prefix = bucketIndexPrefix(name)
  const { rows } = await pool.query<{ indexname: string }>(
    `SELECT indexname FROM pg_indexes WHERE schemaname = 'tidemark' AND tablename = 'replica_rows' AND starts_with(indexname, $1)`,
    [prefix],
  )
  for (const { indexname } of rows) {
    if (keep.includes(Number(indexname.slice(prefix.length)))) continue
    // Not inside a transaction: CONCURRENTLY does not lock readers of the current copy out.
    await pool.query(`DROP INDEX CONCURRENTLY IF EXISTS tidemark.${indexname}`)
  }
}

export function migrateReplica(client: pg.ClientBase): Promise<void> {
  return runMigrations(client, 'replica-schema', MIGRATIONS, 'tidemark replica schema')
}
