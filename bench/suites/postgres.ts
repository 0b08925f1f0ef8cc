/**
 * Suite `postgres`: the PostgreSQL store next to PostgreSQL itself, on two local clusters this suite
 * starts (wal_level=logical, fsync off on both — the same for every side measured) and stops.
 * - owner writes with capture on, 8 connections, 1- and 10-row transactions, against the same load
 *   on a table without capture (the sequencer and indexer running meanwhile, as a feed server's
 *   maintenance loop would);
 * - bootstrap of a table PG → PG (a tidemark replica in the second cluster, in-process feed source)
 *   next to logical replication's initial table sync of the same table;
 * - streaming the same burst of changes to both, live: until the last one is applied.
 * docs/bench.md, "Suite postgres", says what each figure measures.
 */
import { createReplica } from '../../src/replica/replica.js'
import { PostgresReplicaStore } from '../../src/store/postgres/postgres-replica-store.js'
import { PostgresSourceStore } from '../../src/store/postgres/postgres-source-store.js'
import { execSql, numberQueries, ownerLoad, writeBurst } from '../postgres/sql.js'
import { LocalFeedSource } from '../../src/transport/local-feed-source.js'
import { atLeast, atMost, gc, median } from '../harness.js'
import { startCluster, type Cluster } from '../postgres/cluster.js'
import { pgbenchFigures, type PgbenchSizes } from '../postgres/pgbench.js'
import type { BenchContext, Suite } from '../suite.js'

interface Sizes {
  pgbench: PgbenchSizes
  writeMs: number
  writeRounds: number
  bootstrapRows: number
  streamTxs: number
  streamTxSize: number
}

const FULL: Sizes = { pgbench: { scale: 5, seconds: 20 }, writeMs: 5000, writeRounds: 3, bootstrapRows: 1_000_000, streamTxs: 2000, streamTxSize: 100 }
const QUICK: Sizes = { pgbench: { scale: 1, seconds: 4 }, writeMs: 1500, writeRounds: 1, bootstrapRows: 20_000, streamTxs: 100, streamTxSize: 100 }

/** A feed server's default maintenance interval (src/server/feed-server.ts). */
const MAINTAIN_EVERY_MS = 1000
const TABLE = '(id integer PRIMARY KEY, name text NOT NULL, n integer NOT NULL)'
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** CPU spent from now on by this process and the two clusters (ms each, and their sum). */
function cpuMeter(a: Cluster, b: Cluster): () => { node: number; a?: number; b?: number; total?: number } {
  const node0 = process.cpuUsage()
  const a0 = a.cpuMs()
  const b0 = b.cpuMs()
  return () => {
    const used = process.cpuUsage(node0)
    const node = (used.user + used.system) / 1000
    const a1 = a.cpuMs()
    const b1 = b.cpuMs()
    if (a0 === undefined || b0 === undefined || a1 === undefined || b1 === undefined) return { node }
    return { node, a: a1 - a0, b: b1 - b0, total: node + (a1 - a0) + (b1 - b0) }
  }
}

const seconds = (ms: number | undefined): string => (ms === undefined ? '?' : `${(ms / 1000).toFixed(2)} s`)

/** Waits until database `name` has its replica's valid bucket index and no other session running a statement. */
async function quiesce(url: string, name: string): Promise<void> {
  const q = await numberQueries(url)
  try {
    for (;;) {
      const indexed = await q.number(
        `SELECT count(*) AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 'replica_rows_bucket_%' AND i.indisvalid`,
      )
      const busy = await q.number(`SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '${name}' AND state = 'active' AND pid <> pg_backend_pid()`)
      if (indexed > 0 && busy === 0) return
      await sleep(50)
    }
  } finally {
    await q.close()
  }
}

export const postgres: Suite = {
  name: 'postgres',
  description:
    'PostgreSQL store: pgbench TPC-B-like on a tracked vs untracked database, owner writes with capture vs none (8 connections), bootstrap and streaming PG → PG vs logical replication',
  async run(ctx) {
    const sizes = ctx.quick ? QUICK : FULL
    const env = (process.env.TIDEMARK_BENCH_PG_ROWS ?? '').trim()
    if (env !== '') sizes.bootstrapRows = Number(env)
    const logical = { wal_level: 'logical', max_wal_senders: '10', max_replication_slots: '10', max_connections: '50' }
    ctx.log('postgres: starting two clusters (wal_level=logical)')
    const a = await startCluster(logical)
    const b = await startCluster(logical)
    // TIDEMARK_BENCH_PG_PARTS=owner|replication|pgbench runs those parts only, for quicker iterations on one.
    const parts = (process.env.TIDEMARK_BENCH_PG_PARTS ?? 'owner,replication,pgbench').split(',').map((p) => p.trim())
    try {
      // pgbench's part starts a cluster of its own (autovacuum off, pg_stat_statements).
      if (parts.includes('pgbench')) await pgbenchFigures(ctx, sizes.pgbench)
      ctx.signal.throwIfAborted()
      if (parts.includes('owner')) await ownerFigures(ctx, a, sizes)
      ctx.signal.throwIfAborted()
      if (parts.includes('replication')) await replicationFigures(ctx, a, b, sizes)
    } finally {
      a.stop()
      b.stop()
    }
  },
}

