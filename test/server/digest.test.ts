import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { describe, it } from 'node:test'
import { childrenAddUp, nodesAt, type DigestNode } from '../../src/digest/digest-tree.js'
import { TidemarkError } from '../../src/errors.js'
import { decodeSum, encodeBucketList, encodeSum } from '../../src/protocol/digest-wire.js'
import type { WriteOp } from '../../src/protocol/types.js'
import { PROTOCOL_HEADER } from '../../src/server/http-protocol.js'
import type { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { listOf, oracle, type Oracle } from '../helpers/digest-oracle.js'
import { ndjson, serve } from './helpers.js'

type Inject = { statusCode: number; headers: Record<string, unknown>; body: string }

function checkError(res: Inject, status: number, code: string, message?: RegExp): void {
  assert.equal(res.statusCode, status, res.body)
  assert.equal(res.headers[PROTOCOL_HEADER], '1')
  const body = JSON.parse(res.body) as Record<string, unknown>
  assert.equal(body.error, code, res.body)
  if (message) assert.match(String(body.message), message)
}

async function fill(store: SqliteSourceStore, feed: string, n: number, deletes = true): Promise<void> {
  await store.ensureFeed(feed)
  for (let from = 0; from < n; from += 10_000) {
    const ops: WriteOp[] = []
    for (let i = from; i < Math.min(n, from + 10_000); i++) ops.push({ op: 'upsert', key: `k${i}`, data: { i } })
    await store.write(feed, ops)
  }
  if (deletes) await store.write(feed, [{ op: 'delete', key: 'k1' }, { op: 'delete', key: 'k5' }, { op: 'upsert', key: 'k2', data: 'again' }])
}

/** A node as the wire has it: `[count, "sum"]`. */
function wire(node: DigestNode): [number, string] {
  return [node.count, encodeSum(node.sum)]
}

/** What the answer for `nodes` of `level` must be, per the oracle's tree. */
function expectedNodes(o: Oracle, level: number, nodes: number[]): unknown[] {
  return nodes.map((i) => [i, ...wire(o.tree.node(level, i)), o.tree.children(level, i).map(wire)])
}

describe('GET/POST /v1/feeds/:feed/digest', () => {
  it('answers the root and its children, equal to a tree built from the log alone, in one small answer', async () => {
    const fx = await serve()
    await fill(fx.store, 'customers', 5000)
    const o = await oracle(fx.store, 'customers')
    const res = await fx.server.app.inject({ url: '/v1/feeds/customers/digest' })
    assert.equal(res.statusCode, 200, res.body)
    assert.match(String(res.headers['content-type']), /^application\/json/)
    assert.equal(res.headers['cache-control'], 'no-store')
    const body = JSON.parse(res.body) as Record<string, unknown>
    const info = await fx.store.getFeed('customers')
    assert.deepEqual(body, { epoch: info.epoch, seq: o.head, head: o.head, minSeq: 1, level: 0, nodes: expectedNodes(o, 0, [0]) })
    assert.equal(o.tree.root.count, 4998)
    const [, count, sum, children] = (body.nodes as unknown[][])[0] as [number, number, string, Array<[number, string]>]
    assert.ok(childrenAddUp({ count, sum: decodeSum(sum)! }, children.map(([c, s]) => ({ count: c, sum: decodeSum(s)! }))))
    assert.match(sum, /^[A-Za-z0-9_-]{22}$/)
    assert.ok(res.body.length < 1000, `${res.body.length} bytes`)
  })

  it('answers any level\'s nodes by GET and by POST, and follows new writes', async () => {
    const fx = await serve()
    await fill(fx.store, 'customers', 3000)
    let o = await oracle(fx.store, 'customers')
    const level1 = await fx.server.app.inject({ url: '/v1/feeds/customers/digest?level=1&nodes=0,15,3' })
    assert.deepEqual((JSON.parse(level1.body) as { nodes: unknown }).nodes, expectedNodes(o, 1, [0, 15, 3]))
    const all3 = Array.from({ length: nodesAt(3) }, (_, i) => nodesAt(3) - 1 - i)
    const post = await fx.server.app.inject({ method: 'POST', url: '/v1/feeds/customers/digest', payload: { level: 3, nodes: all3 } })
    assert.equal(post.statusCode, 200, post.body)
    const doc = JSON.parse(post.body) as { level: number; nodes: unknown[] }
    assert.equal(doc.level, 3)
    assert.deepEqual(doc.nodes, expectedNodes(o, 3, all3))
    // Leaves add up to the root: every key is in exactly one of them.
    assert.equal((doc.nodes as Array<[number, number]>).reduce((n, node) => n + node[1], 0), o.tree.root.count)

    await fx.store.write('customers', [{ op: 'upsert', key: 'late', data: 1 }])
    o = await oracle(fx.store, 'customers')
    const after = JSON.parse((await fx.server.app.inject({ url: '/v1/feeds/customers/digest' })).body) as { seq: number; nodes: unknown }
    assert.equal(after.seq, o.head)
    assert.deepEqual(after.nodes, expectedNodes(o, 0, [0]))
  })

  it('answers an empty feed with empty nodes', async () => {
    const fx = await serve()
    await fx.store.ensureFeed('empty')
    const body = JSON.parse((await fx.server.app.inject({ url: '/v1/feeds/empty/digest' })).body) as { seq: number; nodes: unknown }
    assert.equal(body.seq, 0)
    assert.deepEqual(body.nodes, [[0, 0, '', Array.from({ length: 16 }, () => [0, ''])]])
  })

  it('refuses bad requests with 400 saying what is wrong', async () => {
    const fx = await serve()
    await fx.store.ensureFeed('f')
    const get = async (q: string): Promise<Inject> => fx.server.app.inject({ url: `/v1/feeds/f/digest?${q}` })
    const post = async (payload: unknown): Promise<Inject> =>
      fx.server.app.inject({ method: 'POST', url: '/v1/feeds/f/digest', payload: payload as string, headers: { 'content-type': 'application/json' } })
    checkError(await get('level=4&nodes=0'), 400, 'bad-request', /level must be a whole number from 0 to 3/)
    checkError(await get('level=-1&nodes=0'), 400, 'bad-request', /"level"/)
    checkError(await get('level=1.5&nodes=0'), 400, 'bad-request', /"level"/)
    checkError(await get('level=2'), 400, 'bad-request', /give the nodes/)
    checkError(await get('nodes=1'), 400, 'bad-request', /node 1 is not an index of level 0 \(0 to 0\)/)
    checkError(await get('level=1&nodes=16'), 400, 'bad-request', /not an index of level 1 \(0 to 15\)/)
    checkError(await get('level=1&nodes=1,x'), 400, 'bad-request', /decimal node indexes/)
    checkError(await get('level=1&nodes='), 400, 'bad-request', /decimal node indexes/)
    checkError(await get('level=1&nodes=2,2'), 400, 'bad-request', /node 2 is asked for twice/)
    checkError(await get('level=1&nodes=1&nodes=2'), 400, 'bad-request', /more than once/)
    const many = Array.from({ length: 65 }, (_, i) => i).join(',')
    checkError(await get(`level=2&nodes=${many}`), 400, 'bad-request', /at most 64 digest nodes/)
    checkError(await post(JSON.stringify({ level: 3, nodes: Array.from({ length: 4097 }, (_, i) => i) })), 400, 'bad-request', /at most 4096/)
    checkError(await post(JSON.stringify([1, 2])), 400, 'bad-request', /the body must be/)
    checkError(await post(JSON.stringify({ level: 1 })), 400, 'bad-request', /give the digest nodes/)
    checkError(await post(JSON.stringify({ level: 1, nodes: [] })), 400, 'bad-request', /give the digest nodes/)
    checkError(await post(JSON.stringify({ level: '1', nodes: [0] })), 400, 'bad-request', /level must be/)
    checkError(await post(JSON.stringify({ level: 1, nodes: ['3'] })), 400, 'bad-request', /node "3" is not an index/)
    checkError(await post('{"level":'), 400, 'bad-request')
  })

  it('answers 404 for an unknown feed, 409 for another epoch, and asks authorize', async () => {
    const fx = await serve({
      authorize: ({ token, feed }) => {
        if (token === undefined) throw new TidemarkError('unauthorized', 'send a bearer token')
        if (feed === 'secret') throw new TidemarkError('forbidden', `no access to ${feed}`)
      },
    })
    const auth = { authorization: 'Bearer t' }
    const { epoch } = await fx.store.ensureFeed('f')
    await fx.store.ensureFeed('secret')
    checkError(await fx.server.app.inject({ url: '/v1/feeds/nope/digest', headers: auth }), 404, 'unknown-feed')
    checkError(await fx.server.app.inject({ url: '/v1/feeds/f/digest?epoch=other', headers: auth }), 409, 'epoch-changed')
    assert.equal((await fx.server.app.inject({ url: `/v1/feeds/f/digest?epoch=${epoch}`, headers: auth })).statusCode, 200)
    checkError(await fx.server.app.inject({ url: '/v1/feeds/f/digest' }), 401, 'unauthorized')
    checkError(await fx.server.app.inject({ url: '/v1/feeds/secret/digest', headers: auth }), 403, 'forbidden')
    checkError(await fx.server.app.inject({ method: 'POST', url: '/v1/feeds/secret/digest', headers: auth, payload: { level: 0, nodes: [0] } }), 403, 'forbidden')
    checkError(await fx.server.app.inject({ method: 'POST', url: '/v1/feeds/secret/keys', headers: auth, payload: { buckets: [1] } }), 403, 'forbidden')
    checkError(await fx.server.app.inject({ method: 'POST', url: '/v1/feeds/f/keys', payload: { buckets: [1] } }), 401, 'unauthorized')
  })

  it('verifies a 100,000-key feed with one GET under 2 KB on the wire, both ways', async () => {
    const fx = await serve()
    await fill(fx.store, 'big', 100_000, false)
    const { url } = await fx.server.listen({ host: '127.0.0.1', port: 0 })
    const { port } = new URL(url)
    const request = `GET /v1/feeds/big/digest HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: application/json\r\nAuthorization: Bearer 0123456789abcdef0123456789abcdef\r\nConnection: close\r\n\r\n`
    const received = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = []
      const socket = connect(Number(port), '127.0.0.1', () => socket.end(request))
      socket.on('data', (c: Buffer) => chunks.push(c))
      socket.on('end', () => resolve(Buffer.concat(chunks)))
      socket.on('error', reject)
    })
    const text = received.toString('utf8')
    assert.match(text, /^HTTP\/1\.1 200 /)
    const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { nodes: Array<[number, number]> }
    assert.equal(body.nodes[0]?.[1], 100_000)
    const total = Buffer.byteLength(request) + received.length
    assert.ok(total < 2048, `request and answer take ${total} bytes`)
  })
})

