/**
 * The feed server's bearer tokens: every rule about them, in one place above the stores (which keep
 * only their rows, store/token-table.ts). A token is `tmk_<id>_<secret>`: the id says which row to
 * read, the whole string's SHA-256 is compared with the row's in constant time. SHA-256 and not a
 * slow password hash because the secret is 256 random bits, not something a person chose: there is
 * no dictionary to try, and the check runs on every request.
 *
 * - scopes: `read` (replicate and verify: the feed's info, changes, snapshot, rows, digest, keys),
 *   `export` (GET …/export), `report` (the feed list and info for the dashboard; /metrics with every
 *   feed), `admin` (all of them). The route table (route-table.ts) says which a route needs.
 * - feeds: a list, or every feed (those created later too).
 * - expiry: optional; an expired token is refused like a revoked one (401).
 * - rotation: a new secret; the old one is still accepted until the grace period ends.
 * - `--token` secrets: the simple case, each an admin token over every feed, not stored anywhere.
 *
 * Feed servers over one store cache what they read of a token for CACHE_MS, so a revocation made
 * anywhere (the CLI, another feed server) is honoured everywhere within about a second.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { BadRequestError, TidemarkError } from '../errors.js'
import { checkFeedName } from '../source/validate.js'
import { silentLogger, type Logger } from '../store/store.js'
import { tokenNameTaken, type TokenRow, type TokenTable } from '../store/token-table.js'
import type { Authorize, AuthRequest } from './auth.js'

export const SCOPES = ['read', 'export', 'report', 'admin'] as const
export type Scope = (typeof SCOPES)[number]

/** How long a feed server trusts what it read of a token: the most a revocation waits to be honoured. */
export const CACHE_MS = 1000
/** A token's "last used" is written at most this often per feed server (not on every request). */
const MARK_USED_EVERY_MS = 60_000
/** Tokens remembered per feed server (found or not) before the cache starts over. */
const CACHE_ENTRIES = 10_000
/** The default grace period of a rotation, during which the old secret still works. */
export const DEFAULT_ROTATE_GRACE_MS = 3_600_000

const SECRET_FORMAT = /^tmk_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$/
const NAME_FORMAT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

/** What `token list` shows of a token: everything but its hashes. */
export interface TokenInfo {
  id: string
  name: string
  /** null: every feed. */
  feeds: string[] | null
  scopes: Scope[]
  createdAt: number
  expiresAt: number | null
  revokedAt: number | null
  lastUsedAt: number | null
  /** After a rotation: until when the old secret is still accepted. */
  previousUntil: number | null
}

export interface NewToken {
  name: string
  /** null: every feed. */
  feeds: string[] | null
  scopes: string[]
  /** From now; none: never expires. */
  expiresInMs?: number
}

/** Creates a token; the secret is returned here and never again (only its hash is stored). */
export async function createToken(table: TokenTable, spec: NewToken, now = Date.now()): Promise<{ secret: string; token: TokenInfo }> {
  if (!NAME_FORMAT.test(spec.name)) {
    throw new BadRequestError(`token name ${JSON.stringify(spec.name)}: use 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit`)
  }
  if (spec.feeds !== null) {
    if (spec.feeds.length === 0) throw new BadRequestError('give the feeds the token may read (--feed, repeatable) or --all-feeds')
    for (const feed of spec.feeds) checkFeedName(feed)
  }
  const scopes = checkScopes(spec.scopes)
  if (spec.expiresInMs !== undefined && !(Number.isSafeInteger(spec.expiresInMs) && spec.expiresInMs > 0)) {
    throw new BadRequestError('a token expires a positive time from now')
  }
  if ((await table.list()).some((t) => t.name === spec.name && t.revokedAt === null)) {
    throw tokenNameTaken(spec.name, undefined)
  }
  const id = randomBytes(8).toString('hex')
  const secret = newSecret(id)
  const row: TokenRow = {
    id,
    name: spec.name,
    feeds: spec.feeds === null ? null : [...new Set(spec.feeds)].sort(),
    scopes,
    hash: hashOf(secret),
    previousHash: null,
    previousUntil: null,
    createdAt: now,
    expiresAt: spec.expiresInMs === undefined ? null : now + spec.expiresInMs,
    revokedAt: null,
    lastUsedAt: null,
  }
  await table.insert(row)
  return { secret, token: infoOf(row) }
}