function db(cluster: Cluster, name: string): string {
  const u = new URL(cluster.url)
  u.pathname = `/${name}`
  return u.toString()
}

async function ownerFigures(ctx: BenchContext, a: Cluster, sizes: Sizes): Promise<void> {
  await execSql(a.url, 'CREATE DATABASE owner')
  const url = db(a, 'owner')
  await execSql(url, `CREATE TABLE plain ${TABLE}; CREATE TABLE captured ${TABLE}`)
  const store = await PostgresSourceStore.open(url)
  try {
    await store.track({ table: 'captured', keyColumn: 'id' })
    for (const txSize of [1, 10]) {
      const plain: number[] = []
      const captured: number[] = []
      for (let round = 0; round < sizes.writeRounds; round++) {
        ctx.signal.throwIfAborted()
        const load = { txSize, connections: 8, ms: sizes.writeMs, keys: 100_000 }
        plain.push((await ownerLoad(url, 'plain', load)).rowsPerSec)
        // The feed server's maintenance loop at its default interval (serve --maintain-every 1s):
        // sequencing and digesting while the owner writes.
        let maintaining = true
        const loop = (async () => {
          while (maintaining) {
            await store.maintain()
            await sleep(MAINTAIN_EVERY_MS)
          }
        })()
        captured.push((await ownerLoad(url, 'captured', load)).rowsPerSec)
        maintaining = false
        await loop
      }
      ctx.report({
        figure: `owner writes, 8 connections, ${txSize}-row tx: capture on`,
        value: median(captured),
        unit: 'rows/s',
        baseline: { name: 'no capture', value: median(plain) },
        target: atLeast(0.6, '≥ 0.6×'),
        note: `median of ${sizes.writeRounds} round(s) of ${sizes.writeMs} ms each way, plain and captured alternating; one upsert statement per row; maintain() every ${MAINTAIN_EVERY_MS} ms (the feed server's default) during the captured rounds`,
      })
    }
  } finally {
    await store.close()
  }
}

