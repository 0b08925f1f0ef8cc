/**
 * Suite `postgres`, part `pgbench`: what tidemark costs a PostgreSQL owner under an OLTP load —
 * pgbench's TPC-B-like script (`-c 4 -j 2`) on a tracked and an identical untracked database of one
 * throwaway cluster with autovacuum off (tidemark must not depend on the server's housekeeping):
 * - TPS with capture alone, and with capture + a feed server (`tidemark serve`, its own process)
 *   + one long-polling replica (`tidemark replicate` into SQLite, its own process, at nice 19: a
 *   replica runs on another machine, not on the owner's cores), each against the untracked TPS;
 * - the cluster's CPU per pgbench transaction, tracked minus untracked: what tidemark costs the
 *   owner's server, split by process (pgbench's backends, which run the triggers; tidemark's
 *   backends; the rest) and by statement (pg_stat_statements, nested statements included);
 * - `tidemark.pending`'s size after the runs;
 * - a snapshot chunk read right after `track` (no ANALYZE by anyone but tidemark) against the same
 *   read after an explicit ANALYZE.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { execSql, rowQueries } from './sql.js'
import { PostgresSourceStore } from '../../src/store/postgres/postgres-source-store.js'
import { atLeast, atMost, median } from '../harness.js'
import { processCpuMs } from '../process-cpu.js'
import { postgresBinaries, startCluster, type Cluster } from './cluster.js'
import type { BenchContext } from '../suite.js'

export interface PgbenchSizes {
  scale: number
  seconds: number
}

const BIN = fileURLToPath(new URL('../../bin/tidemark.js', import.meta.url))
const TABLES: Array<[string, string]> = [
  ['pgbench_accounts', 'aid'],
  ['pgbench_tellers', 'tid'],
  ['pgbench_branches', 'bid'],
]
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function dbUrl(cluster: Cluster, name: string): string {
  const u = new URL(cluster.url)
  u.pathname = `/${name}`
  return u.toString()
}

function pgbench(cluster: Cluster, args: string[]): string {
  const r = spawnSync(join(postgresBinaries(), 'pgbench'), ['-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres', ...args], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`pgbench ${args.join(' ')} failed: ${r.stderr}`)
  return r.stdout
}

interface Run {
  tps: number
  txs: number
  /** Cluster CPU (ms) in all, in pgbench's backends, in the tracked database's other backends. */
  cpu: { total: number; pgbench: number; tidemark: number; other: number }
}

/** CPU of the cluster's backends while `fn` runs, by group, from /proc (sampled, so that backends that exit are counted). */
async function measured(cluster: Cluster, trackedDb: string, fn: () => Promise<{ tps: number; txs: number }>): Promise<Run> {
  const q = await rowQueries(dbUrl(cluster, 'postgres'), 'tidemark-bench-sampler')
  const first = new Map<number, number>()
  const last = new Map<number, { group: 'pgbench' | 'tidemark' | 'other'; ms: number }>()
  const sample = async (): Promise<void> => {
    const rows = await q.rows<{ pid: number; datname: string | null; app: string | null }>(
      'SELECT pid, datname, application_name AS app FROM pg_stat_activity WHERE pid <> pg_backend_pid()',
    )
    for (const r of rows) {
      const ms = processCpuMs(r.pid)
      if (ms === undefined) continue
      if (!first.has(r.pid)) first.set(r.pid, ms)
      const group = r.app === 'pgbench' ? 'pgbench' : r.datname === trackedDb ? 'tidemark' : 'other'
      last.set(r.pid, { group, ms })
    }
  }
  await sample()
  const total0 = cluster.cpuMs() ?? 0
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      await sample()
      await sleep(200)
    }
  })()
  const result = await fn()
  sampling = false
  await sampler
  const total = (cluster.cpuMs() ?? 0) - total0
  await q.close()
  const by = { pgbench: 0, tidemark: 0 }
  for (const [pid, { group, ms }] of last) {
    if (group === 'other') continue
    by[group] += ms - (first.get(pid) ?? ms)
  }
  return { ...result, cpu: { total, ...by, other: total - by.pgbench - by.tidemark } }
}

