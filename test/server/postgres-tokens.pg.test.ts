/**
 * Tokens live in the PostgreSQL source, so every feed server over it agrees: a token created,
 * revoked or rotated through one feed server's store is honoured by the other within a second or two.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { createFeedServer } from '../../src/server/feed-server.js'
import { createToken, listTokens, revokeToken, rotateToken, tokenAuthorizer } from '../../src/server/tokens.js'
import { PostgresSourceStore } from '../../src/store/postgres/postgres-source-store.js'
import { pgDatabase } from '../helpers/pg.js'

describe('tokens over one PostgreSQL source, two feed servers', () => {
  it('honours a revocation made through either server within a second or two, and a rotation at once', async () => {
    const url = await pgDatabase()
    const stores = [await PostgresSourceStore.open(url), await PostgresSourceStore.open(url)] as const
    await stores[0].ensureFeed('customers')
    const first = await createToken(stores[0].tokens, { name: 'first', feeds: ['customers'], scopes: ['read'] })
    const second = await createToken(stores[1].tokens, { name: 'second', feeds: ['customers'], scopes: ['read'] })
    const servers = await Promise.all(
      stores.map(async (store) => createFeedServer({ store, maintainEveryMs: 0, authorize: (await tokenAuthorizer(store.tokens))! })),
    )
    after(async () => {
      for (const s of servers) await s.close()
      for (const s of stores) await s.close()
    })
    const status = async (server: number, secret: string): Promise<number> =>
      (await servers[server]!.app.inject({ url: '/v1/feeds/customers/changes?after=0', headers: { authorization: `Bearer ${secret}` } })).statusCode
    for (const s of [0, 1]) for (const t of [first, second]) assert.equal(await status(s, t.secret), 200)

    // Revoked through server 0's store, then through server 1's: both servers refuse each within 2 s.
    for (const [through, token] of [[0, first], [1, second]] as const) {
      const revokedAt = Date.now()
      await revokeToken(stores[through].tokens, token.token.name)
      for (const s of [0, 1]) {
        while ((await status(s, token.secret)) !== 401) {
          assert.ok(Date.now() - revokedAt < 2000, `server ${s} still accepts "${token.token.name}" 2 s after its revocation`)
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
      }
    }

    // Rotated through server 1's store: the new secret works on server 0 at once (a cached row that
    // does not match is read again), the old one until its grace ends.
    const third = await createToken(stores[0].tokens, { name: 'third', feeds: null, scopes: ['read'] })
    assert.equal(await status(0, third.secret), 200)
    const rotated = await rotateToken(stores[1].tokens, 'third', 60_000)
    assert.equal(await status(0, rotated.secret), 200)
    assert.equal(await status(0, third.secret), 200, 'the old secret in its grace period')
    const listed = await listTokens(stores[1].tokens)
    assert.deepEqual(listed.map((t) => [t.name, t.revokedAt !== null]), [['first', true], ['second', true], ['third', false]])
    assert.ok(listed[2]!.lastUsedAt !== null, 'the use is recorded')
    assert.doesNotMatch(JSON.stringify(listed), new RegExp(rotated.secret.slice(-20)))
  })
})
