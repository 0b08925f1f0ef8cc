import type pg from 'pg'
import { TOKEN_COLUMN_NAMES, tokenColumnValues, tokenFromColumns, tokenNameTaken, type TokenColumns, type TokenRow, type TokenTable } from '../token-table.js'
import { translatePgError } from './connection.js'

/**
 * The token table in schema `tidemark` (migration 5): SQL only, the rules are in src/server/tokens.ts.
 * Every feed server over the database reads the same rows, so a revocation reaches them all.
 */
export class PostgresTokenTable implements TokenTable {
  constructor(
    private readonly pool: pg.Pool,
    private readonly location: string,
  ) {}

  async insert(row: TokenRow): Promise<void> {
    const values = tokenColumnValues(row)
    try {
      await this.pool.query(`INSERT INTO tidemark.tokens (${TOKEN_COLUMN_NAMES}) VALUES (${values.map((_, i) => `$${i + 1}`).join(', ')})`, values)
    } catch (error) {
      if ((error as { code?: string }).code === '23505') throw tokenNameTaken(row.name, error)
      throw translatePgError(error, this.location)
    }
  }

  async byId(id: string): Promise<TokenRow | undefined> {
    const { rows } = await this.query<TokenColumns>('SELECT * FROM tidemark.tokens WHERE id = $1', [id])
    return rows[0] === undefined ? undefined : tokenFromColumns(rows[0])
  }

  async list(): Promise<TokenRow[]> {
    return (await this.query<TokenColumns>('SELECT * FROM tidemark.tokens ORDER BY created_at, id', [])).rows.map(tokenFromColumns)
  }

  async setSecret(id: string, change: { hash: string; previousHash: string | null; previousUntil: number | null }): Promise<void> {
    await this.query('UPDATE tidemark.tokens SET hash = $1, previous_hash = $2, previous_until = $3 WHERE id = $4', [
      change.hash,
      change.previousHash,
      change.previousUntil,
      id,
    ])
  }

  async revoke(id: string, at: number): Promise<void> {
    await this.query('UPDATE tidemark.tokens SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2', [at, id])
  }

  async markUsed(id: string, at: number): Promise<void> {
    await this.query('UPDATE tidemark.tokens SET last_used_at = greatest(coalesce(last_used_at, 0), $1) WHERE id = $2', [at, id])
  }

  private async query<R extends pg.QueryResultRow>(sql: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(sql, values)
    } catch (error) {
      throw translatePgError(error, this.location)
    }
  }
}