/** Every token, revoked ones too, oldest first; never a secret or a hash. */
export async function listTokens(table: TokenTable): Promise<TokenInfo[]> {
  return (await table.list()).map(infoOf)
}

/** Revokes the live token of that name: refused from then on, within CACHE_MS on every feed server. */
export async function revokeToken(table: TokenTable, name: string, now = Date.now()): Promise<TokenInfo> {
  const row = await liveToken(table, name)
  await table.revoke(row.id, now)
  return infoOf({ ...row, revokedAt: now })
}

/**
 * Gives the live token of that name a new secret (returned here, once). The old secret is accepted
 * for `graceMs` more (0: not at all), so the clients can be given the new one first; a secret
 * older than that one is refused from now on. The token's scopes, feeds and expiry stay.
 */
export async function rotateToken(
  table: TokenTable,
  name: string,
  graceMs = DEFAULT_ROTATE_GRACE_MS,
  now = Date.now(),
): Promise<{ secret: string; token: TokenInfo }> {
  if (!(Number.isSafeInteger(graceMs) && graceMs >= 0)) throw new BadRequestError('the grace period of a rotation is a time of 0 or more')
  const row = await liveToken(table, name)
  const secret = newSecret(row.id)
  const change = { hash: hashOf(secret), previousHash: graceMs > 0 ? row.hash : null, previousUntil: graceMs > 0 ? now + graceMs : null }
  await table.setSecret(row.id, change)
  return { secret, token: infoOf({ ...row, ...change }) }
}

export interface AuthorizerOptions {
  /** `--token` secrets: each an admin token over every feed. */
  adminTokens?: readonly string[]
  /** For tests: the clock. */
  now?: () => number
  /** Where a failure to record "last used" is said. */
  logger?: Logger
}

/**
 * The feed server's `authorize` for the tokens of `table` and the `adminTokens`; undefined (an
 * open server) when there are none of either: a store whose every token is revoked or expired still
 * needs tokens. Which scopes and feeds a request needs comes from the route table, in `request`.
 */
export async function tokenAuthorizer(table: TokenTable, options: AuthorizerOptions = {}): Promise<Authorize | undefined> {
  const admins = (options.adminTokens ?? []).map(digest)
  const rows = await table.list()
  if (admins.length === 0 && rows.length === 0) return undefined
  return new TokenChecker(table, admins, options.now ?? Date.now, options.logger ?? silentLogger).authorize
}

type Grant = { feeds: null; scopes: readonly string[] } | { feeds: readonly string[]; scopes: readonly string[] }
const ADMIN: Grant = { feeds: null, scopes: ['admin'] }

class TokenChecker {
  private readonly cache = new Map<string, { row: TokenRow | undefined; at: number }>()
  private readonly marked = new Map<string, number>()

  constructor(
    private readonly table: TokenTable,
    private readonly admins: readonly Buffer[],
    private readonly now: () => number,
    private readonly logger: Logger,
  ) {}

  readonly authorize = async (request: AuthRequest): Promise<void> => {
    const grant = await this.grantOf(request.token)
    if (!allows(grant, request)) {
      // Decided from the token and the route alone, never from the store: a feed that does not
      // exist and one the token may not see get the very same answer.
      const needs = request.scopes === undefined ? '' : ` (it needs scope ${request.scopes.join(' or ')}${request.everyFeed ? ' over every feed' : ''})`
      throw new TidemarkError('forbidden', `this token does not allow this request${needs}`)
    }
  }

