/**
 * Several stateless feed servers over one PostgreSQL source: a long-poll held by one is answered
 * when a commit lands through another (or straight from the owner's own connection), and a replica
 * whose requests alternate between two servers — one of which goes away mid-stream — ends exact,
 * with every change applied once, in order.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import pg from 'pg'
import type { Seq } from '../../src/protocol/types.js'
import { createReplica } from '../../src/replica/replica.js'
import { createFeedServer, type FeedServer } from '../../src/server/feed-server.js'
import { PostgresSource } from '../../src/store/postgres/postgres-source.js'
import { PostgresSourceStore } from '../../src/store/postgres/postgres-source-store.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import { Backoff } from '../../src/transport/backoff.js'
import type { FeedSource } from '../../src/transport/feed-source.js'
import { HttpFeedSource } from '../../src/transport/http/http-feed-source.js'
import { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import { pgDatabase } from '../helpers/pg.js'
import { tmpDb } from '../helpers/tmp.js'
import { eventually, get, ndjson } from './helpers.js'

async function twoServers(): Promise<{ url: string; stores: PostgresSourceStore[]; servers: FeedServer[]; urls: string[] }> {
  const url = await pgDatabase()
  const stores = [await PostgresSourceStore.open(url), await PostgresSourceStore.open(url)]
  await stores[0]?.ensureFeed('customers')
  // No maintenance loop: only the long-poll machinery may wake a waiting request.
  const servers = await Promise.all(stores.map((store) => createFeedServer({ store, maintainEveryMs: 0 })))
  const urls = await Promise.all(servers.map(async (s) => (await s.listen({ port: 0 })).url))
  after(async () => {
    for (const s of servers) await s.close()
    for (const s of stores) await s.close()
  })
  return { url, stores, servers, urls }
}

/**
 * A load balancer in miniature: each request goes to the next server in turn; a request that finds
 * its server gone is sent to the next one, as a balancer's health check would.
 */
function roundRobin(sources: HttpFeedSource[]): FeedSource {
  let n = 0
  const call = async <T>(fn: (s: HttpFeedSource) => Promise<T>, signal?: AbortSignal): Promise<T> => {
    for (let tries = 1; ; tries++) {
      try {
        return await fn(sources[n++ % sources.length] as HttpFeedSource)
      } catch (error) {
        if (signal?.aborted || tries >= sources.length || !/cannot reach/.test((error as Error).message)) throw error
      }
    }
  }
  return {
    description: 'round-robin',
    info: (feed, signal) => call((s) => s.info(feed, signal), signal),
    changes: (feed, request) => call((s) => s.changes(feed, request), request.signal),
    snapshot: (feed, request) => call((s) => s.snapshot(feed, request), request.signal),
    rows: (feed, keys, signal) => call((s) => s.rows(feed, keys, signal), signal),
    digest: (feed, request) => call((s) => s.digest(feed, request), request.signal),
    keys: (feed, request) => call((s) => s.keys(feed, request), request.signal),
  }
}

describe('feed servers over one PostgreSQL', () => {
  it('a long-poll on one server is answered by a commit made through the other', async () => {
    const { stores, urls } = await twoServers()
    const started = Date.now()
    const polling = get(`${urls[0]}/v1/feeds/customers/changes?after=0&wait=20000`)
    await eventually(() => (stores[0] as PostgresSourceStore).waiting > 0, 'the long-poll to wait')
    await stores[1]?.write('customers', [{ op: 'upsert', key: 'a', data: { n: 1 } }])
    const res = await polling
    assert.equal(res.status, 200)
    const lines = ndjson(res.body)
    assert.deepEqual(lines[0], { seq: 1, key: 'a', op: 'upsert', data: { n: 1 }, tx: 1, ts: lines[0]?.ts })
    assert.ok(Date.now() - started < 5000)
  })

  it("a long-poll is answered by a commit on the owner's own connection, which no server made", async () => {
    const { url, stores, urls } = await twoServers()
    const polling = get(`${urls[1]}/v1/feeds/customers/changes?after=0&wait=20000`)
    await eventually(() => (stores[1] as PostgresSourceStore).waiting > 0, 'the long-poll to wait')
    const pool = new pg.Pool({ connectionString: url })
    const customers = await (await PostgresSource.attach(pool)).feed('customers')
    const client = await pool.connect()
    await client.query('BEGIN')
    await customers.put(client, 'x', 1)
    await customers.put(client, 'y', 2)
    await client.query('COMMIT')
    client.release()
    const lines = ndjson((await polling).body)
    assert.deepEqual(lines.slice(0, 2).map((l) => [l.seq, l.key, l.tx]), [[1, 'x', 2], [2, 'y', 2]])
    await pool.end()
  })

  it('a replica alternating between two servers, one of which goes away mid-stream, applies every change once, in order, and ends exact', async () => {
    const { url, stores, servers, urls } = await twoServers()
    const sources = urls.map((u) => new HttpFeedSource(u, { timeoutMs: 5000 }))
    const source = roundRobin(sources)
    const store = SqliteReplicaStore.open(tmpDb('replica.db'))
    const applied: Seq[] = []
    const replica = createReplica({
      source,
      feed: 'customers',
      store,
      transport: new LongPollTransport(source, { waitMs: 300, limit: 50 }),
      backoff: new Backoff({ baseMs: 10, capMs: 100 }),
      apply: (change) => void applied.push(change.seq),
    })
    const running = replica.run()
    // Stopped even when the test fails, or it would retry for ever and keep the file's run open.
    after(() => replica.stop())
    // Live before the first write (a bootstrap under way when writes begin would hand the hook a
    // snapshot's difference rather than every change).
    await replica.caughtUp()
    const pool = new pg.Pool({ connectionString: url, max: 4 })
    const customers = await (await PostgresSource.attach(pool)).feed('customers')
    const writer = async (w: number): Promise<void> => {
      const client = await pool.connect()
      for (let t = 0; t < 60; t++) {
        await client.query('BEGIN')
        for (let i = 0; i <= t % 3; i++) {
          const key = `k${(w * 31 + t * 7 + i) % 40}`
          if ((t + i) % 5 === 4) await customers.delete(client, key)
          else await customers.put(client, key, { w, t, i })
        }
        await client.query('COMMIT')
        if (w === 0 && t === 30) await servers[0]?.close() // mid-stream: one server goes away
      }
      client.release()
    }
    await Promise.all([0, 1, 2].map(writer))
    const head = (await stores[1]!.getFeed('customers')).head
    await eventually(() => replica.status().checkpoint === head, `the replica to reach ${head}`, 30_000).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}: ${JSON.stringify({ ...replica.status(), history: undefined })}`)
    })
    await replica.stop()
    await running
    assert.deepEqual(applied, Array.from({ length: head }, (_, i) => i + 1), 'every change applied once, in order')
    assert.deepEqual(await store.digestLeaves('customers'), await stores[1]!.digestLeaves('customers'), "the replica's digest is the source's")
    await store.close()
    for (const s of sources) await s.close()
    await pool.end()
  })
})