async function replicationFigures(ctx: BenchContext, a: Cluster, b: Cluster, sizes: Sizes): Promise<void> {
  const n = sizes.bootstrapRows
  await execSql(a.url, 'CREATE DATABASE src')
  await execSql(b.url, 'CREATE DATABASE tm')
  await execSql(b.url, 'CREATE DATABASE lr')
  const srcUrl = db(a, 'src')
  await execSql(srcUrl, `CREATE TABLE big ${TABLE}; INSERT INTO big SELECT g, 'name ' || g, g FROM generate_series(1, ${n}) g`)
  ctx.log(`postgres: ${n} rows in the source table; capturing and digesting them (not timed)`)
  const source = await PostgresSourceStore.open(srcUrl)
  const replicaStore = await PostgresReplicaStore.open(db(b, 'tm'))
  try {
    await source.track({ table: 'big', keyColumn: 'id' })
    await source.maintain()
    // Let both clusters settle before anything is timed: right after a million rows were loaded,
    // captured and indexed, autovacuum and the first readers' hint-bit writes compete with whatever
    // runs next (a bootstrap measured then took 2–3 times as long, and so did logical replication's
    // sync). A replica joining late meets vacuumed tables, as does logical replication here.
    ctx.log('postgres: VACUUM ANALYZE and CHECKPOINT on both clusters (not timed)')
    await execSql(srcUrl, 'VACUUM ANALYZE')
    await execSql(srcUrl, 'CHECKPOINT')
    await execSql(db(b, 'tm'), 'CHECKPOINT')

    // tidemark: a replica bootstrapped from the source's state, in-process (no HTTP in between).
    ctx.log('postgres: tidemark bootstrap')
    const local = new LocalFeedSource(source)
    const replica = createReplica({ source: local, feed: 'big', store: replicaStore, snapshotChunk: 10_000, pullLimit: 5000 })
    // The setup's garbage (a million rows captured and indexed in this process) collected first: a
    // replica runs in a process of its own, not in the one that just indexed its source.
    gc()
    let cpu = cpuMeter(a, b)
    let started = Date.now()
    const running = replica.run()
    await replica.caughtUp()
    const tidemarkMs = Date.now() - started
    const tidemarkCpu = cpu()
    // What the replicator does right after a bootstrap (its bucket index, garbage collection,
    // ANALYZE) runs in the background on cluster b: let it finish, untimed, so that it does not
    // slow down logical replication's sync measured next.
    ctx.log("postgres: waiting for the replica's post-bootstrap work (not timed)")
    await quiesce(db(b, 'tm'), 'tm')
    await execSql(db(b, 'tm'), 'CHECKPOINT')

    // Logical replication: the initial table sync of the same table.
    ctx.log('postgres: logical replication initial sync')
    const lrUrl = db(b, 'lr')
    await execSql(srcUrl, 'CREATE PUBLICATION bench FOR TABLE big')
    await execSql(lrUrl, `CREATE TABLE big ${TABLE}`)
    const lr = await numberQueries(lrUrl)
    cpu = cpuMeter(a, b)
    started = Date.now()
    await execSql(lrUrl, `CREATE SUBSCRIPTION bench CONNECTION 'host=127.0.0.1 port=${a.port} dbname=src user=postgres' PUBLICATION bench`)
    for (;;) {
      const notReady = await lr.number(`SELECT count(*) AS n FROM pg_subscription_rel WHERE srsubstate <> 'r'`)
      const rel = await lr.number('SELECT count(*) AS n FROM pg_subscription_rel')
      if (rel > 0 && notReady === 0) break
      await sleep(20)
    }
    const logicalMs = Date.now() - started
    const logicalCpu = cpu()
    ctx.report({
      figure: `bootstrap ${n.toLocaleString('en')} rows PG → PG: tidemark replica`,
      value: tidemarkMs / 1000,
      unit: 's',
      baseline: { name: 'logical replication initial sync', value: logicalMs / 1000 },
      target: atMost(2, '≤ 2× time'),
      note: 'snapshot chunks of 10,000 rows (the largest the protocol allows) through an in-process feed source into a PostgreSQL replica store (rows, digest, checkpoint) in the second cluster; logical replication: CREATE SUBSCRIPTION until every table is ready',
    })
    if (tidemarkCpu.total !== undefined && logicalCpu.total !== undefined) {
      ctx.report({
        figure: `bootstrap ${n.toLocaleString('en')} rows PG → PG: CPU of every party`,
        value: tidemarkCpu.total / 1000,
        unit: 'CPU-s',
        baseline: { name: 'logical replication', value: logicalCpu.total / 1000 },
        note:
          `tidemark: its process ${seconds(tidemarkCpu.node)}, source server ${seconds(tidemarkCpu.a)}, replica server ${seconds(tidemarkCpu.b)}; ` +
          `logical replication: publisher ${seconds(logicalCpu.a)}, subscriber ${seconds(logicalCpu.b)}. With two cores, time ≥ CPU ÷ 2, and ≥ the busiest single-threaded party's CPU`,
      })
    }

    // Streaming: the same burst reaches both live consumers; each is timed until the last write is there.
    ctx.signal.throwIfAborted()
    const changes = sizes.streamTxs * sizes.streamTxSize
    ctx.log(`postgres: streaming ${changes} changes to both`)
    started = Date.now()
    await writeBurst(srcUrl, 'big', { txs: sizes.streamTxs, txSize: sizes.streamTxSize, keys: n })
    await execSql(srcUrl, `INSERT INTO big VALUES (-1, 'done', 0)`)
    let tidemarkDone = 0
    let logicalDone = 0
    while (tidemarkDone === 0 || logicalDone === 0) {
      if (tidemarkDone === 0 && (await replicaStore.get('big', '-1')) !== undefined) tidemarkDone = Date.now()
      if (logicalDone === 0 && (await lr.number('SELECT count(*) AS n FROM big WHERE id = -1')) > 0) logicalDone = Date.now()
      await sleep(10)
    }
    ctx.report({
      figure: `streaming ${changes.toLocaleString('en')} changes PG → PG: tidemark replica`,
      value: (tidemarkDone - started) / 1000,
      unit: 's',
      baseline: { name: 'logical replication apply', value: (logicalDone - started) / 1000 },
      target: atMost(2, '≤ 2× time'),
      note: `${sizes.streamTxs} transactions of ${sizes.streamTxSize} upserts written on one connection, then a marker row; both consumers live and following the same writes; time from the first write until the marker is applied`,
    })
    await replica.stop()
    await running
    await lr.close()
    await execSql(lrUrl, 'DROP SUBSCRIPTION bench')
  } finally {
    await replicaStore.close()
    await source.close()
  }
}