  private async grantOf(token: string | undefined): Promise<Grant> {
    if (token === undefined || token === '') {
      throw new TidemarkError('unauthorized', 'this feed server needs a bearer token: send "Authorization: Bearer <token>"')
    }
    const given = digest(token)
    let admin = false
    for (const a of this.admins) admin = timingSafeEqual(a, given) || admin
    if (admin) return ADMIN
    const id = SECRET_FORMAT.exec(token)?.[1]
    const now = this.now()
    let row = id === undefined ? undefined : await this.read(id, now, false)
    let match = row === undefined ? 'none' : matches(row, given, now)
    // Rotated since it was cached (here or by another feed server): read it again once.
    if (id !== undefined && row !== undefined && match === 'none') {
      row = await this.read(id, now, true)
      match = row === undefined ? 'none' : matches(row, given, now)
    }
    if (row === undefined || match === 'none') throw new TidemarkError('unauthorized', 'the bearer token is not one this feed server accepts')
    if (row.revokedAt !== null) throw new TidemarkError('unauthorized', `the bearer token "${row.name}" was revoked`)
    if (row.expiresAt !== null && row.expiresAt <= now) {
      throw new TidemarkError('unauthorized', `the bearer token "${row.name}" expired at ${new Date(row.expiresAt).toISOString()}`)
    }
    this.markUsed(row.id, now)
    return { feeds: row.feeds, scopes: row.scopes } as Grant
  }

  private async read(id: string, now: number, fresh: boolean): Promise<TokenRow | undefined> {
    const cached = this.cache.get(id)
    if (!fresh && cached !== undefined && now - cached.at < CACHE_MS) return cached.row
    const row = await this.table.byId(id)
    if (this.cache.size >= CACHE_ENTRIES) this.cache.clear()
    this.cache.set(id, { row, at: now })
    return row
  }

  /** Not awaited: a request does not wait for it, and a failure only loses a "last used". */
  private markUsed(id: string, now: number): void {
    const last = this.marked.get(id)
    if (last !== undefined && now - last < MARK_USED_EVERY_MS) return
    if (this.marked.size >= CACHE_ENTRIES) this.marked.clear()
    this.marked.set(id, now)
    this.table.markUsed(id, now).catch((error: unknown) => {
      this.logger.warn({ err: (error as Error)?.message }, `could not record a token's use: ${(error as Error)?.message ?? String(error)}`)
    })
  }
}

/** Whether the grant covers the request: one of its scopes (or admin), and its feed or every feed. */
function allows(grant: Grant, request: AuthRequest): boolean {
  const scoped = grant.scopes.includes('admin') || request.scopes === undefined || request.scopes.some((s) => grant.scopes.includes(s))
  if (!scoped) return false
  if (grant.feeds === null) return true
  if (request.everyFeed) return false
  return request.feed === undefined || grant.feeds.includes(request.feed)
}

/** Both hashes are always compared, so the time taken says nothing of which one matched. */
function matches(row: TokenRow, given: Buffer, now: number): 'current' | 'previous' | 'none' {
  const current = timingSafeEqual(Buffer.from(row.hash, 'hex'), given)
  const before = row.previousHash !== null && row.previousHash.length === 64 ? Buffer.from(row.previousHash, 'hex') : Buffer.alloc(32)
  const previous = timingSafeEqual(before, given) && row.previousHash !== null && row.previousUntil !== null && now < row.previousUntil
  return current ? 'current' : previous ? 'previous' : 'none'
}

function checkScopes(scopes: string[]): Scope[] {
  if (scopes.length === 0) throw new BadRequestError(`give the token a scope: --scope ${SCOPES.join('|')} (repeatable)`)
  for (const s of scopes) {
    if (!(SCOPES as readonly string[]).includes(s)) throw new BadRequestError(`unknown scope ${JSON.stringify(s)}: use ${SCOPES.join(', ')}`)
  }
  return SCOPES.filter((s) => scopes.includes(s))
}

async function liveToken(table: TokenTable, name: string): Promise<TokenRow> {
  const row = (await table.list()).find((t) => t.name === name && t.revokedAt === null)
  if (row === undefined) throw new BadRequestError(`no token named ${JSON.stringify(name)} (that is not revoked): see them with \`tidemark token list\``)
  return row
}

function newSecret(id: string): string {
  return `tmk_${id}_${randomBytes(32).toString('base64url')}`
}

function digest(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest()
}

function hashOf(secret: string): string {
  return digest(secret).toString('hex')
}

function infoOf(row: TokenRow): TokenInfo {
  return {
    id: row.id,
    name: row.name,
    feeds: row.feeds,
    scopes: row.scopes.filter((s): s is Scope => (SCOPES as readonly string[]).includes(s)),
    createdAt: row.createdAt,
    expiresAt: row.expiresAt,
    revokedAt: row.revokedAt,
    lastUsedAt: row.lastUsedAt,
    previousUntil: row.previousUntil,
  }
}
