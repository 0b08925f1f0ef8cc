import type { Database, Statement } from 'better-sqlite3'
import type { BucketRow } from '../replica/bucket-lists.js'
import { bucketIndexName, ensureBucketIndex } from './replica-schema.js'

/**
 * Reads one bucket's rows of a generation through that generation's own bucket index (a partial
 * index: the query must name the generation as a literal for SQLite to use it), one prepared
 * statement per generation. An index missing (a store of schema 2 whose swap came before the
 * upgrade cannot be: the upgrade builds them; one dropped by hand can) is rebuilt first, or the rows
 * are scanned on a read-only connection.
 */
export class BucketRows {
  private readonly statements = new Map<number, Statement>()

  constructor(private readonly db: Database) {}

  read(name: string, gen: number, bucket: number): BucketRow[] {
    const rows = this.statement(gen).all(name, bucket) as Array<Omit<BucketRow, 'bucket'>>
    return rows.map((r) => ({ ...r, bucket }))
  }

  /** Forgets the statement of a generation whose index is dropped. */
  forget(gen: number): void {
    this.statements.delete(gen)
  }

  private statement(gen: number): Statement {
    let stmt = this.statements.get(gen)
    if (stmt) return stmt
    const index = bucketIndexName(gen)
    const exists = this.db.prepare(`SELECT 1 FROM sqlite_schema WHERE type = 'index' AND name = ?`).get(index) !== undefined
    if (!exists && !this.db.readonly) ensureBucketIndex(this.db, gen)
    const using = exists || !this.db.readonly ? `INDEXED BY ${index}` : ''
    stmt = this.db.prepare(`SELECT key, seq, hash FROM tidemark_replica_rows ${using} WHERE name = ? AND gen = ${gen} AND bucket = ? AND data IS NOT NULL`)
    if (this.statements.size >= 8) this.statements.clear()
    this.statements.set(gen, stmt)
    return stmt
  }
}
