import type { TokenInfo } from '../../server/tokens.js'
import type { Registrar } from '../cli.js'
import { formatDuration } from '../duration.js'
import { collect, examples, parseDurationOption } from '../options.js'

interface CreateOptions {
  name: string
  feed?: string[]
  allFeeds?: boolean
  scope: string[]
  expires?: number
}

/**
 * `tidemark token create|list|revoke|rotate <db> …`: the feed server's scoped bearer tokens, kept in
 * the source store (so every feed server over it agrees). The rules are in src/server/tokens.ts;
 * this file only reads options and prints.
 */
export const registerToken: Registrar = (program, cli) => {
  const token = program
    .command('token')
    .description("manage the feed server's bearer tokens: scoped to feeds and verbs, kept (as hashes) in the source")
    .addHelpText(
      'after',
      `
Scopes: read (replicate, verify, \`tidemark export <url>\`), export (the server's GET …/export),
report (the feed list for the dashboard; /metrics with --all-feeds), admin (everything).
A feed server started with at least one token in the store asks every request for one; a
revocation or rotation reaches every feed server over the store within about a second.
${examples([
  'tidemark token create shop.db --name billing --feed customers_billing --scope read --expires 30d',
  'tidemark token create postgres://owner@db/shop --name ops --all-feeds --scope report',
  'tidemark token list shop.db',
  'tidemark token rotate shop.db billing --grace 1h',
  'tidemark token revoke shop.db billing',
])}`,
    )

  token
    .command('create')
    .description('create a token and print its secret (shown this once: only a hash is kept)')
    .argument('<db>', 'the source: a SQLite file or a postgres:// URL')
    .requiredOption('--name <name>', 'a name for it, unique among the tokens not revoked (letters, digits, . _ -)')
    .option('--feed <feed>', 'a feed it may use (repeatable)', collect)
    .option('--all-feeds', 'every feed, those created later too')
    .requiredOption('--scope <scope>', 'read, export, report or admin (repeatable)', collect)
    .option('--expires <duration>', 'refuse it after this long (e.g. 30d); default: never', parseDurationOption)
    .action(async (db: string, options: CreateOptions) => {
      const { BadRequestError } = await import('../../errors.js')
      if (options.allFeeds === true && options.feed !== undefined) throw new BadRequestError('give --feed or --all-feeds, not both')
      if (options.allFeeds !== true && options.feed === undefined) throw new BadRequestError('give the feeds the token may use: --feed <feed> (repeatable) or --all-feeds')
      const { createToken } = await import('../../server/tokens.js')
      const { secret, token: made } = await cli.withStore(db, {}, (store) =>
        createToken(store.tokens, {
          name: options.name,
          feeds: options.allFeeds === true ? null : (options.feed ?? []),
          scopes: options.scope,
          ...(options.expires !== undefined ? { expiresInMs: options.expires } : {}),
        }),
      )
      cli.note(`token "${made.name}": ${describe(made)}. The secret below is shown this once; send it as "Authorization: Bearer <secret>"`)
      await cli.print(secret)
    })

  token
    .command('list')
    .description('list the tokens: name, feeds, scopes, created, expires, last used (never a secret)')
    .argument('<db>', 'the source: a SQLite file or a postgres:// URL')
    .option('--json', 'print a JSON array instead of a table')
    .action(async (db: string, options: { json?: boolean }) => {
      const { listTokens } = await import('../../server/tokens.js')
      const tokens = await cli.withStore(db, {}, (store) => listTokens(store.tokens))
      if (options.json) await cli.print(JSON.stringify(tokens, null, 2))
      else if (tokens.length === 0) await cli.print('no tokens yet: create one with `tidemark token create`')
      else await cli.print(...tokenTable(tokens, Date.now()))
    })

  token
    .command('revoke')
    .description('revoke a token: every feed server over the store refuses it within about a second')
    .argument('<db>', 'the source: a SQLite file or a postgres:// URL')
    .argument('<name>', "the token's name")
    .action(async (db: string, name: string) => {
      const { revokeToken } = await import('../../server/tokens.js')
      await cli.withStore(db, {}, (store) => revokeToken(store.tokens, name))
      await cli.print(`token "${name}" revoked`)
    })

  token
    .command('rotate')
    .description('give a token a new secret (printed once); the old one is still accepted for the grace period')
    .argument('<db>', 'the source: a SQLite file or a postgres:// URL')
    .argument('<name>', "the token's name")
    .option('--grace <duration>', 'how long the old secret is still accepted (0: not at all)', (v: string) => (v.trim() === '0' ? 0 : parseDurationOption(v)), 3_600_000)
    .action(async (db: string, name: string, options: { grace: number }) => {
      const { rotateToken } = await import('../../server/tokens.js')
      const { secret } = await cli.withStore(db, {}, (store) => rotateToken(store.tokens, name, options.grace))
      const old = options.grace === 0 ? 'the old secret is refused from now on' : `the old secret is accepted for ${formatDuration(options.grace)} more`
      cli.note(`token "${name}": new secret below (shown this once); ${old}`)
      await cli.print(secret)
    })
}

function describe(t: TokenInfo): string {
  const feeds = t.feeds === null ? 'every feed' : `feed${t.feeds.length === 1 ? '' : 's'} ${t.feeds.join(', ')}`
  const expires = t.expiresAt === null ? 'never expires' : `expires ${new Date(t.expiresAt).toISOString()}`
  return `${t.scopes.join(', ')} on ${feeds}, ${expires}`
}

function tokenTable(tokens: TokenInfo[], now: number): string[] {
  const day = (ms: number | null): string => (ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z'))
  const state = (t: TokenInfo): string => {
    if (t.revokedAt !== null) return 'revoked'
    if (t.expiresAt !== null && t.expiresAt <= now) return 'expired'
    if (t.previousUntil !== null && t.previousUntil > now) return 'rotating'
    return 'live'
  }
  const lines = [['NAME', 'FEEDS', 'SCOPES', 'CREATED', 'EXPIRES', 'LAST-USED', 'STATE']]
  for (const t of tokens) {
    lines.push([t.name, t.feeds === null ? '*' : t.feeds.join(','), t.scopes.join(','), day(t.createdAt), day(t.expiresAt), day(t.lastUsedAt), state(t)])
  }
  const widths = lines[0]!.map((_, column) => Math.max(...lines.map((cells) => cells[column]!.length)))
  return lines.map((cells) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd())
}
