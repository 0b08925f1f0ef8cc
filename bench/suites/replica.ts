/**
 * Suite `replica`: a replica of a SQLite source over HTTP into a SQLite replica file — how fast it
 * bootstraps and whether its memory stays flat as the feed grows, how fast it applies the owner's
 * changes, and how soon after a commit a live replica has applied it. docs/bench.md explains each
 * figure.
 */
import { join } from 'node:path'
import { createFeedServer } from '../../src/server/feed-server.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { atLeast, atMost, percentile, TempDirs, timeMs, timeSyncMs } from '../harness.js'
import { measureBootstrap, mb } from '../replica/bootstrap.js'
import { fillKeys, Owner } from '../replica/feeds.js'
import { measureLatency } from '../replica/latency.js'
import { measureLiveApply } from '../replica/live-apply.js'
import type { Suite } from '../suite.js'

interface Sizes {
  /** Rows of the feed bootstrapped for the rate, and of the smaller one it is compared with for memory. */
  bootstrapRows: number
  bootstrapSmallRows: number
  bootstrapRounds: number
  /** Keys the live replica holds (the key space of the upserts), and the owner's transactions after them. */
  liveKeys: number
  liveTxCount: number
  liveTxSize: number
  liveRounds: number
  /** Owner transactions per second for the latency figure, per turn, and rounds (a turn each of replica and baseline). */
  latencyKeys: number
  latencyRate: number
  latencyPerTurn: number
  latencyRounds: number
}

const FULL: Sizes = {
  bootstrapRows: 1_000_000,
  bootstrapSmallRows: 100_000,
  bootstrapRounds: 3,
  liveKeys: 100_000,
  liveTxCount: 2000,
  liveTxSize: 100,
  liveRounds: 3,
  latencyKeys: 100_000,
  latencyRate: 1000,
  latencyPerTurn: 5000,
  latencyRounds: 2,
}

const QUICK: Sizes = {
  bootstrapRows: 20_000,
  bootstrapSmallRows: 5000,
  bootstrapRounds: 1,
  liveKeys: 10_000,
  liveTxCount: 100,
  liveTxSize: 100,
  liveRounds: 1,
  latencyKeys: 10_000,
  latencyRate: 1000,
  latencyPerTurn: 500,
  latencyRounds: 1,
}

const n = (x: number): string => x.toLocaleString('en-US')

