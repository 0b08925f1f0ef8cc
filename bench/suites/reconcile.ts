/**
 * Suite `reconcile`: how much a reconciliation costs a replica of 1,000,000 keys over HTTP — an
 * intact one (one round trip, bytes, time) and one with d = 1, 100, 10,000 drifted keys found and
 * repaired — next to the naive way of comparing: every `(key, seq, hash)` of the source sent and
 * compared with the replica's. docs/bench.md explains each figure.
 */
import { join } from 'node:path'
import { TREE_DEPTH } from '../../src/digest/digest-tree.js'
import { reconcile } from '../../src/reconcile/reconcile.js'
import type { ReconcileMode, ReconcileRun } from '../../src/reconcile/run.js'
import { createReplica } from '../../src/replica/replica.js'
import { createFeedServer } from '../../src/server/feed-server.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import { SqliteSourceStore } from '../../src/store/sqlite/sqlite-source-store.js'
import { HttpFeedSource } from '../../src/transport/http/http-feed-source.js'
import { atMost, median, nowMs, prng, timeMs, timeSyncMs } from '../harness.js'
import { fillKeys, Owner } from '../replica/feeds.js'
import type { Suite } from '../suite.js'

interface Sizes {
  keys: number
  drift: number[]
  intactRounds: number
}

const FULL: Sizes = { keys: 1_000_000, drift: [1, 100, 10_000], intactRounds: 5 }
const QUICK: Sizes = { keys: 20_000, drift: [1, 100, 1000], intactRounds: 2 }

const FEED = 'reconcile'
const n = (x: number): string => x.toLocaleString('en-US')
const bytesOf = (run: ReconcileRun): number => run.cost.bytesSent + run.cost.bytesReceived
/** A digest node on the wire: `[count,"22 base64url chars"]`, about 30 bytes. */
const NODE_BYTES = 30