function runPgbench(cluster: Cluster, db: string, seconds: number): { tps: number; txs: number } {
  const out = pgbench(cluster, ['-n', '-c', '4', '-j', '2', '-T', String(seconds), db])
  const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1])
  const txs = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1])
  if (!Number.isFinite(tps) || !Number.isFinite(txs)) throw new Error(`unexpected pgbench output: ${out}`)
  return { tps, txs }
}

/** A `tidemark` CLI child; resolves once `ready` matches a line of its stderr. */
async function cli(args: string[], ready: RegExp, nice = false): Promise<{ child: ChildProcess; match: RegExpExecArray; stop(): Promise<void> }> {
  const cmd = nice ? 'nice' : process.execPath
  const full = nice ? ['-n', '19', process.execPath, BIN, ...args] : [BIN, ...args]
  const child = spawn(cmd, full, { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      err += s
      const m = ready.exec(err)
      if (m) resolve(m)
    })
    child.once('exit', (code) => reject(new Error(`tidemark ${args[0]} exited (${code}) before it was ready: ${err.slice(-2000)}`)))
  })
  return {
    child,
    match,
    async stop() {
      if (child.exitCode !== null) return
      child.kill('SIGTERM')
      await once(child, 'exit')
    },
  }
}

/** A process's CPU (ms) from now on; for a `nice` child its pid is the node process (nice execs). */
function childCpu(child: ChildProcess): () => number {
  const pid = child.pid ?? 0
  const start = processCpuMs(pid) ?? 0
  let latest = start
  return () => {
    latest = processCpuMs(pid) ?? latest
    return latest - start
  }
}

const perTx = (ms: number, txs: number): number => (ms * 1000) / txs

