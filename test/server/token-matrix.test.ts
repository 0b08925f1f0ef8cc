/**
 * Scoped tokens against every route of the feed server: the matrix is generated from the route
 * table (src/server/route-table.ts), so a route added there without a sample here fails, and a
 * route served without being in the table does not start (feed-server.ts).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { InjectOptions } from 'fastify'
import { createFeedServer, type FeedServer } from '../../src/server/feed-server.js'
import { ROUTES, type RouteEntry } from '../../src/server/route-table.js'
import { createToken, revokeToken, rotateToken, SCOPES, tokenAuthorizer, type Scope } from '../../src/server/tokens.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { tmpDb } from '../helpers/tmp.js'

/** A valid request to each route, about one feed. A new route needs one here. */
const SAMPLES: Record<string, (feed: string) => InjectOptions> = {
  'GET /v1/feeds': () => ({ url: '/v1/feeds' }),
  'GET /v1/feeds/:feed': (f) => ({ url: `/v1/feeds/${f}` }),
  'GET /v1/feeds/:feed/changes': (f) => ({ url: `/v1/feeds/${f}/changes?after=0` }),
  'GET /v1/feeds/:feed/snapshot': (f) => ({ url: `/v1/feeds/${f}/snapshot` }),
  'POST /v1/feeds/:feed/rows': (f) => ({ method: 'POST', url: `/v1/feeds/${f}/rows`, payload: { keys: ['k1'] } }),
  'GET /v1/feeds/:feed/digest': (f) => ({ url: `/v1/feeds/${f}/digest` }),
  'POST /v1/feeds/:feed/digest': (f) => ({ method: 'POST', url: `/v1/feeds/${f}/digest`, payload: { level: 0, nodes: [0] } }),
  'POST /v1/feeds/:feed/keys': (f) => ({ method: 'POST', url: `/v1/feeds/${f}/keys`, payload: { buckets: [1] } }),
  'GET /v1/feeds/:feed/export': (f) => ({ url: `/v1/feeds/${f}/export` }),
  'GET /metrics': () => ({ url: '/metrics' }),
  'GET /healthz': () => ({ url: '/healthz' }),
  'GET /': () => ({ url: '/' }),
}

const FEED_A = 'feed_a'
const FEED_B = 'feed_b'
const UNKNOWN = 'no_such_feed'
const ADMIN_SECRET = 'the-simple-admin-token'

/** A token as the matrix sees it: undefined scopes = refused as a token (401). */
interface Holder {
  label: string
  secret: string | undefined
  scopes?: readonly Scope[]
  /** null: every feed. */
  feeds?: readonly string[] | null
}

function expected(route: RouteEntry, holder: Holder, feed: string): number {
  const access = route.access
  if ('public' in access) return 200
  if (holder.scopes === undefined || holder.feeds === undefined) return 401
  const scoped = holder.scopes.includes('admin') || access.scopes.some((s) => holder.scopes!.includes(s))
  const all = holder.feeds === null
  const covered = access.feed === 'listed' || all || (access.feed === 'one' && holder.feeds!.includes(feed))
  if (!scoped || !covered) return 403
  return access.feed === 'one' && feed === UNKNOWN ? 404 : 200
}

