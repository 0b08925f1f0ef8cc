/**
 * The feed server's own limits (src/server/server-limits.ts): each hit, each answered with the
 * protocol's code (429 rate-limited, 503 busy with Retry-After, 413 too-large), each configurable.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { TidemarkError } from '../../src/errors.js'
import { RateLimiter, serverLimits } from '../../src/server/server-limits.js'
import { eventually, ndjson, serve, storeWaiters } from './helpers.js'

const auth = (token: string) => ({ authorization: `Bearer ${token}` })

async function withFeed(limits: NonNullable<Parameters<typeof serve>[0]>['limits']) {
  const fx = await serve({
    limits,
    authorize: ({ token }) => {
      if (token === undefined) throw new TidemarkError('unauthorized', 'send a token')
    },
  })
  await fx.store.ensureFeed('customers')
  for (let i = 1; i <= 5; i++) await fx.store.write('customers', [{ op: 'upsert', key: `k${i}`, data: i }])
  return fx
}

function errorOf(res: { statusCode: number; headers: Record<string, unknown>; body: string }, status: number, code: string): { message: string; retryAfter?: number } {
  assert.equal(res.statusCode, status, res.body)
  assert.equal(res.headers['tidemark-protocol'], '1')
  const body = JSON.parse(res.body) as { error: string; message: string; retryAfter?: number }
  assert.equal(body.error, code)
  return body
}

describe('feed server limits', () => {
  it('limits requests per second per client: 429 rate-limited with Retry-After; each token has its own bucket', async () => {
    const { server } = await withFeed({ requestsPerSecond: 1, requestBurst: 3 })
    for (let i = 0; i < 3; i++) assert.equal((await server.app.inject({ url: '/v1/feeds', headers: auth('a') })).statusCode, 200)
    const refused = await server.app.inject({ url: '/v1/feeds/customers', headers: auth('a') })
    const body = errorOf(refused, 429, 'rate-limited')
    assert.match(body.message, /over this server's rate of 1 requests per second per client \(bursts of 3\): ask again in 1 s/)
    assert.equal(refused.headers['retry-after'], '1')
    assert.equal(body.retryAfter, 1)
    assert.equal((await server.app.inject({ url: '/v1/feeds', headers: auth('b') })).statusCode, 200, 'another token is not held up')
    assert.equal((await server.app.inject({ url: '/healthz' })).statusCode, 200, 'operators\' routes are not counted')
  })

  it('the rate limiter refills at its rate and forgets refilled clients when it grows', () => {
    let now = 0
    const rate = new RateLimiter(2, 2, () => now)
    assert.deepEqual([rate.take('x'), rate.take('x'), rate.take('x')], [0, 0, 1])
    now = 500
    assert.equal(rate.take('x'), 0, 'one token back after half a second at 2/s')
    assert.equal(rate.take('x'), 1)
    for (let i = 0; i < 10_001; i++) rate.take(`c${i}`)
    now = 10_000
    rate.take('late')
    assert.ok((rate as unknown as { buckets: Map<string, unknown> }).buckets.size < 100)
  })

  it('caps long-polls in all and per client: 503 busy with Retry-After; a request that need not wait is served', async () => {
    const { server, store } = await withFeed({ longPolls: 2, longPollsPerClient: 1 })
    const poll = (token: string, after = 5) => server.app.inject({ url: `/v1/feeds/customers/changes?after=${after}&wait=60000`, headers: auth(token) })
    const first = poll('a')
    await eventually(() => storeWaiters(store) === 1, 'the first long-poll waiting')
    const mine = await poll('a')
    const body = errorOf(mine, 503, 'busy')
    assert.match(body.message, /this client holds 1 long-polls on this feed server already \(its limit per token\): ask again in 1 s/)
    assert.equal(mine.headers['retry-after'], '1')
    const second = poll('b')
    await eventually(() => storeWaiters(store) === 2, 'the second long-poll waiting')
    const all = await poll('c')
    assert.match(errorOf(all, 503, 'busy').message, /holds 2 long-polls already \(its limit\)/)
    // Not waiting costs no slot.
    assert.equal((await server.app.inject({ url: '/v1/feeds/customers/changes?after=0&wait=60000', headers: auth('c') })).statusCode, 200)
    await store.write('customers', [{ op: 'upsert', key: 'k6', data: 6 }])
    assert.equal((await first).statusCode, 200)
    assert.equal((await second).statusCode, 200)
    // The slots are free again.
    const again = poll('a', 6)
    await eventually(() => storeWaiters(store) === 1, 'a long-poll waiting again')
    await store.write('customers', [{ op: 'upsert', key: 'k7', data: 7 }])
    assert.equal((await again).statusCode, 200)
  })

  it('answers at most its changes and snapshot limits, and refuses more keys or buckets than it takes', async () => {
    const { server } = await withFeed({ changesLimit: 2, snapshotLimit: 3, rowsKeys: 2, keysBuckets: 2 })
    const changes = ndjson((await server.app.inject({ url: '/v1/feeds/customers/changes?limit=100', headers: auth('a') })).body)
    assert.deepEqual(changes.map((l) => l.seq ?? l.last), [1, 2, 2])
    const chunk = ndjson((await server.app.inject({ url: '/v1/feeds/customers/snapshot?limit=10', headers: auth('a') })).body)
    assert.deepEqual(chunk.at(-1), { end: true, epoch: chunk.at(-1)?.epoch, head: 5, last: 'k3', done: false, rows: 3 })
    const post = (url: string, payload: unknown) => server.app.inject({ method: 'POST', url, headers: { ...auth('a'), 'content-type': 'application/json' }, payload: JSON.stringify(payload) })
    assert.equal((await post('/v1/feeds/customers/rows', { keys: ['k1', 'k2'] })).statusCode, 200)
    assert.match(errorOf(await post('/v1/feeds/customers/rows', { keys: ['k1', 'k2', 'k3'] }), 413, 'too-large').message, /at most 2 keys per rows request, not 3/)
    assert.equal((await post('/v1/feeds/customers/keys', { buckets: [1, 2] })).statusCode, 200)
    assert.match(errorOf(await post('/v1/feeds/customers/keys', { buckets: [1, 2, 3] }), 413, 'too-large').message, /at most 2 buckets per keys request, not 3/)
  })

  it('checks the limits it is given', () => {
    assert.throws(() => serverLimits({ exports: 0 }), /exports must be a positive whole number, got 0/)
    assert.throws(() => serverLimits({ requestTimeoutMs: 1.5 }), /positive whole number/)
    assert.throws(() => serverLimits({ headersTimeoutMs: 5000, requestTimeoutMs: 1000 }), /cannot exceed requestTimeoutMs/)
    assert.throws(() => serverLimits({ idleTimeoutMs: 60_000 }), /must exceed the longest long-poll wait/)
    assert.throws(() => serverLimits({ rowsKeys: 20_000 }), /at most the protocol's 10000/)
    assert.throws(() => serverLimits({ nope: 1 } as never), /unknown server limit "nope"/)
    assert.equal(serverLimits({ exports: 5 }).exports, 5)
  })
})
