/**
 * Mixed pairs: a PostgreSQL source copied into a SQLite replica (a device) and into a PostgreSQL
 * replica (another service's database), and a SQLite source copied into PostgreSQL by the real
 * `tidemark replicate --into postgres://…`. Whatever the pair, the replica ends with the source's
 * rows and the very same digest: both backends hash the stored JSON text alike.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import pg from 'pg'
import { createReplica } from '../../src/replica/replica.js'
import type { ReplicaStore } from '../../src/store/replica-store.js'
import { createFeedServer } from '../../src/server/feed-server.js'
import { PostgresReplicaStore } from '../../src/store/postgres/postgres-replica-store.js'
import { PostgresSourceStore } from '../../src/store/postgres/postgres-source-store.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import type { SourceStore } from '../../src/store/store.js'
import { LocalFeedSource } from '../../src/transport/local-feed-source.js'
import { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import { Backoff } from '../../src/transport/backoff.js'
import { collect, spawnTidemark, tidemark } from '../cli/run-cli.js'
import { pgDatabase } from '../helpers/pg.js'
import { tmpDb } from '../helpers/tmp.js'
import { eventually } from '../server/helpers.js'

const FEED = 'customers'

async function writeSome(source: SourceStore, txs: number, offset = 0): Promise<void> {
  for (let t = 0; t < txs; t++) {
    const ops = Array.from({ length: 1 + (t % 4) }, (_, i) => {
      const key = `k${(t * 13 + i * 7 + offset) % 60}`
      return (t + i) % 6 === 5 ? { op: 'delete' as const, key } : { op: 'upsert' as const, key, data: { t: t + offset, i, s: 'é\u2028' } }
    })
    await source.write(FEED, ops)
  }
}

async function assertSame(source: SourceStore, replica: ReplicaStore<unknown>): Promise<void> {
  const head = (await source.getFeed(FEED)).head
  assert.equal((await replica.state(FEED))?.seq, head)
  assert.deepEqual(await replica.digestLeaves(FEED), await source.digestLeaves(FEED))
  const snap = await source.snapshot(FEED, null, 10_000)
  const rows = await replica.rows(FEED, null, 10_000)
  assert.deepEqual(rows.map((r) => [r.key, r.seq, JSON.stringify(r.data)]), snap.rows.map((r) => [r.key, r.seq, JSON.stringify(r.data)]))
}

/** Bootstraps from a source with history, follows live writes, ends equal. */
async function follow(source: SourceStore, replica: ReplicaStore<unknown>): Promise<void> {
  await writeSome(source, 40)
  const local = new LocalFeedSource(source)
  const r = createReplica({
    source: local,
    feed: FEED,
    store: replica,
    snapshotChunk: 7,
    transport: new LongPollTransport(local, { waitMs: 200, limit: 10 }),
    backoff: new Backoff({ baseMs: 10, capMs: 100 }),
  })
  after(() => r.stop())
  const running = r.run()
  await writeSome(source, 60, 3)
  const head = (await source.getFeed(FEED)).head
  await eventually(() => r.status().checkpoint === head, `the replica to reach ${head}`, 30_000)
  await r.stop()
  await running
  await assertSame(source, replica)
}

describe('mixed backends', () => {
  it('PostgreSQL source → SQLite replica', async () => {
    const source = await PostgresSourceStore.open(await pgDatabase())
    await source.ensureFeed(FEED)
    const replica = SqliteReplicaStore.open(tmpDb('device.db'))
    await follow(source, replica as ReplicaStore<unknown>)
    await replica.close()
    await source.close()
  })

  it('PostgreSQL source → PostgreSQL replica', async () => {
    const source = await PostgresSourceStore.open(await pgDatabase())
    await source.ensureFeed(FEED)
    const replica = await PostgresReplicaStore.open(await pgDatabase())
    await follow(source, replica as ReplicaStore<unknown>)
    await replica.close()
    await source.close()
  })

  it('SQLite source → PostgreSQL replica, by `tidemark replicate --into postgres://…` over HTTP', async () => {
    const source = SqliteSourceStore.open(tmpDb())
    await source.ensureFeed(FEED)
    await writeSome(source, 30)
    const server = await createFeedServer({ store: source, maintainEveryMs: 50 })
    const { url } = await server.listen({ port: 0 })
    const into = (await pgDatabase()).replace('postgres@', 'postgres:not-shown@')
    const child = spawnTidemark(['replicate', url, FEED, '--into', into])
    child.stdin?.end()
    const done = collect(child)
    after(() => child.kill('SIGKILL'))
    await writeSome(source, 30, 5)
    const head = (await source.getFeed(FEED)).head
    const watcher = await PostgresReplicaStore.open(into)
    await eventually(async () => (await watcher.state(FEED))?.seq === head, `the replica to reach ${head}`, 30_000)
    child.kill('SIGTERM')
    const result = await done
    assert.equal(result.code, 0, result.stderr)
    assert.doesNotMatch(result.stderr, /not-shown/)
    await assertSame(source, watcher as ReplicaStore<unknown>)
    const status = await tidemark(['status', into, '--json'])
    assert.equal(status.code, 0, status.stderr)
    const [report] = JSON.parse(status.stdout) as Array<{ name: string; checkpoint: number; phase: string; source: string }>
    assert.deepEqual([report?.name, report?.checkpoint, report?.phase], [FEED, head, 'stopped'])
    assert.doesNotMatch(status.stdout + status.stderr, /not-shown/)
    // Reconciliation from the command line, on the PostgreSQL replica: intact (exit 0).
    const verify = await tidemark(['verify', into])
    assert.equal(verify.code, 0, verify.stderr)
    assert.doesNotMatch(verify.stdout + verify.stderr, /not-shown/)
    const pool = new pg.Pool({ connectionString: into })
    const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM tidemark.replica_current WHERE name = $1`, [FEED])
    assert.equal(rows[0]?.n, (await source.getFeed(FEED)).keys)
    await pool.end()
    await watcher.close()
    await server.close()
    await source.close()
  })
})
