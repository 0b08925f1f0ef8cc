/**
 * A FeedSource over a SourceStore in the same process: what a feed server would answer, without
 * HTTP. Tests, the demo and the benchmarks use it; it follows the feed server's rules (pages of
 * whole transactions, long-poll only at the head, the same bounds), so a replica cannot tell the two
 * apart except by speed.
 */
import { BadRequestError, EpochChangedError, LogTruncatedError } from '../errors.js'
import { LIMITS } from '../protocol/limits.js'
import { readBucketLists, SourceDigests } from '../digest/source-digest.js'
import { checkBuckets, checkDigestRequest } from '../protocol/digest-wire.js'
import type { BucketList, Change, FeedInfo } from '../protocol/types.js'
import type { SourceStore } from '../store/store.js'
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
} from './feed-source.js'

export class LocalFeedSource implements FeedSource {
  readonly description: string
  private readonly digests: SourceDigests

  constructor(private readonly store: SourceStore) {
    this.description = `local:${store.location}`
    this.digests = new SourceDigests(store)
  }

  async info(feed: string, signal?: AbortSignal): Promise<FeedInfo> {
    signal?.throwIfAborted()
    return this.store.getFeed(feed)
  }

  async changes(feed: string, req: ChangesRequest): Promise<ChangesPage> {
    const { after, signal } = req
    if (!Number.isSafeInteger(after) || after < 0) throw new BadRequestError(`after must be a seq (a whole number ≥ 0), got ${after}`)
    const limit = bounded('limit', req.limit, 1, LIMITS.changesMax, LIMITS.changesDefault)
    const waitMs = Math.min(Math.max(0, req.waitMs ?? 0), LIMITS.waitMaxMs)
    signal?.throwIfAborted()
    const start = await this.store.getFeed(feed)
    checkEpoch(feed, req.epoch, start.epoch)

    let changes = await this.collect(feed, after, limit, signal)
    // Like the feed server: wait only at the head; a position past the head is answered at once.
    if (changes.length === 0 && waitMs > 0 && after === start.head) {
      await this.store.waitForChanges(feed, after, { timeoutMs: waitMs, ...(signal ? { signal } : {}) })
      changes = await this.collect(feed, after, limit, signal)
    }
    const end = await this.store.getFeed(feed)
    // The page belongs to one history: if the feed was reset while it was read, it is not this epoch's.
    checkEpoch(feed, start.epoch, end.epoch)
    const last = changes.length > 0 ? (changes[changes.length - 1] as Change).seq : after
    return { epoch: end.epoch, head: end.head, changes, last }
  }

  async snapshot(feed: string, req: SnapshotRequest): Promise<SnapshotPage> {
    const limit = bounded('limit', req.limit, 1, LIMITS.snapshotMax, LIMITS.snapshotDefault)
    req.signal?.throwIfAborted()
    const info = await this.store.getFeed(feed)
    checkEpoch(feed, req.epoch, info.epoch)
    const chunk = await this.store.snapshot(feed, req.after === '' ? null : req.after, limit)
    return { epoch: info.epoch, head: chunk.head, rows: chunk.rows, last: chunk.last, done: chunk.done }
  }

  async rows(feed: string, keys: string[], signal?: AbortSignal): Promise<RowsPage> {
    if (keys.length > LIMITS.rowsMax) throw new BadRequestError(`ask for at most ${LIMITS.rowsMax} keys at a time, not ${keys.length}`)
    for (const key of keys) {
      if (typeof key !== 'string' || key === '') throw new BadRequestError(`a key must be a non-empty string, got ${JSON.stringify(key)}`)
    }
    signal?.throwIfAborted()
    const info = await this.store.getFeed(feed)
    if (keys.length === 0) return { epoch: info.epoch, head: info.head, rows: [] }
    const { head, rows } = await this.store.rows(feed, [...new Set(keys)])
    return { epoch: info.epoch, head, rows }
  }

  async digest(feed: string, req: DigestRequest): Promise<DigestPage> {
    const { level, nodes } = checkDigestRequest(req.level, req.nodes, LIMITS.digestNodesMax)
    req.signal?.throwIfAborted()
    return this.digests.page(feed, level, nodes, req.epoch)
  }

  async keys(feed: string, req: KeysRequest): Promise<KeysListing> {
    const buckets = checkBuckets(req.buckets)
    req.signal?.throwIfAborted()
    const info = await this.store.getFeed(feed)
    checkEpoch(feed, req.epoch, info.epoch)
    const chunks = readBucketLists(this.store, feed, buckets, req.signal)
    // The first read comes before the answer, as on the feed server: a refusal is thrown here.
    const first = await chunks.next()
    const head = first.done ? undefined : first.value
    const store = this.store
    // Runs only once iterated, after `listing` exists.
    async function* lists(): AsyncGenerator<BucketList> {
      try {
        if (head) yield* head.lists
        for await (const chunk of chunks) {
          listing.minSeq = Math.max(listing.minSeq, chunk.minSeq)
          yield* chunk.lists
        }
        // Like the feed server's end line: lists read across a reset of the feed are not one history's.
        checkEpoch(feed, info.epoch, (await store.getFeed(feed)).epoch)
      } finally {
        await chunks.return(undefined)
      }
    }
    const listing: KeysListing = { epoch: info.epoch, seq: head?.seq ?? info.digestSeq, minSeq: head?.minSeq ?? info.minSeq, lists: lists() }
    return listing
  }

  /** One page: the store's batches up to the first transaction boundary at or after `limit`. */
  private async collect(feed: string, after: number, limit: number, signal: AbortSignal | undefined): Promise<Change[]> {
    const out: Change[] = []
    try {
      for await (const batch of this.store.changes(feed, after, { limit, ...(signal ? { signal } : {}) })) {
        for (const change of batch) out.push(change)
      }
    } catch (error) {
      // Retention can overtake a read between two batches: report the position asked about, as the server does.
      if (error instanceof LogTruncatedError && error.after !== after) throw new LogTruncatedError(feed, after, error.minSeq)
      throw error
    }
    return out
  }
}

function checkEpoch(feed: string, expected: string | undefined, actual: string): void {
  if (expected !== undefined && expected !== actual) throw new EpochChangedError(feed, expected, actual)
}

function bounded(name: string, value: number | undefined, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new BadRequestError(`${name} must be a whole number from ${min} to ${max}, got ${value}`)
  }
  return value
}
