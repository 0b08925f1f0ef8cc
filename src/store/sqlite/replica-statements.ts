import type { Database, Statement } from 'better-sqlite3'

/** Snapshot rows inserted, and live versions upserted, per statement. */
export const INSERT_BATCH = 100

/** The replica store's statements on one connection, prepared once (named, so the type needs no inference from the driver). */
export type Statements = Record<StatementName, Statement>

type StatementName =
  | 'replica'
  | 'replicas'
  | 'insertReplica'
  | 'setOwner'
  | 'rebind'
  | 'renew'
  | 'release'
  | 'beginProgress'
  | 'cancelProgress'
  | 'setProgress'
  | 'advance'
  | 'swap'
  | 'noteHead'
  | 'rowVersion'
  | 'rowVersions'
  | 'insertRow'
  | 'insertFresh'
  | 'upsertRow'
  | 'upsertRows'
  | 'upsertNewest'
  | 'deleteRow'
  | 'addKeys'
  | 'setKeys'
  | 'rehashPage'
  | 'setRowHash'
  | 'insertRun'
  | 'trimRuns'
  | 'runs'
  | 'anyRequest'
  | 'insertRequest'
  | 'takeRequests'
  | 'currentRow'
  | 'currentRows'
  | 'genPage'
  | 'genInUse'
  | 'maxRowGen'
  | 'nextRowGen'
  | 'gcBoundary'
  | 'deleteGenRows'
  | 'deleteGenRowsUpTo'

