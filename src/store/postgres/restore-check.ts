import type pg from 'pg'
import { inTransaction } from './connection.js'
import { newEpoch } from './feeds.js'

/**
 * Restores from a backup, noticed on PostgreSQL. The SQLite backend keeps marks of each feed's
 * head in a file beside the database; a database server has no such place that every stateless
 * feed server shares. What it has is an identity that a restore always changes and a restart
 * never does: the cluster's system identifier (a new cluster: pg_dump into another server,
 * pg_upgrade), the current WAL timeline (point-in-time recovery, a restored base backup, a
 * promoted standby) and the database's oid (dropped and restored from a dump). tidemark records
 * it in tidemark.meta; when it differs, the owner's history may have been rewound — the last
 * commits replicas read may be gone and their seqs given again to other changes — so every feed
 * gets a new epoch and replicas re-bootstrap (docs/postgres.md, "Restores").
 */

const IDENTITY = `
SELECT s.system_identifier::text || ':' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) || ':' || d.oid::text AS identity
FROM pg_control_system() s, pg_database d WHERE d.datname = current_database()`

/**
 * Compares the database's identity with the recorded one; on a change gives every feed a new epoch
 * and returns their names (one caller wins when several servers check at once). The first check
 * records the identity.
 */
export async function checkRestore(pool: pg.Pool): Promise<string[]> {
  return inTransaction(pool, async (client) => {
    const identity = (await client.query<{ identity: string }>(IDENTITY)).rows[0]?.identity as string
    const recorded = (await client.query<{ value: string }>(`SELECT value FROM tidemark.meta WHERE name = 'identity' FOR UPDATE`)).rows[0]?.value
    if (recorded === identity) return []
    await client.query(
      `INSERT INTO tidemark.meta (name, value) VALUES ('identity', $1) ON CONFLICT (name) DO UPDATE SET value = excluded.value`,
      [identity],
    )
    if (recorded === undefined) return []
    const { rows } = await client.query<{ name: string }>('SELECT name FROM tidemark.feeds ORDER BY name FOR UPDATE')
    for (const { name } of rows) await client.query('UPDATE tidemark.feeds SET epoch = $1 WHERE name = $2', [newEpoch(), name])
    return rows.map((r) => r.name)
  })
}
