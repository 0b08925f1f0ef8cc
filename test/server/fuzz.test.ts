/**
 * Fuzzing the feed server's routes with fast-check (TIDEMARK_RUNS, TIDEMARK_SEED): arbitrary query
 * strings on every GET route, arbitrary bodies (JSON of any shape, and text that is not JSON) on
 * every POST route, arbitrary feed names in the path. Whatever comes: no 5xx for a client's error,
 * every answer has the protocol header and, when it refuses, the protocol's error shape with a
 * known code; nothing is written (the feed's head and state stay as they were).
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { describe, it } from 'node:test'
import { ERROR_CODES } from '../../src/errors.js'
import { PROTOCOL_HEADER } from '../../src/server/http-protocol.js'
import { propertyParameters } from '../helpers/property.js'
import { serve } from './helpers.js'

const GET_ROUTES = ['', '/changes', '/snapshot', '/digest', '/export']
const POST_ROUTES = ['/rows', '/digest', '/keys']
const PARAMS = ['after', 'limit', 'wait', 'epoch', 'level', 'nodes', 'compression', 'x']

/** A value for a query parameter: numbers of every sort, words, escapes, empties. */
const queryValue = fc.oneof(
  fc.integer({ min: -5, max: 200_000 }).map(String),
  fc.constantFrom('', '0', '1.5', '1e3', '0x10', '-0', ' 1', '9007199254740993', 'gzip', 'br', 'zip', '0,1,2', '1,1', '%zz', '%00'),
  fc.string({ maxLength: 20 }),
)

const query = fc
  .array(fc.tuple(fc.constantFrom(...PARAMS), queryValue), { maxLength: 4 })
  .map((pairs) => pairs.map(([k, v]) => `${k}=${/%/.test(v) ? v : encodeURIComponent(v)}`).join('&'))

const feedName = fc.oneof(fc.constant('customers'), fc.constant('nope'), fc.string({ maxLength: 70 }).map((s) => encodeURIComponent(s) || 'x'))

const body = fc.oneof(
  fc.json({ maxDepth: 3 }),
  fc.record({ keys: fc.array(fc.oneof(fc.string({ maxLength: 8 }), fc.integer()), { maxLength: 5 }) }).map((v) => JSON.stringify(v)),
  fc.record({ buckets: fc.array(fc.integer({ min: -2, max: 70_000 }), { maxLength: 5 }) }).map((v) => JSON.stringify(v)),
  fc.record({ level: fc.integer({ min: -1, max: 5 }), nodes: fc.array(fc.integer({ min: -1, max: 5000 }), { maxLength: 5 }) }).map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 40 }),
  fc.constantFrom('{"__proto__":{}}', '{"keys":["a"],"constructor":{"prototype":{}}}', '', 'null', '[]', '{"keys":'),
)

function checkAnswer(res: { statusCode: number; headers: Record<string, unknown>; body: string }, what: string): void {
  assert.ok(res.statusCode < 500, `${what}: ${res.statusCode} ${res.body.slice(0, 300)}`)
  assert.equal(res.headers[PROTOCOL_HEADER], '1', what)
  if (res.statusCode >= 400) {
    const e = JSON.parse(res.body) as { error: string; message: string }
    assert.ok((ERROR_CODES as readonly string[]).includes(e.error), `${what}: code ${e.error}`)
    assert.equal(typeof e.message, 'string')
  }
}

describe('feed server fuzzing', () => {
  it('answers any query on any GET route with the protocol, never a 5xx, and changes nothing', async () => {
    const { server, store } = await serve()
    await store.ensureFeed('customers')
    await store.write('customers', [{ op: 'upsert', key: 'a', data: { n: 1 } }, { op: 'delete', key: 'b' }])
    // Folded into the digest first: reads may fold the log in themselves, which changes no data.
    await store.maintain()
    const before = await store.getFeed('customers')
    await fc.assert(
      fc.asyncProperty(feedName, fc.constantFrom(...GET_ROUTES), query, async (feed, route, q) => {
        // wait is capped so that a long-poll cannot hold the run: the answer comes at its end anyway.
        const url = `/v1/feeds/${feed}${route}?${q.replace(/wait=\d{3,}/, 'wait=5')}`
        checkAnswer(await server.app.inject({ url }), `GET ${url}`)
      }),
      propertyParameters(60),
    )
    assert.deepEqual(await store.getFeed('customers'), before)
  })

  it('answers any body on any POST route with the protocol, never a 5xx, and changes nothing', async () => {
    const { server, store } = await serve()
    await store.ensureFeed('customers')
    await store.write('customers', [{ op: 'upsert', key: 'a', data: { n: 1 } }])
    // Folded into the digest first: reads may fold the log in themselves, which changes no data.
    await store.maintain()
    const before = await store.getFeed('customers')
    await fc.assert(
      fc.asyncProperty(feedName, fc.constantFrom(...POST_ROUTES), body, fc.constantFrom('application/json', 'text/plain', 'application/json; charset=latin1'), async (feed, route, payload, type) => {
        const url = `/v1/feeds/${feed}${route}`
        checkAnswer(await server.app.inject({ method: 'POST', url, headers: { 'content-type': type }, payload }), `POST ${url} ${type} ${payload.slice(0, 100)}`)
      }),
      propertyParameters(60),
    )
    assert.deepEqual(await store.getFeed('customers'), before)
  })
})
