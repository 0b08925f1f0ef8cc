import { BadRequestError } from '../errors.js'

/**
 * The feed server's bearer tokens as the source store keeps them: one row per token, the secret
 * only as a hash. Only storage: what a row means (scopes, feeds, expiry, the rotation's grace, the
 * secret's format and hash) is decided in one place above the stores, src/server/tokens.ts. Each
 * backend implements this table with its SQL and nothing more.
 */
export interface TokenRow {
  /** The token's public id, part of its secret (`tmk_<id>_…`): what a request is looked up by. */
  id: string
  /** The operator's name for it; unique among the tokens not revoked. */
  name: string
  /** The feeds it covers; null: every feed, those created later too. */
  feeds: string[] | null
  scopes: string[]
  /** SHA-256 of the current secret, hex. */
  hash: string
  /** After a rotation: the hash of the secret before, accepted until `previousUntil`. */
  previousHash: string | null
  previousUntil: number | null
  /** ms since the Unix epoch, like every time below. */
  createdAt: number
  expiresAt: number | null
  revokedAt: number | null
  lastUsedAt: number | null
}

export interface TokenTable {
  /** Adds a token; a live token of the same name is refused by the table's unique index. */
  insert(row: TokenRow): Promise<void>
  byId(id: string): Promise<TokenRow | undefined>
  /** Every token, revoked ones too, oldest first. */
  list(): Promise<TokenRow[]>
  /** A rotation: the new secret's hash, and the old one's with the end of its grace. */
  setSecret(id: string, change: { hash: string; previousHash: string | null; previousUntil: number | null }): Promise<void>
  revoke(id: string, at: number): Promise<void>
  /** Records a use; never moves `lastUsedAt` back (feed servers over one store record in any order). */
  markUsed(id: string, at: number): Promise<void>
}

/** Column values as both backends store them: lists as JSON text. */
export interface TokenColumns {
  id: string
  name: string
  feeds: string | null
  scopes: string
  hash: string
  previous_hash: string | null
  previous_until: number | string | null
  created_at: number | string
  expires_at: number | string | null
  revoked_at: number | string | null
  last_used_at: number | string | null
}

/** A row as read (PostgreSQL's bigint comes back as text). */
export function tokenFromColumns(c: TokenColumns): TokenRow {
  const time = (v: number | string | null): number | null => (v === null ? null : Number(v))
  return {
    id: c.id,
    name: c.name,
    feeds: c.feeds === null ? null : (JSON.parse(c.feeds) as string[]),
    scopes: JSON.parse(c.scopes) as string[],
    hash: c.hash,
    previousHash: c.previous_hash,
    previousUntil: time(c.previous_until),
    createdAt: Number(c.created_at),
    expiresAt: time(c.expires_at),
    revokedAt: time(c.revoked_at),
    lastUsedAt: time(c.last_used_at),
  }
}

/** The values to insert, in TOKEN_COLUMN_NAMES order. */
export function tokenColumnValues(row: TokenRow): Array<string | number | null> {
  return [
    row.id,
    row.name,
    row.feeds === null ? null : JSON.stringify(row.feeds),
    JSON.stringify(row.scopes),
    row.hash,
    row.previousHash,
    row.previousUntil,
    row.createdAt,
    row.expiresAt,
    row.revokedAt,
    row.lastUsedAt,
  ]
}

export const TOKEN_COLUMN_NAMES = 'id, name, feeds, scopes, hash, previous_hash, previous_until, created_at, expires_at, revoked_at, last_used_at'

/** What a store throws when `insert` meets a live token of the same name (its unique index). */
export function tokenNameTaken(name: string, cause: unknown): BadRequestError {
  return new BadRequestError(`a token named ${JSON.stringify(name)} exists already: revoke it first, or choose another name`, { cause })
}
