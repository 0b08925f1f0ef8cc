/**
 * Figure 3 of the replica suite: how long after the owner's commit a live replica has applied it,
 * with the owner writing at a steady rate (one upsert per transaction). The owner, the feed server
 * and the replica run in this one process, so both ends of every sample are read on the same
 * monotonic clock (`nowMs`, hrtime): commit = when the owner's `put` (its own transaction) returned;
 * applied = when `replica.caughtUp(seq)` resolved, i.e. right after the replica's apply transaction
 * holding that change committed.
 *
 * The baseline is the long-poll wake-up round trip alone, under the same writes: a client
 * long-polling the same server (`changes?after=<last>&wait=10000`, every line parsed) and asking
 * again as soon as it has an answer; each change's sample is commit → the last byte of the answer
 * that carried it. The ratio is what fetching through the replica's client and applying adds.
 *
 * Replica and baseline client take turns (never both at once, so neither slows the other), in an
 * order that rotates between rounds; the percentiles are over all the samples of each.
 */
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { createReplica } from '../../src/replica/replica.js'
import type { SourceStore } from '../../src/store/store.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import { HttpFeedSource } from '../../src/transport/http/http-feed-source.js'
import { median, nowMs, prng, rotateRounds, type TempDirs } from '../harness.js'
import { ChangesClient } from '../source/changes-client.js'
import { makeCustomer } from '../source/customers.js'
import { fillKeys, type Owner } from './feeds.js'

export interface LatencyOptions {
  temp: TempDirs
  url: string
  owner: Owner
  store: SourceStore
  feed: string
  /** Keys written before (the key space of the owner's upserts). */
  keys: number
  /** Owner transactions per second. */
  rate: number
  /** Transactions per turn; each round has one turn of the replica and one of the baseline client. */
  perTurn: number
  rounds: number
  signal: AbortSignal
  log: (message: string) => void
}

export interface LatencySamples {
  /** Commit → applied by the replica, ms. */
  applied: number[]
  /** Commit → answered to a long-polling client, ms. */
  wakeUp: number[]
  /** Transactions per second the owner reached (median over turns). */
  ownerRate: number
}

/**
 * Commits `count` one-change transactions at `rate` per second (as close as 1 ms timers allow:
 * whatever is due is committed at each tick), calling `committed(seq, at)` after each.
 */
async function paced(o: LatencyOptions, count: number, committed: (seq: number, at: number) => void): Promise<number> {
  const writer = o.owner.feed(o.feed)
  const rand = prng(31)
  const start = nowMs()
  let done = 0
  while (done < count) {
    o.signal.throwIfAborted()
    const due = Math.min(count, Math.floor(((nowMs() - start) * o.rate) / 1000) + 1)
    while (done < due) {
      const id = 1 + Math.floor(rand() * o.keys)
      const row = makeCustomer(id, rand)
      const seq = writer.put(String(id), row)
      committed(seq, nowMs())
      done++
    }
    if (done < count) await delay(1)
  }
  return count / ((nowMs() - start) / 1000)
}

export async function measureLatency(o: LatencyOptions): Promise<LatencySamples> {
  let head = fillKeys(o.owner, o.feed, o.keys, { seed: 30 }).head
  await o.store.maintain()
  const source = new HttpFeedSource(o.url)
  const store = SqliteReplicaStore.open(join(o.temp.make('tidemark-bench-latency-'), 'replica.db'))
  const replica = createReplica({ source, feed: o.feed, store })
  const client = new ChangesClient(o.url)
  const samples: LatencySamples = { applied: [], wakeUp: [], ownerRate: 0 }
  const ownerRates: number[] = []

  const replicaTurn = async (): Promise<void> => {
    const running = replica.run(o.signal)
    const ended = running.then(() => {
      throw new Error(`the replica stopped at ${replica.status().checkpoint}`)
    })
    ended.catch(() => {})
    await Promise.race([replica.caughtUp(head), ended])
    await delay(50) // Let it settle into its long-poll.
    const applied: Array<Promise<void>> = []
    ownerRates.push(
      await paced(o, o.perTurn, (seq, at) => {
        head = seq
        applied.push(replica.caughtUp(seq).then(() => void samples.applied.push(nowMs() - at)))
      }),
    )
    await Promise.race([Promise.all(applied), ended])
    await replica.stop()
    await running
  }

  const clientTurn = async (): Promise<void> => {
    const committedAt = new Map<number, number>()
    const first = head + 1
    const last = head + o.perTurn
    const polling = (async () => {
      let after = first - 1
      while (after < last) {
        const res = await client.changes(o.feed, after, { wait: 10_000 })
        for (let seq = after + 1; seq <= res.last; seq++) {
          const at = committedAt.get(seq)
          if (at === undefined) throw new Error(`change ${seq} arrived before its commit was recorded`)
          samples.wakeUp.push(res.receivedAt - at)
        }
        after = res.last
      }
    })()
    await delay(50)
    ownerRates.push(
      await paced(o, o.perTurn, (seq, at) => {
        committedAt.set(seq, at)
        head = seq
      }),
    )
    if (head !== last) throw new Error(`the owner's last change is ${head}, expected ${last}: somebody else writes this feed`)
    await polling
  }

  try {
    const turns = [replicaTurn, clientTurn]
    await rotateRounds(turns, {
      rounds: o.rounds,
      signal: o.signal,
      collect: false,
      afterRound: (round) =>
        o.log(`latency round ${round + 1}: ${samples.applied.length} applied, ${samples.wakeUp.length} long-poll samples, owner at ${Math.round(ownerRates.at(-1) as number)} tx/s`),
    })
  } finally {
    await replica.stop()
    await client.close()
    await source.close()
    await store.close()
  }
  samples.ownerRate = median(ownerRates)
  return samples
}
