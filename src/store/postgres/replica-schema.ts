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
]

export function migrateReplica(client: pg.ClientBase): Promise<void> {
  return runMigrations(client, 'replica-schema', MIGRATIONS, 'tidemark replica schema')
}
