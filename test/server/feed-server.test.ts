import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ERROR_CODES, StoreUnavailableError, TidemarkError } from '../../src/errors.js'
import { LIMITS } from '../../src/protocol/limits.js'
import type { Change, FeedInfo } from '../../src/protocol/types.js'
import { createFeedServer } from '../../src/server/feed-server.js'
import { EPOCH_HEADER, HEAD_HEADER, NDJSON_TYPE, PROTOCOL_HEADER } from '../../src/server/http-protocol.js'
import type { Logger } from '../../src/store/store.js'
import { eventually, get, ndjson, serve, type Fixture } from './helpers.js'

function checkError(res: { statusCode: number; headers: Record<string, unknown>; body: string }, status: number, code: string): Record<string, unknown> {
  assert.equal(res.statusCode, status, res.body)
  assert.equal(res.headers[PROTOCOL_HEADER], '1')
  assert.match(String(res.headers['content-type']), /^application\/json/)
  const body = JSON.parse(res.body) as Record<string, unknown>
  assert.equal(body.error, code)
  assert.ok(ERROR_CODES.includes(body.error as (typeof ERROR_CODES)[number]))
  assert.equal(typeof body.message, 'string')
  return body
}

async function customers() {
  const fx = await serve()
  await fx.store.ensureFeed('customers')
  await fx.store.write('customers', [
    { op: 'upsert', key: 'a', data: { name: 'Ada', tags: ['x'] } },
    { op: 'upsert', key: 'b', data: { name: 'Bob' } },
  ])
  await fx.store.write('customers', [{ op: 'upsert', key: 'c', data: { name: 'Cy' } }])
  await fx.store.write('customers', [{ op: 'delete', key: 'a' }])
  return fx
}

describe('feed server: feeds', () => {
  it('lists feeds and shows one', async () => {
    const { server, store } = await customers()
    await store.ensureFeed('orders', { retention: { changes: 10 } })
    const list = await server.app.inject({ url: '/v1/feeds' })
    assert.equal(list.statusCode, 200)
    assert.equal(list.headers[PROTOCOL_HEADER], '1')
    const feeds = list.json() as FeedInfo[]
    assert.deepEqual(feeds.map((f) => [f.name, f.head, f.minSeq]), [['customers', 4, 1], ['orders', 0, 1]])
    assert.deepEqual(feeds[1]?.retention, { changes: 10 })

    const one = await server.app.inject({ url: '/v1/feeds/customers' })
    assert.equal(one.statusCode, 200)
    assert.deepEqual(one.json(), await store.getFeed('customers'))
  })

  it('refuses an unknown feed (404) and an invalid feed name (400)', async () => {
    const { server } = await customers()
    const unknown = checkError(await server.app.inject({ url: '/v1/feeds/nope' }), 404, 'unknown-feed')
    assert.equal(unknown.feed, 'nope')
    checkError(await server.app.inject({ url: '/v1/feeds/nope/changes' }), 404, 'unknown-feed')
    checkError(await server.app.inject({ url: '/v1/feeds/nope/snapshot' }), 404, 'unknown-feed')
    checkError(await server.app.inject({ url: '/v1/feeds/-bad' }), 400, 'bad-request')
    checkError(await server.app.inject({ url: '/v1/feeds/a%20b/changes' }), 400, 'bad-request')
    checkError(await server.app.inject({ url: `/v1/feeds/${'x'.repeat(200)}/changes` }), 400, 'bad-request')
    checkError(await server.app.inject({ url: '/v1/feeds/%zz/changes' }), 400, 'bad-request')
  })

  it('answers unknown routes with 404 in the protocol shape', async () => {
    const { server } = await customers()
    const body = checkError(await server.app.inject({ url: '/x?y=1' }), 404, 'bad-request')
    assert.equal(body.message, 'no such route: GET /x')
    checkError(await server.app.inject({ method: 'DELETE', url: '/v1/feeds/customers' }), 404, 'bad-request')
  })
})

