import type pg from 'pg'
import { SQL } from './replica-sql.js'

/** Rows deleted per transaction by the garbage collector. */
const GC_CHUNK = 10_000

/**
 * One garbage-collection step inside the caller's transaction: up to GC_CHUNK rows of one
 * generation not kept; when none is left, the digests of the generations not kept, and 0.
 */
export async function collectStep(client: pg.ClientBase, name: string, keep: number[]): Promise<number> {
  const { rows } = await client.query<{ gen: number }>(SQL.gcNextGen, [name, keep])
  const gen = rows[0]?.gen
  if (gen === undefined) {
    await client.query(SQL.gcDigests, [name, keep])
    return 0
  }
  const deleted = await client.query(SQL.gcRows, [name, gen, GC_CHUNK])
  return deleted.rowCount ?? 0
}