describe('POST /v1/feeds/:feed/keys', () => {
  it('streams the lists asked for, in that order, tombstones included, between a first line and an end line', async () => {
    const fx = await serve()
    await fill(fx.store, 'customers', 4000)
    const o = await oracle(fx.store, 'customers')
    const info = await fx.store.getFeed('customers')
    const withKeys = [...o.lists.keys()]
    // More than one store read (256 buckets each), empty buckets among them, not in bucket order.
    const buckets = [...withKeys.slice(0, 600).reverse(), 65535, 0]
    const unique = [...new Set(buckets)]
    const res = await fx.server.app.inject({ method: 'POST', url: '/v1/feeds/customers/keys', payload: { buckets: unique } })
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(res.headers['content-type'], 'application/x-ndjson')
    assert.equal(res.headers['tidemark-epoch'], info.epoch)
    const lines = res.body.split('\n').filter((l) => l !== '')
    assert.deepEqual(JSON.parse(lines[0]!), { epoch: info.epoch, seq: o.head, minSeq: 1 })
    const lists = unique.map((b) => listOf(o, b))
    assert.deepEqual(lines.slice(1, -1), lists.map(encodeBucketList))
    const entries = lists.reduce((n, l) => n + l.entries.length, 0)
    assert.deepEqual(JSON.parse(lines.at(-1)!), { end: true, epoch: info.epoch, buckets: unique.length, entries, minSeq: 1 })
    assert.ok(lines.some((l) => l.includes(',null]')), 'tombstones are listed with a null hash')
    const k1 = JSON.parse(lines.find((l) => l.includes('"k1"'))!) as { e: Array<[string, number, string | null]> }
    assert.deepEqual(k1.e.find((e) => e[0] === 'k1'), ['k1', 4001, null])
  })

  it('lists every bucket of the feed when asked for all 65,536', async () => {
    const fx = await serve()
    await fill(fx.store, 'customers', 2000)
    const res = await fx.server.app.inject({ method: 'POST', url: '/v1/feeds/customers/keys', payload: { buckets: Array.from({ length: 65536 }, (_, i) => i) } })
    const lines = ndjson(res.body)
    assert.equal(lines.length, 65536 + 2)
    assert.deepEqual(lines.at(-1), { end: true, epoch: (await fx.store.getFeed('customers')).epoch, buckets: 65536, entries: 2000, minSeq: 1 })
  })

  it('refuses bad requests with 400, an unknown feed with 404 and another epoch with 409', async () => {
    const fx = await serve()
    await fx.store.ensureFeed('f')
    const keys = async (payload: string, url = '/v1/feeds/f/keys'): Promise<Inject> =>
      fx.server.app.inject({ method: 'POST', url, payload, headers: { 'content-type': 'application/json' } })
    const b = (buckets: unknown): string => JSON.stringify({ buckets })
    checkError(await keys(b([])), 400, 'bad-request', /give the buckets/)
    checkError(await keys(JSON.stringify({ bucket: [1] })), 400, 'bad-request', /give the buckets/)
    checkError(await keys(JSON.stringify('x')), 400, 'bad-request', /the body must be/)
    checkError(await keys(b([1.5])), 400, 'bad-request', /bucket 1.5 is not a bucket number/)
    checkError(await keys(b(['3'])), 400, 'bad-request', /bucket "3" is not/)
    checkError(await keys(b([-1])), 400, 'bad-request', /from 0 to 65535/)
    checkError(await keys(b([65536])), 400, 'bad-request', /from 0 to 65535/)
    checkError(await keys(b([4, 9, 4])), 400, 'bad-request', /bucket 4 is asked for twice/)
    checkError(await keys(b(Array.from({ length: 65537 }, (_, i) => i))), 400, 'bad-request', /at most 65536 buckets/)
    checkError(await keys('{"buckets":[1,'), 400, 'bad-request')
    checkError(await keys(b([1]), '/v1/feeds/nope/keys'), 404, 'unknown-feed')
    checkError(await keys(b([1]), '/v1/feeds/f/keys?epoch=old'), 409, 'epoch-changed')
  })
})
