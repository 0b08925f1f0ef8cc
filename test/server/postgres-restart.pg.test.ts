/**
 * The database restarting mid-stream: a cluster this test starts itself (never the machine's shared
 * server) is restarted while the owner writes, a feed server serves and a replica — whose own store
 * is in that cluster too — follows over HTTP. The server answers 503 meanwhile, the replica retries,
 * and both carry on with fresh connections: the replica ends exact, and its projection (written in
 * the apply transaction) holds every change exactly once.
 */
import assert from 'node:assert/strict'
import { after, it } from 'node:test'
import pg from 'pg'
import type { Seq } from '../../src/protocol/types.js'
import { createReplica } from '../../src/replica/replica.js'
import { createFeedServer } from '../../src/server/feed-server.js'
import { PostgresReplicaStore } from '../../src/store/postgres/postgres-replica-store.js'
import { PostgresSourceStore } from '../../src/store/postgres/postgres-source-store.js'
import { Backoff } from '../../src/transport/backoff.js'
import { HttpFeedSource } from '../../src/transport/http/http-feed-source.js'
import { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import { startCluster } from '../helpers/pg-cluster.js'
import { withDatabase } from '../helpers/pg.js'
import { eventually } from './helpers.js'

it('a database restart mid-stream: the feed server and the replica recover, and the replica ends exact', async () => {
  const cluster = await startCluster()
  const admin = new pg.Client({ connectionString: cluster.url })
  await admin.connect()
  await admin.query('CREATE DATABASE owner')
  await admin.query('CREATE DATABASE consumer')
  await admin.end()
  const ownerUrl = withDatabase(cluster.url, 'owner')
  const source = await PostgresSourceStore.open(ownerUrl)
  await source.ensureFeed('customers')
  const server = await createFeedServer({ store: source, maintainEveryMs: 100 })
  const { url } = await server.listen({ port: 0 })
  const consumerUrl = withDatabase(cluster.url, 'consumer')
  const consumer = new pg.Client({ connectionString: consumerUrl })
  await consumer.connect()
  await consumer.query('CREATE TABLE applied (seq bigint PRIMARY KEY)')
  await consumer.end()
  const store = await PostgresReplicaStore.open(consumerUrl)
  const http = new HttpFeedSource(url, { timeoutMs: 5000 })
  const replica = createReplica({
    source: http,
    feed: 'customers',
    store,
    transport: new LongPollTransport(http, { waitMs: 300 }),
    backoff: new Backoff({ baseMs: 20, capMs: 200 }),
    // The projection's effect is in the apply transaction: a change applied twice would break the key.
    apply: async (c, tx) => void (await tx.query('INSERT INTO applied (seq) VALUES ($1)', [c.seq])),
  })
  // One hook, in this order: the client, the server, the stores, and the cluster last.
  after(async () => {
    await replica.stop()
    await http.close()
    await server.close()
    await store.close()
    await source.close()
    cluster.stop()
  })
  const running = replica.run()
  // Live before the first write: from here on, every change reaches the hook through the log.
  await replica.caughtUp()

  // The owner writes through its own pool, retrying a transaction the restart broke (as an app would).
  const pool = new pg.Pool({ connectionString: ownerUrl, max: 2 })
  pool.on('error', () => {})
  let committed = 0
  let refused = 0
  for (let t = 0; t < 120; t++) {
    if (t === 40) cluster.restart()
    for (;;) {
      try {
        await source.write('customers', [{ op: 'upsert', key: `k${t % 30}`, data: { t } }, { op: 'upsert', key: `j${t % 7}`, data: { t } }])
        committed++
        break
      } catch (error) {
        assert.equal((error as { code?: string }).code, 'store-unavailable', String(error))
        refused++
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
  }
  await pool.end()
  assert.equal(committed, 120)
  const head = (await source.getFeed('customers')).head
  assert.equal(head, 240)
  await eventually(() => replica.status().checkpoint === head, `the replica to reach ${head}`, 30_000)
  await replica.stop()
  await running
  const check = new pg.Client({ connectionString: consumerUrl })
  await check.connect()
  const applied = (await check.query<{ seq: Seq }>('SELECT seq::int AS seq FROM applied ORDER BY seq')).rows.map((r) => r.seq)
  await check.end()
  assert.deepEqual(applied, Array.from({ length: head }, (_, i) => i + 1), `every change applied once (${applied.length} of ${head})`)
  assert.deepEqual(await store.digestLeaves('customers'), await source.digestLeaves('customers'))
  process.stderr.write(`restart: ${refused} writes refused while the database was away; the replica went through ${replica.status().history.map((h) => h.to).join(' → ')}\n`)
})