export const reconcileSuite: Suite = {
  name: 'reconcile',
  description: 'reconciliation over HTTP of a 1,000,000-key replica: intact verify, and d drifted keys found and repaired, vs sending every (key, hash)',
  async run(ctx) {
    const sizes = ctx.quick ? QUICK : FULL
    const dir = ctx.tmpDir()
    const owner = new Owner(join(dir, 'source.db'))
    let store: SqliteSourceStore | undefined
    let server: Awaited<ReturnType<typeof createFeedServer>> | undefined
    let source: HttpFeedSource | undefined
    let replicaStore: SqliteReplicaStore | undefined
    try {
      const fillMs = timeSyncMs(() => fillKeys(owner, FEED, sizes.keys, { seed: 21 }))
      store = SqliteSourceStore.open(join(dir, 'source.db'))
      const s = store
      const indexMs = await timeMs(() => s.maintain())
      server = await createFeedServer({ store, maintainEveryMs: 0 })
      const { url } = await server.listen({ host: '127.0.0.1', port: 0 })
      source = new HttpFeedSource(url)
      replicaStore = SqliteReplicaStore.open(join(dir, 'replica.db'))
      const rs = replicaStore
      const src = source
      const bootMs = await timeMs(async () => {
        const replica = createReplica({ source: src, feed: FEED, store: rs, snapshotChunk: 10_000 })
        const running = replica.run()
        await replica.caughtUp()
        await replica.stop()
        await running
      })
      ctx.log(`${n(sizes.keys)} keys written in ${(fillMs / 1000).toFixed(1)} s, indexed in ${(indexMs / 1000).toFixed(1)} s, bootstrapped over HTTP in ${(bootMs / 1000).toFixed(1)} s`)
      await rs.claim(FEED, FEED, src.description)
      const run = (mode: ReconcileMode): Promise<ReconcileRun> => reconcile({ source: src, feed: FEED, store: rs, name: FEED, mode, trigger: 'demand' })

      // The naive baseline: every (key, seq, hash) of the source, compared with the replica's own.
      const naive = await naiveCompare(src, rs)
      ctx.log(`naive: ${n(naive.entries)} entries, ${n(naive.bytes)} B in ${Math.round(naive.ms)} ms`)
      const entryBytes = naive.bytes / naive.entries
      const sample = pickKeys(1000, sizes.keys, prng(23))
      const t = src.traffic()
      await src.rows(FEED, sample)
      const rowBytes = (src.traffic().bytesReceived - t.bytesReceived) / sample.length

      // Intact: each round the owner writes one change and the replica applies it, so neither
      // side's digest is cached from the round before (a verify right after a write, the usual case).
      // The first run of a process builds both sides' trees from their leaves; later ones keep them
      // up to date as changes are folded and applied.
      const cold = await run('verify')
      const intact: ReconcileRun[] = []
      const rand = prng(22)
      for (let r = 0; r < sizes.intactRounds; r++) {
        ctx.signal.throwIfAborted()
        const head = owner.feed(FEED).put(String(1 + Math.floor(rand() * sizes.keys)), { round: r })
        const page = await src.changes(FEED, { after: head - 1 })
        await rs.apply(FEED, page.changes, page.last)
        const t0 = nowMs()
        const result = await run('verify')
        result.finishedAt = result.startedAt + (nowMs() - t0)
        if (result.outcome !== 'intact') throw new Error(`an intact replica verified as ${result.outcome}: ${result.error ?? ''}`)
        intact.push(result)
      }
      const warm = await run('verify')
      const intactMs = median(intact.map((r) => r.finishedAt - r.startedAt))
      ctx.report({
        figure: `verify, intact replica of ${n(sizes.keys)} keys: time`,
        value: intactMs,
        unit: 'ms',
        baseline: { name: 'naive: every (key, hash) compared', value: naive.ms },
        target: atMost(100, '< 100 ms', 'value'),
        note:
          `median of ${sizes.intactRounds}, each right after one owner write applied by the replica (both trees kept up to date in memory, as in a running feed server and replicator); ` +
          `again with nothing changed: ${warm.finishedAt - warm.startedAt} ms; the first run of a process, building both trees from 65,536 leaves: ${cold.finishedAt - cold.startedAt} ms`,
      })
      ctx.report({
        figure: `verify, intact replica of ${n(sizes.keys)} keys: bytes`,
        value: median(intact.map(bytesOf)),
        unit: 'B',
        baseline: { name: 'naive', value: naive.bytes },
        target: atMost(2048, '< 2 KB, 1 round trip', 'value'),
        note: `both ways, HTTP headers included (socket bytes); round trips: ${Math.max(...intact.map((r) => r.cost.roundTrips))}`,
      })

      const maxTrips = 2 + Math.log(sizes.keys) / Math.log(16)
      for (const d of sizes.drift) {
        ctx.signal.throwIfAborted()
        const keys = pickKeys(d, sizes.keys, prng(100 + d))
        const state = (await rs.state(FEED))!
        await rs.repair(FEED, keys.map((key) => ({ key, row: { key, seq: 1, data: { drifted: true } } })), { epoch: state.epoch!, seq: state.seq })
        const found = await run('verify')
        const fixed = await run('repair')
        const after = await run('verify')
        if (found.drifted !== d || fixed.repaired !== d || after.outcome !== 'intact') {
          throw new Error(`drift ${d}: verify found ${found.drifted}, repair repaired ${fixed.repaired}, then ${after.outcome}`)
        }
        const budget = 4 * (d * entryBytes + found.cost.nodes * NODE_BYTES)
        ctx.report({
          figure: `find ${n(d)} drifted key(s) (verify): bytes`,
          value: bytesOf(found),
          unit: 'B',
          baseline: { name: 'naive', value: naive.bytes },
          target: atMost(budget, `≤ ${n(Math.round(budget))} B`, 'value'),
          note:
            `budget = 4 × (d entries of ${Math.round(entryBytes)} B + the ${n(found.cost.nodes)} digest nodes on the path × ${NODE_BYTES} B); ` +
            `${n(found.cost.buckets)} buckets, ${n(found.cost.keys)} entries compared`,
        })
        const withRows = budget + 4 * d * rowBytes
        ctx.report({
          figure: `find and repair ${n(d)} drifted key(s): bytes`,
          value: bytesOf(fixed),
          unit: 'B',
          baseline: { name: 'naive', value: naive.bytes },
          target: atMost(withRows, `≤ ${n(Math.round(withRows))} B`, 'value'),
          note: `the verify budget plus 4 × d rows of ${Math.round(rowBytes)} B (a row's size in a rows answer, measured on 1,000 keys): the repair fetches the drifted rows' data once`,
        })
        ctx.report({
          figure: `find and repair ${n(d)} drifted key(s): round trips`,
          value: fixed.cost.roundTrips,
          unit: 'round trips',
          target: atMost(maxTrips, `≤ 2 + log16(N) = ${maxTrips.toFixed(1)}`, 'value'),
          note: `verify alone: ${found.cost.roundTrips}; tree depth ${TREE_DEPTH} below the root`,
        })
        ctx.report({
          figure: `find and repair ${n(d)} drifted key(s): time`,
          value: fixed.finishedAt - fixed.startedAt,
          unit: 'ms',
          baseline: { name: 'naive compare (no repair)', value: naive.ms },
          note: `verify alone: ${found.finishedAt - found.startedAt} ms`,
        })
      }
      ctx.log('anchors: negentropy needs about 3 round trips and ~1.5 KB for one difference in 1,000,000 keys; PowerSync re-downloads the whole bucket')
    } finally {
      await replicaStore?.close()
      await source?.close()
      await server?.close()
      await store?.close()
      owner.close()
    }
  },
}

/** Distinct keys among `1..keys` (the bench's key space). */
function pickKeys(d: number, keys: number, rand: () => number): string[] {
  const out = new Set<string>()
  while (out.size < d) out.add(String(1 + Math.floor(rand() * keys)))
  return [...out]
}

/** Every bucket's entries from the source, compared with the replica's: the cost of not having a digest tree. */
async function naiveCompare(source: HttpFeedSource, store: SqliteReplicaStore): Promise<{ ms: number; bytes: number; entries: number }> {
  const before = source.traffic()
  const t0 = nowMs()
  const all = Array.from({ length: 2 ** (4 * TREE_DEPTH) }, (_, i) => i)
  const listing = await source.keys(FEED, { buckets: all })
  let entries = 0
  let batch: Awaited<ReturnType<typeof store.bucketEntries>> = []
  let i = 0
  for await (const list of listing.lists) {
    if (i % 256 === 0) batch = await store.bucketEntries(FEED, all.slice(i, i + 256))
    const mine = batch[i % 256]
    if (mine === undefined || mine.count !== list.count || mine.sum !== list.sum) throw new Error(`naive: bucket ${list.bucket} differs`)
    entries += list.entries.length
    i++
  }
  const ms = nowMs() - t0
  const after = source.traffic()
  return { ms, bytes: after.bytesSent + after.bytesReceived - before.bytesSent - before.bytesReceived, entries }
}