export function prepareReplicaStatements(db: Database): Statements {
  const R = 'tidemark_replica_replicas'
  const W = 'tidemark_replica_rows'
  return {
    replica: db.prepare(`SELECT * FROM ${R} WHERE name = ?`),
    replicas: db.prepare(`SELECT * FROM ${R} ORDER BY name`),
    insertReplica: db.prepare(
      `INSERT INTO ${R} (name, feed, source, owner_id, owner_pid, owner_host, owner_expires, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    setOwner: db.prepare(`UPDATE ${R} SET owner_id = ?, owner_pid = ?, owner_host = ?, owner_expires = ? WHERE name = ?`),
    rebind: db.prepare(
      `UPDATE ${R} SET feed = ?, source = ?, epoch = NULL, seq = 0, gen = 0, keys = 0, bootstrap = NULL, bootstrap_keys = 0,
         previous_gen = CASE WHEN gen > 0 THEN gen ELSE previous_gen END,
         source_head = 0, source_head_at = NULL, behind_since = NULL WHERE name = ?`,
    ),
    renew: db.prepare(`UPDATE ${R} SET owner_expires = ? WHERE name = ? AND owner_id = ?`),
    release: db.prepare(
      `UPDATE ${R} SET owner_id = NULL, owner_pid = NULL, owner_host = NULL, owner_expires = NULL WHERE name = ? AND owner_id = ?`,
    ),
    beginProgress: db.prepare(`UPDATE ${R} SET bootstrap = ?, bootstrap_keys = 0 WHERE name = ?`),
    cancelProgress: db.prepare(`UPDATE ${R} SET bootstrap = NULL, bootstrap_keys = 0 WHERE name = ?`),
    setProgress: db.prepare(`UPDATE ${R} SET bootstrap = ?, bootstrap_keys = bootstrap_keys + ? WHERE name = ?`),
    advance: db.prepare(
      `UPDATE ${R} SET seq = ?, keys = keys + ?, applied_at = ?, source_head = max(source_head, ?),
         behind_since = CASE WHEN ? >= source_head THEN NULL ELSE coalesce(behind_since, ?) END
       WHERE name = ? RETURNING *`,
    ),
    swap: db.prepare(
      `UPDATE ${R} SET gen = ?, epoch = ?, seq = ?, keys = bootstrap_keys, bootstrap = NULL, bootstrap_keys = 0, previous_gen = NULL, applied_at = ?, source_head = max(source_head, ?),
         behind_since = CASE WHEN ? >= source_head THEN NULL ELSE coalesce(behind_since, ?) END
       WHERE name = ? RETURNING *`,
    ),
    noteHead: db.prepare(
      `UPDATE ${R} SET source_head = max(source_head, ?), source_head_at = ?,
         behind_since = CASE WHEN max(source_head, ?) > seq THEN coalesce(behind_since, ?) ELSE NULL END
       WHERE name = ? AND owner_id = ?`,
    ),

    rowVersion: db.prepare(`SELECT seq, hash FROM ${W} WHERE name = ? AND gen = ? AND key = ?`),
    rowVersions: db.prepare(`SELECT key, seq, hash FROM ${W} WHERE name = ? AND gen = ? AND key IN (SELECT value FROM json_each(?))`),
    insertRow: db
      .prepare(`INSERT INTO ${W} (name, gen, key, seq, data, hash, bucket) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING key`)
      .pluck(),
    insertFresh: db.prepare(`INSERT INTO ${W} (name, gen, key, seq, data, hash, bucket) VALUES ${Array(INSERT_BATCH).fill('(:name, :gen, ?, ?, ?, ?, ?)').join(', ')}`),
    upsertRow: db.prepare(
      `INSERT INTO ${W} (name, gen, key, seq, data, hash, bucket) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (name, gen, key) DO UPDATE SET seq = excluded.seq, data = excluded.data, hash = excluded.hash, bucket = excluded.bucket`,
    ),
    // A key's bucket never changes, so the live upsert leaves the column (and its index) alone:
    // naming it in SET would make SQLite rewrite the bucket index entry of every row it updates,
    // about a fifth of an apply's cost. (A bucket edited by hand is found by a deep run: rehash.)
    upsertRows: db.prepare(
      `INSERT INTO ${W} (name, gen, key, seq, data, hash, bucket) VALUES ${Array(INSERT_BATCH).fill('(?, ?, ?, ?, ?, ?, ?)').join(', ')}
       ON CONFLICT (name, gen, key) DO UPDATE SET seq = excluded.seq, data = excluded.data, hash = excluded.hash`,
    ),
    upsertNewest: db.prepare(
      `INSERT INTO ${W} (name, gen, key, seq, data, hash, bucket) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (name, gen, key) DO UPDATE SET seq = excluded.seq, data = excluded.data, hash = excluded.hash`,
    ),
    deleteRow: db.prepare(`DELETE FROM ${W} WHERE name = ? AND gen = ? AND key = ?`),

    addKeys: db.prepare(`UPDATE ${R} SET keys = keys + ? WHERE name = ?`),
    setKeys: db.prepare(`UPDATE ${R} SET keys = ? WHERE name = ?`),
    rehashPage: db.prepare(`SELECT key, seq, data, hash, bucket FROM ${W} WHERE name = ? AND gen = ? AND key > ? AND data IS NOT NULL ORDER BY key LIMIT 1000`),
    setRowHash: db.prepare(`UPDATE ${W} SET hash = ?, bucket = ? WHERE name = ? AND gen = ? AND key = ?`),
    insertRun: db.prepare('INSERT INTO tidemark_replica_runs (name, at, record) VALUES (?, ?, ?)'),
    trimRuns: db.prepare(
      'DELETE FROM tidemark_replica_runs WHERE name = ? AND id NOT IN (SELECT id FROM tidemark_replica_runs WHERE name = ? ORDER BY id DESC LIMIT ?)',
    ),
    runs: db.prepare('SELECT id, record FROM tidemark_replica_runs WHERE name = ? ORDER BY id DESC LIMIT ?'),
    anyRequest: db.prepare('SELECT 1 FROM tidemark_replica_requests WHERE name = ? AND taken_at IS NULL LIMIT 1'),
    insertRequest: db.prepare('INSERT INTO tidemark_replica_requests (name, mode, deep, requested_at) VALUES (?, ?, ?, ?)'),
    takeRequests: db.prepare(
      'UPDATE tidemark_replica_requests SET taken_at = ? WHERE name = ? AND taken_at IS NULL RETURNING id, mode, deep, requested_at',
    ),

    currentRow: db.prepare(`SELECT key, seq, data FROM tidemark_replica_current WHERE name = ? AND key = ?`),
    currentRows: db.prepare(`SELECT key, seq, data FROM tidemark_replica_current WHERE name = ? AND key > ? ORDER BY key LIMIT ?`),
    genPage: db.prepare(`SELECT key, seq, data FROM ${W} WHERE name = ? AND gen = ? AND key > ? AND data IS NOT NULL ORDER BY key LIMIT ?`),

    genInUse: db.prepare(`SELECT 1 FROM ${R} WHERE gen = ? OR previous_gen = ? OR json_extract(bootstrap, '$.gen') = ?`),
    maxRowGen: db.prepare(`SELECT gen FROM ${W} WHERE name = ? ORDER BY gen DESC LIMIT 1`).pluck(),
    nextRowGen: db.prepare(`SELECT gen FROM ${W} WHERE name = ? AND gen > ? ORDER BY gen LIMIT 1`).pluck(),
    gcBoundary: db.prepare(`SELECT key FROM ${W} WHERE name = ? AND gen = ? ORDER BY key LIMIT 1 OFFSET ?`).pluck(),
    deleteGenRows: db.prepare(`DELETE FROM ${W} WHERE name = ? AND gen = ?`),
    deleteGenRowsUpTo: db.prepare(`DELETE FROM ${W} WHERE name = ? AND gen = ? AND key <= ?`),
  }
}

