import pg from 'pg'
import { BadRequestError, NotAStoreError, StoreUnavailableError } from '../../errors.js'
export { isPostgresUrl, redactUrl } from './url.js'

/**
 * Connections to the owner's (or a consumer's) PostgreSQL. The only module besides its siblings
 * that touches `pg`: nothing outside `src/store/postgres` knows PostgreSQL exists.
 */

/** What tidemark needs of a connection: the owner's own `pg` client or pool satisfies it. */
export interface PgQueryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>
}

/** bigint (int8) columns as numbers: seqs, counts and ms timestamps all stay below 2^53. */
const INT8_OID = 20
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary' ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
}

export function createPool(url: string, options: { max?: number } = {}): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: options.max ?? 10, idleTimeoutMillis: 10_000, types })
  // A pooled connection that dies while idle (server restarted, backend terminated) is dropped by
  // the pool, which emits 'error': without a listener that would crash the process. The next
  // checkout opens a fresh connection, so there is nothing else to do.
  pool.on('error', () => {})
  // Likewise a connection that dies while checked out between two queries: its next query fails
  // (and is translated), so the 'error' event itself needs no more than a listener.
  pool.on('connect', (client) => client.on('error', () => {}))
  return pool
}

/** SQLSTATE classes and socket codes that mean "the database is not reachable right now". */
const UNAVAILABLE = /^(08|53|57P0|3D000|28)/
const SOCKET = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EHOSTUNREACH', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN'])

/**
 * Maps a `pg` error onto tidemark's: unreachable, refused, wrong credentials or a restarting server
 * become `store-unavailable` (the server answers 503, a replica retries), a value PostgreSQL refuses
 * becomes `bad-request`. The message names the location without its password; the original error is
 * kept as the cause (pg's own messages never contain the password).
 */
export function translatePgError(error: unknown, location: string): Error {
  if (!(error instanceof Error) || (error as { code?: unknown }).code === undefined) {
    const message = error instanceof Error ? error.message : String(error)
    if (/Connection terminated|connection timeout|Client has encountered a connection error|not queryable/i.test(message)) {
      return new StoreUnavailableError(`lost the connection to ${location}: ${message}; retry when the database is back`, error)
    }
    return error instanceof Error ? error : new Error(message)
  }
  const code = String((error as unknown as { code: unknown }).code)
  if (code === '28P01' || code === '28000') {
    return new StoreUnavailableError(`PostgreSQL at ${location} refused the credentials (${error.message}): check the user and password in the URL`, error)
  }
  if (code === '3D000') return new StoreUnavailableError(`${location}: ${error.message} (create it, or fix the database name in the URL)`, error)
  if (SOCKET.has(code)) return new StoreUnavailableError(`cannot reach PostgreSQL at ${location} (${code}): is it running, and is the host and port right?`, error)
  if (UNAVAILABLE.test(code)) return new StoreUnavailableError(`PostgreSQL at ${location} is unavailable (${code}: ${error.message}); retry when it is back`, error)
  if (code === '22021' || code === '22P05' || code === '54000') return new BadRequestError(`PostgreSQL refused a value: ${error.message}`, { cause: error })
  if (code === '42P01' && /tidemark\./.test(error.message)) return new NotAStoreError(`${location}: tidemark's tables are missing (${error.message})`, error)
  return error
}

/** Runs `fn` in a transaction on one pooled connection; rolls back on error. */
export async function inTransaction<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
  begin = 'BEGIN',
): Promise<T> {
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    await client.query(begin)
    const result = await fn(client)
    await client.query('COMMIT')
    return result
  } catch (error) {
    try {
      await client.query('ROLLBACK')
    } catch (rollbackError) {
      broken = rollbackError as Error
    }
    throw error
  } finally {
    // A connection whose rollback failed is in an unknown state: do not give it back to the pool.
    client.release(broken)
  }
}
