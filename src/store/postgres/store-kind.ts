import { NotAStoreError } from '../../errors.js'
import { createPool, redactUrl, translatePgError } from './connection.js'

/**
 * Before a read-only command (`tidemark feeds`, `dump`) opens a PostgreSQL source: the database
 * must already hold tidemark's source tables, so that opening it (which migrates) creates nothing
 * in a database that is not a source — a replica's, or an application's without tidemark.
 */
export async function checkPostgresSource(url: string): Promise<void> {
  const location = redactUrl(url)
  const pool = createPool(url, { max: 1 })
  try {
    const { rows } = await pool.query<{ feeds: string | null; replica: string | null }>(
      `SELECT to_regclass('tidemark.feeds')::text AS feeds, to_regclass('tidemark.replica_replicas')::text AS replica`,
    )
    const found = rows[0]
    if (found?.feeds) return
    throw new NotAStoreError(
      found?.replica
        ? `${location} holds tidemark replicas, not a source: see them with \`tidemark status ${location}\``
        : `${location} is not a tidemark source: it has no tidemark tables (is it the right database? \`tidemark track\` or \`serve\` add them)`,
    )
  } catch (error) {
    throw translatePgError(error, location)
  } finally {
    await pool.end()
  }
}