describe('feed server: changes', () => {
  it('streams the log as NDJSON with headers and an end line', async () => {
    const { server, store } = await customers()
    const info = await store.getFeed('customers')
    const res = await server.app.inject({ url: '/v1/feeds/customers/changes' })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['content-type'], NDJSON_TYPE)
    assert.equal(res.headers[EPOCH_HEADER], info.epoch)
    assert.equal(res.headers[HEAD_HEADER], '4')
    assert.equal(res.headers[PROTOCOL_HEADER], '1')
    const lines = ndjson(res.body)
    assert.deepEqual(
      lines.slice(0, -1).map((c) => [c.seq, c.key, c.op, c.tx, c.data]),
      [
        [1, 'a', 'upsert', 2, { name: 'Ada', tags: ['x'] }],
        [2, 'b', 'upsert', 2, { name: 'Bob' }],
        [3, 'c', 'upsert', 3, { name: 'Cy' }],
        [4, 'a', 'delete', 4, undefined],
      ],
    )
    assert.ok(!('data' in (lines[3] as object)), 'a delete carries no data')
    assert.equal(typeof lines[0]?.ts, 'number')
    assert.deepEqual(lines.at(-1), { end: true, epoch: info.epoch, head: 4, last: 4 })
  })

  it('starts after `after`, stops at a transaction boundary past `limit`', async () => {
    const { server } = await customers()
    const one = ndjson((await server.app.inject({ url: '/v1/feeds/customers/changes?limit=1' })).body)
    // The first transaction holds two changes: a limit never splits a transaction.
    assert.deepEqual(one.map((l) => l.seq ?? l.last), [1, 2, 2])
    const rest = ndjson((await server.app.inject({ url: '/v1/feeds/customers/changes?after=2&limit=1' })).body)
    assert.deepEqual(rest.map((l) => l.seq ?? `end ${l.last}`), [3, 'end 3'])
    const none = ndjson((await server.app.inject({ url: '/v1/feeds/customers/changes?after=4' })).body)
    assert.equal(none.length, 1)
    assert.deepEqual({ ...none[0], epoch: undefined }, { end: true, epoch: undefined, head: 4, last: 4 })
  })

  it('answers a position past the head with an empty listing and the lower head, even with wait', async () => {
    const { server } = await customers()
    const res = await server.app.inject({ url: '/v1/feeds/customers/changes?after=9&wait=30000' })
    assert.equal(res.statusCode, 200)
    const lines = ndjson(res.body)
    assert.equal(lines.length, 1)
    assert.equal(lines[0]?.head, 4)
    assert.equal(lines[0]?.last, 9)
  })

  it('refuses bad parameters with 400', async () => {
    const { server } = await customers()
    const bad = [
      'after=-1',
      'after=abc',
      'after=1.5',
      'after=1e3',
      'after=',
      'after=1&after=2',
      'after=99999999999999999',
      'limit=0',
      `limit=${LIMITS.changesMax + 1}`,
      'limit=1000000000',
      `wait=${LIMITS.waitMaxMs + 1}`,
      'wait=-5',
      'epoch=a&epoch=b',
    ]
    for (const query of bad) {
      const body = checkError(await server.app.inject({ url: `/v1/feeds/customers/changes?${query}` }), 400, 'bad-request')
      assert.match(String(body.message), /query parameter/, query)
    }
    const ok = await server.app.inject({ url: `/v1/feeds/customers/changes?limit=${LIMITS.changesMax}&wait=0&after=0` })
    assert.equal(ok.statusCode, 200)
  })

  it('refuses another epoch with 409 and the actual epoch', async () => {
    const { server, store } = await customers()
    const { epoch } = await store.getFeed('customers')
    const body = checkError(await server.app.inject({ url: '/v1/feeds/customers/changes?epoch=0123456789abcdef' }), 409, 'epoch-changed')
    assert.equal(body.epoch, epoch)
    assert.equal((await server.app.inject({ url: `/v1/feeds/customers/changes?epoch=${epoch}` })).statusCode, 200)
  })

  it('refuses a position older than the log keeps with 410', async () => {
    const { server, store } = await serve()
    await store.ensureFeed('short', { retention: { changes: 2 } })
    for (let i = 1; i <= 6; i++) await store.write('short', [{ op: 'upsert', key: `k${i}`, data: i }])
    const result = await store.maintain()
    assert.ok(result.pruned > 0)
    const { minSeq } = await store.getFeed('short')
    assert.ok(minSeq > 1)
    const body = checkError(await server.app.inject({ url: '/v1/feeds/short/changes?after=0' }), 410, 'log-truncated')
    assert.equal(body.minSeq, minSeq)
    assert.equal(body.feed, 'short')
    const ok = ndjson((await server.app.inject({ url: `/v1/feeds/short/changes?after=${minSeq - 1}` })).body)
    assert.equal(ok[0]?.seq, minSeq)
    assert.equal(ok.at(-1)?.last, 6)
  })

  it('ends a listing the store fails in the middle of with an error line and no end line', async () => {
    const logged: unknown[] = []
    const logger: Logger = { debug() {}, info() {}, warn() {}, error: (obj) => logged.push(obj) }
    const { server, store } = await serve({
      logger,
      wrap: (real) => {
        const broken = Object.create(real) as typeof real
        broken.changes = async function* (feed, after, options) {
          for await (const batch of real.changes(feed, after, options)) {
            yield batch.slice(0, 1)
            throw new StoreUnavailableError('the disk went away')
          }
        }
        return broken
      },
    })
    await store.ensureFeed('f')
    await store.write('f', [{ op: 'upsert', key: 'a', data: 1 }])
    await store.write('f', [{ op: 'upsert', key: 'b', data: 2 }])
    const res = await server.app.inject({ url: '/v1/feeds/f/changes' })
    assert.equal(res.statusCode, 200)
    const lines = ndjson(res.body)
    assert.equal(lines.length, 2)
    assert.equal(lines[0]?.seq, 1)
    assert.deepEqual(lines[1], { error: 'store-unavailable', message: 'the disk went away' })
    assert.ok(!lines.some((l) => l.end), 'no end line after an error')
    assert.equal(logged.length, 1)
  })

  it('streams more than 10,000 changes complete and in order over HTTP', async () => {
    const { server, store } = await serve()
    await store.ensureFeed('big')
    const total = 25_000
    for (let start = 0; start < total; start += 5000) {
      await store.write(
        'big',
        Array.from({ length: 5000 }, (_, i) => ({ op: 'upsert' as const, key: `k${start + i}`, data: { n: start + i, pad: 'x'.repeat(40) } })),
      )
    }
    const { url } = await server.listen({ port: 0 })
    const res = await get(`${url}/v1/feeds/big/changes?limit=${LIMITS.changesMax}`)
    assert.equal(res.status, 200)
    assert.equal(res.headers['transfer-encoding'], 'chunked')
    const lines = ndjson(res.body)
    assert.equal(lines.length, total + 1)
    for (let i = 0; i < total; i++) {
      const c = lines[i] as unknown as Change
      if (c.seq !== i + 1 || c.key !== `k${i}` || c.tx !== Math.ceil((i + 1) / 5000) * 5000) {
        assert.fail(`line ${i} is ${JSON.stringify(c)}`)
      }
    }
    assert.deepEqual({ ...lines[total], epoch: 'e' }, { end: true, epoch: 'e', head: total, last: total })
  })

  it('reads the log only as fast as a slow client takes it', async () => {
    const { server, store } = await serve()
    await store.ensureFeed('big')
    const total = 50_000
    for (let start = 0; start < total; start += 1000) {
      await store.write(
        'big',
        Array.from({ length: 1000 }, (_, i) => ({ op: 'upsert' as const, key: `k${start + i}`, data: { n: start + i, pad: 'x'.repeat(300) } })),
      )
    }
    const streamed = async (): Promise<number> =>
      Number(/tidemark_changes_streamed_total\{feed="big"\} (\d+)/.exec((await server.app.inject({ url: '/metrics' })).body)?.[1] ?? 0)
    const { url } = await server.listen({ port: 0 })
    const { request } = await import('node:http')
    const body = await new Promise<string>((resolve, reject) => {
      const req = request(`${url}/v1/feeds/big/changes?limit=${LIMITS.changesMax}`, { agent: false }, (res) => {
        res.setEncoding('utf8')
        let text = ''
        res.once('data', async (first: string) => {
          text += first
          res.pause()
          // The client has stopped reading: the server stops once the socket's buffers are full.
          let seen = -1
          await eventually(async () => {
            const now = await streamed()
            const still = now === seen
            seen = now
            return still && (await new Promise((r) => setTimeout(r, 50, true)))
          }, 'the server to stop reading')
          assert.ok(seen < total / 2, `the server read ${seen} of ${total} changes for a client that took one chunk`)
          res.on('data', (chunk: string) => (text += chunk))
          res.on('end', () => resolve(text))
          res.resume()
        })
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end()
    })
    const lines = ndjson(body)
    assert.equal(lines.length, total + 1)
    assert.ok(lines.slice(0, -1).every((c, i) => c.seq === i + 1))
    assert.equal(lines.at(-1)?.last, total)
  })
})

describe('feed server: snapshot', () => {
  it('pages through the state in key order, tombstones left out', async () => {
    const { server, store } = await customers()
    const info = await store.getFeed('customers')
    const first = await server.app.inject({ url: '/v1/feeds/customers/snapshot?limit=1' })
    assert.equal(first.statusCode, 200)
    assert.equal(first.headers['content-type'], NDJSON_TYPE)
    assert.equal(first.headers[EPOCH_HEADER], info.epoch)
    assert.equal(first.headers[HEAD_HEADER], '4')
    assert.deepEqual(ndjson(first.body), [
      { key: 'b', seq: 2, data: { name: 'Bob' } },
      { end: true, epoch: info.epoch, head: 4, last: 'b', done: false, rows: 1 },
    ])
    const second = ndjson((await server.app.inject({ url: '/v1/feeds/customers/snapshot?after=b&limit=1' })).body)
    assert.deepEqual(second, [
      { key: 'c', seq: 3, data: { name: 'Cy' } },
      { end: true, epoch: info.epoch, head: 4, last: 'c', done: true, rows: 1 },
    ])
    const all = ndjson((await server.app.inject({ url: `/v1/feeds/customers/snapshot?epoch=${info.epoch}` })).body)
    assert.deepEqual(all.map((l) => l.key ?? l.done), ['b', 'c', true])
    const past = ndjson((await server.app.inject({ url: '/v1/feeds/customers/snapshot?after=zzz' })).body)
    assert.deepEqual(past, [{ end: true, epoch: info.epoch, head: 4, last: 'zzz', done: true, rows: 0 }])
  })

  it('refuses bad parameters and another epoch', async () => {
    const { server } = await customers()
    for (const query of ['limit=0', `limit=${LIMITS.snapshotMax + 1}`, 'limit=x', 'after=a&after=b']) {
      checkError(await server.app.inject({ url: `/v1/feeds/customers/snapshot?${query}` }), 400, 'bad-request')
    }
    checkError(await server.app.inject({ url: '/v1/feeds/customers/snapshot?epoch=nope' }), 409, 'epoch-changed')
  })
})

describe('feed server: rows', () => {
  const post = (fx: Fixture, payload: unknown, url = '/v1/feeds/customers/rows') =>
    fx.server.app.inject({
      method: 'POST',
      url,
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
      headers: { 'content-type': 'application/json' },
    })

  it('returns current versions with tombstones, leaving unknown keys out', async () => {
    const fx = await customers()
    const { epoch } = await fx.store.getFeed('customers')
    const res = await post(fx, { keys: ['a', 'c', 'zz', 'c'] })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers[PROTOCOL_HEADER], '1')
    assert.deepEqual(res.json(), {
      epoch,
      head: 4,
      rows: [
        { key: 'a', seq: 4, deleted: true },
        { key: 'c', seq: 3, data: { name: 'Cy' } },
      ],
    })
    assert.deepEqual((await post(fx, { keys: ['nope'] })).json(), { epoch, head: 4, rows: [] })
    assert.equal((await post(fx, { keys: ['a'] }, `/v1/feeds/customers/rows?epoch=${epoch}`)).statusCode, 200)
  })

  it('refuses malformed bodies, too many keys, too large a body and another epoch', async () => {
    const fx = await customers()
    checkError(await post(fx, '{"keys": ['), 400, 'bad-request')
    checkError(await post(fx, ''), 400, 'bad-request')
    checkError(await post(fx, { keys: [] }), 400, 'bad-request')
    checkError(await post(fx, { keys: [''] }), 400, 'bad-request')
    checkError(await post(fx, { keys: [1] }), 400, 'bad-request')
    checkError(await post(fx, { keys: 'a' }), 400, 'bad-request')
    checkError(await post(fx, ['a']), 400, 'bad-request')
    checkError(await post(fx, '{"__proto__": {"keys": ["a"]}}'), 400, 'bad-request')
    const many = checkError(await post(fx, { keys: Array.from({ length: LIMITS.rowsMax + 1 }, (_, i) => `k${i}`) }), 400, 'bad-request')
    assert.match(String(many.message), /at most 10000 keys/)
    assert.equal((await post(fx, { keys: Array.from({ length: LIMITS.rowsMax }, (_, i) => `k${i}`) })).statusCode, 200)
    checkError(await post(fx, { keys: ['x'.repeat(17 * 1024 * 1024)] }), 413, 'too-large')
    checkError(await post(fx, { keys: ['a'] }, '/v1/feeds/customers/rows?epoch=other'), 409, 'epoch-changed')
    checkError(await post(fx, { keys: ['a'] }, '/v1/feeds/nope/rows'), 404, 'unknown-feed')
    const text = await fx.server.app.inject({ method: 'POST', url: '/v1/feeds/customers/rows', payload: 'keys=a', headers: { 'content-type': 'text/plain' } })
    checkError(text, 400, 'bad-request')
  })
})