export async function pgbenchFigures(ctx: BenchContext, sizes: PgbenchSizes): Promise<void> {
  ctx.log('postgres/pgbench: starting a cluster with autovacuum off')
  const cluster = await startCluster({
    autovacuum: 'off',
    max_connections: '50',
    shared_preload_libraries: 'pg_stat_statements',
    'pg_stat_statements.track': 'all',
  })
  try {
    for (const name of ['t21_plain', 't21_tracked']) {
      await execSql(cluster.url, `CREATE DATABASE ${name}`)
      pgbench(cluster, ['-i', '-q', '-s', String(sizes.scale), name])
    }
    const url = dbUrl(cluster, 't21_tracked')
    await execSql(url, 'CREATE EXTENSION pg_stat_statements')
    const stats = await rowQueries(url)

    // track, as a new user would, then a snapshot chunk in the middle of the accounts (no ANALYZE but tidemark's own).
    ctx.log('postgres/pgbench: tracking pgbench_accounts, _tellers, _branches')
    const store = await PostgresSourceStore.open(url)
    let started = Date.now()
    for (const [table, key] of TABLES) await store.track({ table, keyColumn: key })
    const trackMs = Date.now() - started
    await store.maintain()
    const middle = String(Math.floor((sizes.scale * 100_000) / 2))
    const chunk = async (): Promise<number> => {
      const times: number[] = []
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now()
        await store.snapshot('pgbench_accounts', middle, 1000)
        times.push(performance.now() - t0)
      }
      return median(times)
    }
    const fresh = await chunk()
    await execSql(url, 'ANALYZE tidemark.state')
    const analysed = await chunk()
    await store.close()
    ctx.report({
      figure: 'snapshot chunk of 1,000 rows right after track (no ANALYZE by the server)',
      value: fresh,
      unit: 'ms',
      baseline: { name: 'after ANALYZE tidemark.state', value: analysed },
      target: atMost(3, '≤ 3×'),
      note: `pgbench scale ${sizes.scale} (${(sizes.scale * 100_000).toLocaleString('en')} accounts); track of the three keyed tables took ${(trackMs / 1000).toFixed(1)} s; median of 5 reads through the store (including its snapshot transaction) after maintain()`,
    })

    await execSql(cluster.url, 'CHECKPOINT')
    ctx.log('postgres/pgbench: untracked run')
    const plain = await measured(cluster, 't21_tracked', async () => runPgbench(cluster, 't21_plain', sizes.seconds))

    ctx.log('postgres/pgbench: tracked run, capture alone')
    const alone = await measured(cluster, 't21_tracked', async () => runPgbench(cluster, 't21_tracked', sizes.seconds))

    ctx.log('postgres/pgbench: feed server and one replica catching up (not timed)')
    const server = await cli(['serve', url, '--port', '0'], /tidemark serving \S+ at (http:\/\/\S+)/)
    const serverUrl = server.match[1] as string
    const replicaDb = join(ctx.tmpDir('tidemark-bench-pgbench-'), 'replica.db')
    const replica = await cli(['replicate', serverUrl, 'pgbench_accounts', '--into', replicaDb], /./, true)
    const replicaSeq = (): number => {
      try {
        const db = new Database(replicaDb, { readonly: true, fileMustExist: true })
        try {
          return (db.prepare(`SELECT seq FROM tidemark_replica_replicas WHERE name = 'pgbench_accounts'`).pluck().get() as number | undefined) ?? 0
        } finally {
          db.close()
        }
      } catch {
        return 0
      }
    }
    const head = async (): Promise<number> =>
      Number((await stats.rows<{ head: string }>(`SELECT head FROM tidemark.feeds WHERE name = 'pgbench_accounts'`))[0]?.head ?? 0)
    for (;;) {
      const pendingRows = Number((await stats.rows<{ n: string }>('SELECT count(*) AS n FROM tidemark.pending'))[0]?.n)
      if (pendingRows === 0 && replicaSeq() >= (await head())) break
      await sleep(250)
    }
    const sequencedBefore = await head()
    await stats.rows('SELECT pg_stat_statements_reset()')
    ctx.log('postgres/pgbench: tracked run with the feed server and the replica')
    const serverCpu = childCpu(server.child)
    const replicaCpu = childCpu(replica.child)
    const served = await measured(cluster, 't21_tracked', async () => runPgbench(cluster, 't21_tracked', sizes.seconds))
    const serverMs = serverCpu()
    const replicaMs = replicaCpu()
    const statements = await stats.rows<{ query: string; calls: string; ms: number; toplevel: boolean }>(
      `SELECT query, calls, total_exec_time AS ms, toplevel FROM pg_stat_statements
       WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY total_exec_time DESC`,
    )
    // How far the replica got: the run's changes all reach it (wait, untimed).
    const target = await head()
    while (replicaSeq() < target) await sleep(100)
    await replica.stop()
    await server.stop()

    ctx.report({
      figure: 'pgbench TPC-B-like (-c 4 -j 2): TPS with capture alone',
      value: alone.tps,
      unit: 'tx/s',
      baseline: { name: 'untracked database', value: plain.tps },
      note: `scale ${sizes.scale}, ${sizes.seconds} s each, one cluster, autovacuum off; pgbench_accounts, _tellers and _branches tracked (3 captured rows per transaction), nothing sequencing meanwhile`,
    })
    ctx.report({
      figure: 'pgbench TPC-B-like (-c 4 -j 2): TPS with capture + feed server + 1 long-polling replica',
      value: served.tps,
      unit: 'tx/s',
      baseline: { name: 'untracked database', value: plain.tps },
      target: atLeast(0.6, '≥ 0.6×'),
      note: `tidemark serve (its own process, ${(serverMs / 1000).toFixed(1)} CPU-s) and tidemark replicate pgbench_accounts into SQLite at nice 19 (${(replicaMs / 1000).toFixed(1)} CPU-s) on the same 2 cores; ${(target - sequencedBefore).toLocaleString('en')} changes of pgbench_accounts reached the replica`,
    })
    const own = perTx(plain.cpu.total, plain.txs)
    for (const [name, run] of [
      ['capture alone', alone],
      ['capture + feed server', served],
    ] as const) {
      const cost = perTx(run.cpu.total, run.txs) - own
      ctx.report({
        figure: `PostgreSQL CPU per pgbench transaction spent on tidemark, ${name}`,
        value: cost,
        unit: 'µs/tx',
        baseline: { name: "pgbench's own (untracked run)", value: own },
        target: atMost(0.5, '≤ 0.5×'),
        note:
          `cluster CPU per transaction, tracked run minus untracked run. Tracked: pgbench's backends (their work and the triggers) ${perTx(run.cpu.pgbench, run.txs).toFixed(0)} µs/tx ` +
          `(untracked ${perTx(plain.cpu.pgbench, plain.txs).toFixed(0)}), tidemark's backends ${perTx(run.cpu.tidemark, run.txs).toFixed(0)} µs/tx, ` +
          `the rest (WAL writer, checkpointer, …) ${perTx(run.cpu.other, run.txs).toFixed(0)} µs/tx (untracked ${perTx(plain.cpu.other, plain.txs).toFixed(0)})`,
      })
    }
    // Where tidemark's statement time goes in the served run (pg_stat_statements; nested ones included, so a
    // trigger's INSERT is counted on its own and inside the pgbench statement that fired it).
    const classes: Array<[string, RegExp]> = [
      ['trigger: INSERT INTO tidemark.pending', /^INSERT INTO tidemark\.pending/],
      ['sequencer: move pending → changes', /DELETE FROM tidemark\.pending|FROM tidemark\.pending_/],
      ['sequencer: pending checks', /FROM tidemark\.pending/],
      ['indexer: state + digest upserts, log reads', /tidemark\.state|tidemark\.digest|SELECT seq, key, op, data FROM|digest_seq/],
      ['serving: log pages', /SELECT seq, key, op, data, tx, ts FROM/],
      ['other tidemark statements', /tidemark\./],
    ]
    const sums = new Map<string, number>()
    for (const s of statements) {
      if (/pgbench_/.test(s.query) && !/tidemark/.test(s.query)) continue
      const found = classes.find(([, re]) => re.test(s.query))
      if (!found) continue
      sums.set(found[0], (sums.get(found[0]) ?? 0) + s.ms)
    }
    const pgbenchMs = statements.filter((s) => s.toplevel && /pgbench_/.test(s.query)).reduce((a, s) => a + s.ms, 0)
    ctx.report({
      figure: 'pgbench statements (top level, triggers included), served run',
      value: perTx(pgbenchMs, served.txs),
      unit: 'µs/tx',
      note: 'pg_stat_statements total_exec_time of pgbench’s own statements per transaction',
    })
    for (const [name] of classes) {
      ctx.report({
        figure: `tidemark statements, served run: ${name}`,
        value: perTx(sums.get(name) ?? 0, served.txs),
        unit: 'µs/tx',
        note: 'pg_stat_statements total_exec_time per pgbench transaction',
      })
    }
    for (const s of statements.slice(0, 12)) ctx.log(`  ${s.ms.toFixed(0).padStart(7)} ms ${String(s.calls).padStart(8)} calls  ${s.query.replace(/\s+/g, ' ').slice(0, 110)}`)

    const pending = (
      await stats.rows<{ bytes: string; live: string; dead: string }>(
        `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) AS bytes, coalesce(sum(s.n_live_tup), 0) AS live, coalesce(sum(s.n_dead_tup), 0) AS dead
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
         WHERE n.nspname = 'tidemark' AND c.relname LIKE 'pending%' AND c.relkind IN ('r', 'p')`,
      )
    )[0]
    ctx.report({
      figure: 'tidemark.pending after the runs, autovacuum off',
      value: Number(pending?.bytes) / 1e6,
      unit: 'MB',
      note: `${Number(pending?.live).toLocaleString('en')} live, ${Number(pending?.dead).toLocaleString('en')} dead tuples (pg_stat_user_tables); ${(alone.txs + served.txs).toLocaleString('en')} pgbench transactions captured`,
    })
    await stats.close()
  } finally {
    cluster.stop()
  }
}