export const replica: Suite = {
  name: 'replica',
  description: 'replica over HTTP into SQLite: bootstrap rate and memory, live apply rate, commit-to-applied latency',
  async run(ctx) {
    const sizes = ctx.quick ? QUICK : FULL
    const dir = ctx.tmpDir()
    const sourcePath = join(dir, 'source.db')
    const owner = new Owner(sourcePath)
    const temp = new TempDirs()
    let store: SqliteSourceStore | undefined
    let server: Awaited<ReturnType<typeof createFeedServer>> | undefined
    try {
      const small = { feed: 'bootstrap-small', keys: sizes.bootstrapSmallRows, head: 0 }
      const big = { feed: 'bootstrap-big', keys: sizes.bootstrapRows, head: 0 }
      const fillMs = timeSyncMs(() => {
        small.head = fillKeys(owner, small.feed, small.keys, { seed: 11 }).head
        big.head = fillKeys(owner, big.feed, big.keys, { seed: 12 }).head
      })
      store = SqliteSourceStore.open(sourcePath)
      const s = store
      const maintainMs = await timeMs(() => s.maintain())
      owner.db.pragma('wal_checkpoint(TRUNCATE)')
      ctx.log(`${n(small.keys + big.keys)} rows written through the API in ${(fillMs / 1000).toFixed(1)} s, indexed in ${(maintainMs / 1000).toFixed(1)} s`)
      // No maintenance pass: the bench runs the indexer itself after each fill, so that nothing
      // competes with what is being measured.
      server = await createFeedServer({ store, maintainEveryMs: 0 })
      const { url } = await server.listen({ host: '127.0.0.1', port: 0 })

      const boot = await measureBootstrap({ temp, url, sourcePath, small, big, rounds: sizes.bootstrapRounds, signal: ctx.signal, log: ctx.log })
      ctx.report({
        figure: `bootstrap over HTTP (${n(big.keys)} rows)`,
        value: boot.replica,
        unit: 'rows/s',
        baseline: { name: 'raw copy in-process', value: boot.raw },
        target: atLeast(0.5, '≥ 0.5×'),
        note: 'replicator in another process over HTTP into a fresh SQLite file, no hook, from run() to the swap; baseline: keyset reads of tidemark_state inserted into a fresh table, 5000 rows per transaction',
      })
      ctx.report({
        figure: `replicator peak RSS, bootstrap of ${n(big.keys)} rows`,
        value: boot.rssBig / 2 ** 20,
        unit: 'MB',
        baseline: { name: `${n(small.keys)} rows`, value: boot.rssSmall / 2 ** 20 },
        target: atMost(1.25, '≤ 1.25×'),
        note: 'peak RSS of the whole replicator process (node included), median over the rounds',
      })
      ctx.log(`bootstrap of ${n(small.keys)} rows: ${Math.round(boot.replicaSmall)} rows/s, peak RSS ${mb(boot.rssSmall)}`)
      const stageNotes = {
        serve: 'the feed server alone: every chunk requested over HTTP by another process that only drains the body (read, encode, send)',
        fetch: "the replica's HTTP client on top: the same chunks parsed and checked by HttpFeedSource.snapshot, nothing written",
        write: "the replica store alone: the same rows (read from the source file, untimed) through writeSnapshotChunk and finishBootstrap",
      }
      for (const stage of ['serve', 'fetch', 'write'] as const) {
        ctx.report({
          figure: `bootstrap stage alone: ${stage} (${n(big.keys)} rows)`,
          value: boot.stages[stage],
          unit: 'rows/s',
          baseline: { name: 'raw copy in-process', value: boot.raw },
          better: 'higher',
          note: `${stageNotes[stage]}; the bootstrap runs them overlapped, so it is bounded by the slowest`,
        })
      }

      const live = await measureLiveApply({
        temp,
        url,
        owner,
        store,
        feed: 'live',
        keys: sizes.liveKeys,
        txCount: sizes.liveTxCount,
        txSize: sizes.liveTxSize,
        rounds: sizes.liveRounds,
        signal: ctx.signal,
        log: ctx.log,
      })
      const rawUpserts = { name: `raw upserts, ${sizes.liveTxSize}-row tx`, value: live.raw }
      ctx.report({
        figure: `live apply (${n(live.changes)} changes in ${sizes.liveTxSize}-change tx)`,
        value: live.replica,
        unit: 'changes/s',
        baseline: rawUpserts,
        target: atLeast(0.5, '≥ 0.5×'),
        note: 'apply only: the changes written first, then a replicator in another process catches up from a copy of a replica at the checkpoint before them (long-poll transport, up to 5000 changes per request)',
      })
      ctx.report({
        figure: 'live apply, one source tx per request',
        value: live.replicaPerTx,
        unit: 'changes/s',
        baseline: rawUpserts,
        note: 'the same with limit 100: each request, delivery and apply transaction is one source transaction',
      })

      const lat = await measureLatency({
        temp,
        url,
        owner,
        store,
        feed: 'latency',
        keys: sizes.latencyKeys,
        rate: sizes.latencyRate,
        perTurn: sizes.latencyPerTurn,
        rounds: sizes.latencyRounds,
        signal: ctx.signal,
        log: ctx.log,
      })
      ctx.log(`latency: owner wrote at ${Math.round(lat.ownerRate)} tx/s`)
      for (const p of [50, 99]) {
        ctx.report({
          figure: `commit → applied p${p}, ${n(sizes.latencyRate)} tx/s`,
          value: percentile(lat.applied, p),
          unit: 'ms',
          baseline: { name: `long-poll wake-up p${p}`, value: percentile(lat.wakeUp, p) },
          note: 'owner, feed server and replica in one process (hrtime); applied = replica.caughtUp(seq) resolved, after the apply transaction committed',
        })
      }
    } finally {
      await server?.close()
      await store?.close()
      owner.close()
      temp.cleanup()
    }
  },
}
