const R = 'tidemark.replica_replicas'
const W = 'tidemark.replica_rows'
const D = 'tidemark.replica_digest'

/** The PostgreSQL replica store's statements (the rules deciding them are in src/store/replica/). */
export const SQL = {
  insertReplica: `INSERT INTO ${R} (name, feed, source, owner_id, owner_pid, owner_host, owner_expires, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
  rebind: `UPDATE ${R} SET feed = $1, source = $2, epoch = NULL, seq = 0, gen = 0, keys = 0, bootstrap = NULL, bootstrap_keys = 0, previous_gen = CASE WHEN gen > 0 THEN gen ELSE previous_gen END, source_head = 0, source_head_at = NULL, behind_since = NULL WHERE name = $3`,
  setOwner: `UPDATE ${R} SET owner_id = $1, owner_pid = $2, owner_host = $3, owner_expires = $4 WHERE name = $5`,
  renew: `UPDATE ${R} SET owner_expires = $1 WHERE name = $2 AND owner_id = $3`,
  release: `UPDATE ${R} SET owner_id = NULL, owner_pid = NULL, owner_host = NULL, owner_expires = NULL WHERE name = $1 AND owner_id = $2`,
  currentRow: 'SELECT key, seq, data FROM tidemark.replica_current WHERE name = $1 AND key = $2',
  currentRows: 'SELECT key, seq, data FROM tidemark.replica_current WHERE name = $1 AND key > $2 ORDER BY key LIMIT $3',
  leaves: `SELECT bucket, count, sum FROM ${D} WHERE name = $1 AND gen = $2 AND count > 0 ORDER BY bucket`,
  setProgress: `UPDATE ${R} SET bootstrap = $1, bootstrap_keys = bootstrap_keys + $2 WHERE name = $3`,
  swap: `UPDATE ${R} SET gen = $1, epoch = $2, seq = $3, keys = bootstrap_keys, bootstrap = NULL, bootstrap_keys = 0, previous_gen = NULL, applied_at = $4, source_head = greatest(source_head, $3), behind_since = CASE WHEN $3 >= source_head THEN NULL ELSE coalesce(behind_since, $4) END WHERE name = $5 RETURNING *`,
  genPage: `SELECT key, seq, data FROM ${W} WHERE name = $1 AND gen = $2 AND key > $3 AND data IS NOT NULL ORDER BY key LIMIT $4`,
  gcNextGen: `SELECT gen FROM ${W} WHERE name = $1 AND gen <> ALL($2::int[]) LIMIT 1`,
  gcDigests: `DELETE FROM ${D} WHERE name = $1 AND gen <> ALL($2::int[])`,
  gcRows: `DELETE FROM ${W} WHERE name = $1 AND gen = $2 AND key IN (SELECT key FROM ${W} WHERE name = $1 AND gen = $2 ORDER BY key LIMIT $3)`,
  advance: `UPDATE ${R} SET seq = $1, keys = keys + $2, applied_at = $3, source_head = greatest(source_head, $1), behind_since = CASE WHEN $1 >= source_head THEN NULL ELSE coalesce(behind_since, $4) END WHERE name = $5 RETURNING *`,
  noteHead: `UPDATE ${R} SET source_head = greatest(source_head, $1), source_head_at = $2, behind_since = CASE WHEN greatest(source_head, $1) > seq THEN coalesce(behind_since, $2) ELSE NULL END WHERE name = $3 AND owner_id = $4`,
  bucketRows: `SELECT bucket, key, seq, hash FROM ${W} WHERE name = $1 AND gen = $2 AND bucket = ANY($3::int[]) AND data IS NOT NULL AND hash IS NOT NULL ORDER BY bucket, key`,
} as const
