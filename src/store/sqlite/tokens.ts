import type { Database, Statement } from 'better-sqlite3'
import { TOKEN_COLUMN_NAMES, tokenColumnValues, tokenFromColumns, tokenNameTaken, type TokenColumns, type TokenRow, type TokenTable } from '../token-table.js'

/** The token table in the source's SQLite file (schema 5): SQL only, the rules are in src/server/tokens.ts. */
export class SqliteTokenTable implements TokenTable {
  private readonly stmt: Record<'insert' | 'byId' | 'list' | 'setSecret' | 'revoke' | 'markUsed', Statement>

  constructor(db: Database) {
    this.stmt = {
      insert: db.prepare(`INSERT INTO tidemark_tokens (${TOKEN_COLUMN_NAMES}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      byId: db.prepare('SELECT * FROM tidemark_tokens WHERE id = ?'),
      list: db.prepare('SELECT * FROM tidemark_tokens ORDER BY created_at, id'),
      setSecret: db.prepare('UPDATE tidemark_tokens SET hash = ?, previous_hash = ?, previous_until = ? WHERE id = ?'),
      revoke: db.prepare('UPDATE tidemark_tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?'),
      markUsed: db.prepare('UPDATE tidemark_tokens SET last_used_at = max(coalesce(last_used_at, 0), ?) WHERE id = ?'),
    }
  }

  async insert(row: TokenRow): Promise<void> {
    try {
      this.stmt.insert.run(...tokenColumnValues(row))
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw tokenNameTaken(row.name, error)
      throw error
    }
  }

  async byId(id: string): Promise<TokenRow | undefined> {
    const c = this.stmt.byId.get(id) as TokenColumns | undefined
    return c === undefined ? undefined : tokenFromColumns(c)
  }

  async list(): Promise<TokenRow[]> {
    return (this.stmt.list.all() as TokenColumns[]).map(tokenFromColumns)
  }

  async setSecret(id: string, change: { hash: string; previousHash: string | null; previousUntil: number | null }): Promise<void> {
    this.stmt.setSecret.run(change.hash, change.previousHash, change.previousUntil, id)
  }

  async revoke(id: string, at: number): Promise<void> {
    this.stmt.revoke.run(at, id)
  }

  async markUsed(id: string, at: number): Promise<void> {
    this.stmt.markUsed.run(at, id)
  }
}
