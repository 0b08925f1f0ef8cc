/** The token rules of src/server/tokens.ts: expiry, revocation, rotation's grace, what a token of feed A learns of feed B. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { TidemarkError } from '../../src/errors.js'
import { createToken, listTokens, revokeToken, rotateToken, tokenAuthorizer } from '../../src/server/tokens.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { tmpDb } from '../helpers/tmp.js'
import { serve } from './helpers.js'

const changes = { route: '/v1/feeds/:feed/changes', scopes: ['read'] as const }

async function refusal(fn: () => void | Promise<void>): Promise<string | undefined> {
  try {
    await fn()
    return undefined
  } catch (error) {
    assert.ok(error instanceof TidemarkError)
    return `${error.code}: ${error.message}`
  }
}

describe('token rules', () => {
  it('expires a token, keeps a rotated secret for its grace period only, and refuses a revoked one', async () => {
    const store = SqliteSourceStore.open(tmpDb())
    try {
      let now = 1_000_000
      const t = await createToken(store.tokens, { name: 'billing', feeds: ['a'], scopes: ['read'], expiresInMs: 10_000 }, now)
      const authorize = (await tokenAuthorizer(store.tokens, { now: () => now }))!
      const ask = (token: string) => refusal(() => authorize({ token, feed: 'a', ...changes }))
      assert.equal(await ask(t.secret), undefined)
      const rotated = await rotateToken(store.tokens, 'billing', 2000, now)
      now += 1100 // past the cache: the rows are read again
      assert.equal(await ask(rotated.secret), undefined)
      assert.equal(await ask(t.secret), undefined, 'the old secret during the grace period')
      now += 1000
      assert.match((await ask(t.secret))!, /^unauthorized: the bearer token is not one this feed server accepts/)
      assert.equal(await ask(rotated.secret), undefined)
      now += 10_000
      assert.match((await ask(rotated.secret))!, /^unauthorized: the bearer token "billing" expired at /)

      const other = await createToken(store.tokens, { name: 'other', feeds: null, scopes: ['admin'] }, now)
      assert.equal(await ask(other.secret), undefined)
      await revokeToken(store.tokens, 'other', now)
      assert.equal(await ask(other.secret), undefined, 'cached for up to a second')
      now += 1001
      assert.match((await ask(other.secret))!, /^unauthorized: the bearer token "other" was revoked/)
      // A revoked name can be given again; a live one cannot.
      await createToken(store.tokens, { name: 'other', feeds: null, scopes: ['read'] }, now)
      await assert.rejects(createToken(store.tokens, { name: 'other', feeds: null, scopes: ['read'] }, now), /a token named "other" exists already/)
      assert.deepEqual((await listTokens(store.tokens)).map((x) => x.name), ['billing', 'other', 'other'])
    } finally {
      await store.close()
    }
  })

  it('refuses bad names, scopes and feeds; an empty store and no --token mean no auth', async () => {
    const store = SqliteSourceStore.open(tmpDb())
    try {
      assert.equal(await tokenAuthorizer(store.tokens), undefined)
      await assert.rejects(createToken(store.tokens, { name: 'a b', feeds: null, scopes: ['read'] }), /token name "a b"/)
      await assert.rejects(createToken(store.tokens, { name: 'x', feeds: null, scopes: ['write'] }), /unknown scope "write"/)
      await assert.rejects(createToken(store.tokens, { name: 'x', feeds: [], scopes: ['read'] }), /--all-feeds/)
      await assert.rejects(createToken(store.tokens, { name: 'x', feeds: null, scopes: [] }), /give the token a scope/)
      await assert.rejects(rotateToken(store.tokens, 'nobody'), /no token named "nobody"/)
      assert.deepEqual(await listTokens(store.tokens), [])
    } finally {
      await store.close()
    }
  })

  it('a token for feed A cannot read, export, verify or report on feed B, nor learn that it exists', async () => {
    let authorize: Awaited<ReturnType<typeof tokenAuthorizer>>
    const { store, server } = await serve({ authorize: async (request) => authorize!(request) })
    for (const feed of ['a', 'b']) {
      await store.ensureFeed(feed)
      await store.write(feed, [{ op: 'upsert', key: 'k', data: { secret: feed } }])
    }
    const { secret } = await createToken(store.tokens, { name: 'a-only', feeds: ['a'], scopes: ['read', 'export', 'report'] })
    authorize = await tokenAuthorizer(store.tokens)
    const headers = { authorization: `Bearer ${secret}` }
    const get = (url: string) => server.app.inject({ url, headers })
    for (const path of ['', '/changes?after=0', '/snapshot', '/digest', '/export']) {
      assert.equal((await get(`/v1/feeds/a${path}`)).statusCode, 200, path)
      const b = await get(`/v1/feeds/b${path}`)
      assert.equal(b.statusCode, 403, path)
      assert.equal(b.body, (await get(`/v1/feeds/zz${path}`)).body, path)
    }
    for (const body of [{ url: 'rows', payload: { keys: ['k'] } }, { url: 'keys', payload: { buckets: [1] } }, { url: 'digest', payload: { level: 0, nodes: [0] } }]) {
      const b = await server.app.inject({ method: 'POST', url: `/v1/feeds/b/${body.url}`, payload: body.payload, headers })
      assert.equal(b.statusCode, 403, body.url)
    }
    assert.deepEqual(((await get('/v1/feeds')).json() as Array<{ name: string }>).map((f) => f.name), ['a'])
    const metrics = await get('/metrics')
    assert.equal(metrics.statusCode, 403, '/metrics names every feed: a token over some feeds may not have it')
    assert.doesNotMatch(metrics.body, /"b"|feed="b"/)
    // The token's use is recorded (never its secret).
    const [listed] = await listTokens(store.tokens)
    assert.ok(listed!.lastUsedAt !== null)
  })
})
