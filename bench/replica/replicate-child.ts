/**
 * A replicator in its own process, as a consumer's service runs one (so that its peak RSS is its
 * own): argv[2] is a ReplicateJob as JSON. It opens the replica file, runs a replica of the feed
 * over HTTP until the checkpoint reaches `target` (bootstrapping first when the file has no copy),
 * stops it, and prints a ReplicateResult as JSON. It times itself: from `run()` to the checkpoint.
 */
import { createReplica } from '../../src/replica/replica.js'
import { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import { HttpFeedSource } from '../../src/transport/http/http-feed-source.js'
import { LongPollTransport } from '../../src/transport/http/long-poll-transport.js'
import { nowMs } from '../harness.js'

export interface ReplicateJob {
  url: string
  feed: string
  /** The replica's SQLite file (created when missing). */
  path: string
  /** The seq the checkpoint must reach. */
  target: number
  /** Changes per request, live and when pulling from the log (default: the replica's own). */
  limit?: number
}

export interface ReplicateResult {
  /** Checkpoint before and after. */
  from: number
  checkpoint: number
  /** Keys in the copy at the end. */
  keys: number
  /** From `run()` to the checkpoint reaching the target. */
  ms: number
  /** Phases it went through, in order. */
  phases: string[]
}

const job = JSON.parse(process.argv[2] as string) as ReplicateJob
const source = new HttpFeedSource(job.url)
const store = SqliteReplicaStore.open(job.path)
try {
  const from = (await store.state(job.feed))?.seq ?? 0
  const phases: string[] = []
  const replica = createReplica({
    source,
    feed: job.feed,
    store,
    onPhase: (change) => phases.push(change.to),
    ...(job.limit ? { transport: new LongPollTransport(source, { limit: job.limit }), pullLimit: job.limit } : {}),
  })
  const started = nowMs()
  const running = replica.run()
  const ended = running.then(() => {
    throw new Error(`the replica stopped at ${replica.status().checkpoint}, short of ${job.target}`)
  })
  ended.catch(() => {}) // Stopping it below ends `running` too: that is no failure.
  await Promise.race([replica.caughtUp(job.target), ended])
  const ms = nowMs() - started
  await replica.stop()
  const state = await store.state(job.feed)
  const result: ReplicateResult = { from, checkpoint: state?.seq ?? 0, keys: state?.keys ?? 0, ms, phases }
  process.stdout.write(`${JSON.stringify(result)}\n`)
} finally {
  await source.close()
  await store.close()
}
