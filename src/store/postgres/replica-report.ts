import { NotAStoreError } from '../../errors.js'
import { reportReplicas, type OwnerRow, type ReplicaReport } from '../sqlite/replica-report.js'
import { createPool, redactUrl, translatePgError } from './connection.js'
import { PostgresReplicaStore } from './postgres-replica-store.js'

/**
 * `tidemark status postgres://…`: the replicas kept in a PostgreSQL database, read without claiming
 * or changing anything — the same report as for a SQLite file.
 */
export async function readPostgresReplicas(url: string, options: { name?: string; now?: number } = {}): Promise<ReplicaReport[]> {
  const location = redactUrl(url)
  const pool = createPool(url, { max: 1 })
  try {
    const { rows } = await pool.query<{ t: string | null }>(`SELECT to_regclass('tidemark.replica_replicas')::text AS t`)
    if (!rows[0]?.t) throw new NotAStoreError(`${location} holds no tidemark replica: it has no replica tables`)
    const store = await PostgresReplicaStore.attach(pool)
    const rawRow = async (name: string): Promise<OwnerRow> =>
      (await pool.query<OwnerRow>('SELECT * FROM tidemark.replica_replicas WHERE name = $1', [name])).rows[0] as OwnerRow
    return await reportReplicas(store, location, rawRow, options)
  } catch (error) {
    throw translatePgError(error, location)
  } finally {
    await pool.end()
  }
}