describe('scoped tokens × every route of the route table', () => {
  let store: SqliteSourceStore
  let server: FeedServer
  const holders: Holder[] = []

  before(async () => {
    store = SqliteSourceStore.open(tmpDb())
    for (const feed of [FEED_A, FEED_B]) {
      await store.ensureFeed(feed)
      await store.write(feed, [{ op: 'upsert', key: 'k1', data: { feed } }])
    }
    const t = store.tokens
    for (const scope of SCOPES) {
      holders.push({ label: `${scope} on A`, secret: (await createToken(t, { name: `${scope}-a`, feeds: [FEED_A], scopes: [scope] })).secret, scopes: [scope], feeds: [FEED_A] })
      holders.push({ label: `${scope} on all`, secret: (await createToken(t, { name: `${scope}-all`, feeds: null, scopes: [scope] })).secret, scopes: [scope], feeds: null })
    }
    holders.push({ label: 'read+export on A and B', secret: (await createToken(t, { name: 'two', feeds: [FEED_A, FEED_B], scopes: ['read', 'export'] })).secret, scopes: ['read', 'export'], feeds: [FEED_A, FEED_B] })
    holders.push({ label: '--token (admin)', secret: ADMIN_SECRET, scopes: ['admin'], feeds: null })
    holders.push({ label: 'no token', secret: undefined })
    holders.push({ label: 'not a token', secret: 'tmk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' })
    const expired = await createToken(t, { name: 'expired', feeds: null, scopes: ['admin'], expiresInMs: 1000 }, Date.now() - 5000)
    holders.push({ label: 'expired admin', secret: expired.secret })
    const revoked = await createToken(t, { name: 'revoked', feeds: null, scopes: ['admin'] })
    await revokeToken(t, 'revoked')
    holders.push({ label: 'revoked admin', secret: revoked.secret })
    // Rotated with no grace: the old secret is refused, the new one is the token.
    const rotated = await createToken(t, { name: 'rotated', feeds: [FEED_A], scopes: ['read'] })
    const fresh = await rotateToken(t, 'rotated', 0)
    holders.push({ label: 'rotated: old secret, no grace', secret: rotated.secret })
    holders.push({ label: 'rotated: new secret', secret: fresh.secret, scopes: ['read'], feeds: [FEED_A] })

    const authorize = await tokenAuthorizer(store.tokens, { adminTokens: [ADMIN_SECRET] })
    assert.ok(authorize)
    server = await createFeedServer({ store, authorize, maintainEveryMs: 0, limits: { exports: 64 } })
  })

  after(async () => {
    await server.close()
    await store.close()
  })

  it('has a sample request for every route in the table, and nothing else', () => {
    assert.deepEqual(Object.keys(SAMPLES).sort(), ROUTES.map((r) => `${r.method} ${r.url}`).sort())
  })

  it('answers 401 without a valid token, 403 without the scope or the feed, and serves what the token covers', async () => {
    const failures: string[] = []
    let checked = 0
    for (const route of ROUTES) {
      const sample = SAMPLES[`${route.method} ${route.url}`]!
      const feeds = 'scopes' in route.access && route.access.feed === 'one' ? [FEED_A, FEED_B, UNKNOWN] : [FEED_A]
      for (const holder of holders) {
        for (const feed of feeds) {
          const request = sample(feed)
          const headers = holder.secret === undefined ? {} : { authorization: `Bearer ${holder.secret}` }
          const res = await server.app.inject({ ...request, headers })
          const want = expected(route, holder, feed)
          checked++
          if (res.statusCode !== want) failures.push(`${route.method} ${route.url} (${feed}) as ${holder.label}: ${res.statusCode}, expected ${want}: ${res.body.slice(0, 200)}`)
          if (want === 401 || want === 403) {
            const body = res.json() as { error: string }
            if (body.error !== (want === 401 ? 'unauthorized' : 'forbidden')) failures.push(`${route.method} ${route.url} as ${holder.label}: error ${body.error}`)
          }
        }
      }
    }
    assert.deepEqual(failures, [])
    assert.ok(checked > 300, `${checked} requests checked`)
  })

  it('lists only the feeds a token covers', async () => {
    for (const holder of holders.filter((h) => h.scopes !== undefined)) {
      const res = await server.app.inject({ url: '/v1/feeds', headers: { authorization: `Bearer ${holder.secret}` } })
      if (res.statusCode !== 200) continue
      const names = (res.json() as Array<{ name: string }>).map((f) => f.name)
      assert.deepEqual(names, holder.feeds === null ? [FEED_A, FEED_B] : holder.feeds!.filter((f) => f !== UNKNOWN), holder.label)
    }
  })

  it('says the same of a feed that exists and one that does not, when the token may not see either', async () => {
    for (const holder of holders.filter((h) => h.feeds !== undefined && h.feeds !== null && !h.feeds.includes(FEED_B))) {
      for (const route of ROUTES.filter((r) => 'scopes' in r.access && r.access.feed === 'one')) {
        const sample = SAMPLES[`${route.method} ${route.url}`]!
        const headers = { authorization: `Bearer ${holder.secret}` }
        const forbidden = await server.app.inject({ ...sample(FEED_B), headers })
        const unknown = await server.app.inject({ ...sample(UNKNOWN), headers })
        assert.equal(forbidden.statusCode, 403, `${route.url} as ${holder.label}`)
        assert.equal(forbidden.body, unknown.body, `${route.url} as ${holder.label}`)
        assert.doesNotMatch(forbidden.body, new RegExp(FEED_B))
      }
    }
  })

  it('serves every route of the table (and the server refuses at start a route that is not in it)', () => {
    for (const route of ROUTES) assert.ok(server.app.hasRoute({ method: route.method, url: route.url }), `${route.method} ${route.url}`)
  })
})