describe('feed server: operations', () => {
  it('answers /healthz, serves a self-contained dashboard', async () => {
    const { server } = await customers()
    const health = await server.app.inject({ url: '/healthz' })
    assert.deepEqual(health.json(), { ok: true, protocol: 1 })
    assert.equal(health.headers[PROTOCOL_HEADER], '1')
    const page = await server.app.inject({ url: '/' })
    assert.equal(page.statusCode, 200)
    assert.match(String(page.headers['content-type']), /^text\/html/)
    assert.match(page.body, /fetch\("\/v1\/feeds"/)
    assert.match(page.body, /setInterval\(refresh, 2000\)/)
    assert.doesNotMatch(page.body, /<(script|link|img)[^>]+(src|href)=/i, 'no external assets')
  })

  it('exports metrics in a registry per server', async () => {
    const a = await customers()
    const b = await customers()
    await a.server.app.inject({ url: '/v1/feeds/customers/changes' })
    await a.server.app.inject({ url: '/v1/feeds/nope' })
    const text = (await a.server.app.inject({ url: '/metrics' })).body
    assert.match(text, /tidemark_http_requests_total\{method="GET",route="\/v1\/feeds\/:feed\/changes",status="200"\} 1/)
    assert.match(text, /tidemark_http_requests_total\{method="GET",route="\/v1\/feeds\/:feed",status="404"\} 1/)
    assert.match(text, /tidemark_http_request_duration_seconds_count\{method="GET",route="\/v1\/feeds\/:feed\/changes",status="200"\} 1/)
    assert.match(text, /tidemark_changes_streamed_total\{feed="customers"\} 4/)
    assert.match(text, /tidemark_long_polls_open 0/)
    assert.match(text, /tidemark_feed_head\{feed="customers"\} 4/)
    assert.match(text, /tidemark_feed_min_seq\{feed="customers"\} 1/)
    assert.match(text, /tidemark_feed_keys\{feed="customers"\} 0/)
    const other = (await b.server.app.inject({ url: '/metrics' })).body
    assert.doesNotMatch(other, /tidemark_changes_streamed_total\{/)
  })

  it('asks authorize before every /v1 request, with the bearer token', async () => {
    const asked: unknown[] = []
    const fx = await serve({
      authorize: ({ token, feed, route }) => {
        asked.push({ token, feed, route })
        if (token === undefined) throw new TidemarkError('unauthorized', 'send a bearer token')
        if (token !== 'all' && feed !== undefined && feed !== 'customers') throw new TidemarkError('forbidden', `no access to ${feed}`)
      },
    })
    await fx.store.ensureFeed('customers')
    await fx.store.ensureFeed('secret')
    checkError(await fx.server.app.inject({ url: '/v1/feeds/customers' }), 401, 'unauthorized')
    checkError(await fx.server.app.inject({ url: '/v1/feeds/secret/changes', headers: { authorization: 'Bearer abc' } }), 403, 'forbidden')
    const ok = await fx.server.app.inject({ url: '/v1/feeds/customers/changes', headers: { authorization: 'bearer abc' } })
    assert.equal(ok.statusCode, 200)
    assert.deepEqual(asked.at(-1), { token: 'abc', feed: 'customers', route: '/v1/feeds/:feed/changes' })
    const rows = await fx.server.app.inject({ method: 'POST', url: '/v1/feeds/secret/rows', payload: { keys: ['a'] }, headers: { authorization: 'Bearer abc' } })
    checkError(rows, 403, 'forbidden')
    // A token scoped to some feeds lists only those.
    const scoped = await fx.server.app.inject({ url: '/v1/feeds', headers: { authorization: 'Bearer abc' } })
    assert.deepEqual((scoped.json() as FeedInfo[]).map((f) => f.name), ['customers'])
    const all = await fx.server.app.inject({ url: '/v1/feeds', headers: { authorization: 'Bearer all' } })
    assert.deepEqual((all.json() as FeedInfo[]).map((f) => f.name), ['customers', 'secret'])
    checkError(await fx.server.app.inject({ url: '/v1/feeds', headers: { authorization: 'Basic abc' } }), 401, 'unauthorized')
    // The health check and the dashboard's page hold no data and are not behind it; /metrics is.
    asked.length = 0
    for (const url of ['/healthz', '/']) assert.equal((await fx.server.app.inject({ url })).statusCode, 200)
    assert.equal(asked.length, 0)
    checkError(await fx.server.app.inject({ url: '/metrics' }), 401, 'unauthorized')
    assert.deepEqual(asked, [{ token: undefined, feed: undefined, route: '/metrics' }])
  })

  it('maps a failing authorize hook to 500 internal', async () => {
    const fx = await serve({ authorize: () => { throw new Error('token database down') } })
    checkError(await fx.server.app.inject({ url: '/v1/feeds' }), 500, 'internal')
  })

  it('runs maintenance on its own, never fatally, and stops on close', async () => {
    let calls = 0
    let failures = 0
    const logger: Logger = { debug() {}, info() {}, warn() {}, error: () => failures++ }
    const fx = await serve({
      maintainEveryMs: 5,
      logger,
      wrap: (real) => {
        const flaky = Object.create(real) as typeof real
        flaky.maintain = async () => {
          calls++
          if (calls === 2) throw new Error('disk full')
          return real.maintain()
        }
        return flaky
      },
    })
    await fx.store.ensureFeed('f')
    await fx.store.write('f', [{ op: 'upsert', key: 'a', data: 1 }, { op: 'upsert', key: 'b', data: 2 }])
    await eventually(async () => calls >= 4 && (await fx.store.getFeed('f')).digestSeq === 2, 'maintenance to digest the feed')
    assert.equal(failures, 1)
    await fx.server.close()
    const after = calls
    await new Promise((resolve) => setTimeout(resolve, 30))
    assert.equal(calls, after)
  })

  it('listens on 127.0.0.1 and answers waiting long-polls when closed', async () => {
    const { store } = await serve()
    await store.ensureFeed('f')
    const server = await createFeedServer({ store, maintainEveryMs: 0 })
    const { url } = await server.listen({ port: 0 })
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/)
    const poll = get(`${url}/v1/feeds/f/changes?wait=60000`)
    await eventually(async () => /tidemark_long_polls_open 1/.test((await server.app.inject({ url: '/metrics' })).body), 'the long-poll to wait')
    await server.close()
    const res = await poll
    assert.equal(res.status, 200)
    assert.deepEqual({ ...ndjson(res.body)[0], epoch: 'e' }, { end: true, epoch: 'e', head: 0, last: 0 })
  })
})
