import assert from 'node:assert/strict'
import type { Database } from 'better-sqlite3'
import { after } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import type { Change, FeedInfo } from '../../src/protocol/types.js'
import { createReplica, type Replica } from '../../src/replica/replica.js'
import { Backoff } from '../../src/transport/backoff.js'
import type {
  ChangesPage,
  ChangesRequest,
  DigestPage,
  DigestRequest,
  FeedSource,
  KeysListing,
  KeysRequest,
  RowsPage,
  SnapshotPage,
  SnapshotRequest,
} from '../../src/transport/feed-source.js'
import type { SqliteReplicaStore } from '../../src/store/sqlite/sqlite-replica-store.js'
import type { ChangeTransport } from '../../src/transport/transport.js'
import { encodeBatch, splitIntoBatches, type EncodedBatch } from '../../src/transport/broker/broker-message.js'
import { prng } from '../../src/util/prng.js'
import { projectionHook, replicaState, sourceFixture } from './replica-fixture.js'

/** A FeedSource that counts what the replica asks of the log: pulls (no wait) and long-polls. */
export class CountingSource implements FeedSource {
  pulls = 0
  polls = 0
  constructor(private readonly inner: FeedSource) {}
  get description(): string {
    return this.inner.description
  }
  info(feed: string, signal?: AbortSignal): Promise<FeedInfo> {
    return this.inner.info(feed, signal)
  }
  changes(feed: string, request: ChangesRequest): Promise<ChangesPage> {
    if (request.waitMs) this.polls++
    else this.pulls++
    return this.inner.changes(feed, request)
  }
  snapshot(feed: string, request: SnapshotRequest): Promise<SnapshotPage> {
    return this.inner.snapshot(feed, request)
  }
  rows(feed: string, keys: string[], signal?: AbortSignal): Promise<RowsPage> {
    return this.inner.rows(feed, keys, signal)
  }
  digest(feed: string, request: DigestRequest): Promise<DigestPage> {
    return this.inner.digest(feed, request)
  }
  keys(feed: string, request: KeysRequest): Promise<KeysListing> {
    return this.inner.keys(feed, request)
  }
}

/** TIDEMARK_TEST_DEBUG=1 prints what replicas and transports warn about. */
export const debugLogger = process.env.TIDEMARK_TEST_DEBUG
  ? { debug() {}, info: (_o: object, m?: string) => console.error(m), warn: (_o: object, m?: string) => console.error(m), error: (_o: object, m?: string) => console.error(m) }
  : undefined

export type Fixture = Awaited<ReturnType<typeof sourceFixture>>

/**
 * Teardown in the right order: registered before the source fixture's own `after` (hooks run in
 * the order they were registered), so replicas and relays stop before the source closes.
 */
export function teardown(): (step: () => Promise<unknown>) => void {
  const steps: Array<() => Promise<unknown>> = []
  after(async () => {
    for (const step of steps) await step().catch(() => {})
  })
  return (step) => steps.unshift(step)
}

/** A running replica of `fx` over `transport`, with a projection that counts each change it sees. */
export interface BrokerReplica {
  replica: Replica<Database>
  store: SqliteReplicaStore
  source: CountingSource
  running: Promise<void>
  close(): Promise<void>
  exact(ms?: number): Promise<void>
}

/**
 * `headCheckMs` is short so that tests of a lost last message finish quickly. (A replica idle at the
 * head for longer than that pulls once from the log when the next write arrives, even if the broker
 * delivers it a moment later: replica.ts dates its last progress from the start of follow().)
 */
export function brokerReplica(fx: Fixture, transport: (source: FeedSource) => ChangeTransport, name = 'replica', headCheckMs = 400): BrokerReplica {
  const source = new CountingSource(fx.local)
  const store = fx.openReplicaStore(fx.replicaPath())
  const projection = projectionHook()
  projection.install(store.db)
  const replica: Replica<Database> = createReplica<Database>({
    source,
    feed: fx.feed,
    store,
    name,
    apply: projection.hook,
    transport: transport(source),
    headCheckMs,
    ...(debugLogger ? { logger: debugLogger } : {}),
    backoff: new Backoff({ baseMs: 20, capMs: 300 }),
  })
  const running = replica.run()
  running.catch(() => {})
  return {
    async close(): Promise<void> {
      await replica.stop()
      await store.close()
    },
    replica,
    store,
    source,
    running,
    /** Waits until the replica is at the source's head, then checks it equals the source, each change applied once. */
    async exact(ms = 20_000): Promise<void> {
      const head = (await fx.source.getFeed(fx.feed)).head
      const timeUp = new AbortController()
      const timer = setTimeout(() => timeUp.abort(new Error(`replica at ${replica.status().checkpoint}, not ${head}, after ${ms} ms: ${replica.status().lastError}`)), ms)
      try {
        await replica.caughtUp(head, timeUp.signal)
      } finally {
        clearTimeout(timer)
      }
      assert.deepEqual(await replicaState(store, name), await fx.sourceState())
      const twice = [...projection.seen].filter(([, n]) => n > 1)
      assert.deepEqual(twice, [], 'no change reached the projection twice')
    },
  }
}

export async function until(condition: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await delay(10)
  }
}

/**
 * The feed's changes after `after` as the relay would encode them (3 changes a message at most),
 * in a scrambled order: pairs swapped, some messages twice, one left out — what a misbehaving
 * publisher could make a real broker deliver. The seed is printed when a test using it fails.
 */
export async function scrambledMessages(fx: Fixture, after: number, seed: number): Promise<EncodedBatch[]> {
  const page = await fx.local.changes(fx.feed, { after, limit: 100_000 })
  const batches = splitIntoBatches(fx.feed, page.epoch, page.changes, 3, 1 << 20).map(encodeBatch)
  const random = prng(seed)
  const out: EncodedBatch[] = []
  for (let i = 0; i < batches.length; i++) {
    const b = batches[i] as EncodedBatch
    const r = random()
    if (r < 0.05 && i < batches.length - 1) continue // lost (not the last: the head check has its own test)
    if (r < 0.25 && i + 1 < batches.length) {
      out.push(batches[i + 1] as EncodedBatch, b) // swapped
      i++
      continue
    }
    out.push(b)
    if (r > 0.85) out.push(b) // twice
  }
  return out
}

/** A message of one-change transactions first … last (each change's data is its seq), as the relay encodes it. */
export function brokerMessage(feed: string, epoch: string, first: number, last = first): EncodedBatch {
  const changes = Array.from({ length: last - first + 1 }, (_, i): Change => ({ seq: first + i, key: `k${first + i}`, op: 'upsert', data: first + i, tx: first + i, ts: 0 }))
  return encodeBatch({ feed, epoch, first, last, changes })
}
