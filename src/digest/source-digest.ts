/**
 * The source's side of reconciliation over a SourceStore, shared by the feed server's `digest` and
 * `keys` routes and by LocalFeedSource, so that both answer alike.
 */
import { EpochChangedError } from '../errors.js'
import { LIMITS } from '../protocol/limits.js'
import type { BucketList, Seq } from '../protocol/types.js'
import type { SourceStore } from '../store/store.js'
import type { DigestPage } from '../transport/feed-source.js'

/**
 * Digest pages of a store's feeds, from the store's digest tree (which the SQLite store keeps up to
 * date in memory as its indexer folds the log, so a verify costs no read of 65,536 leaves).
 */
export class SourceDigests {
  constructor(private readonly store: SourceStore) {}

  /** The nodes (already checked: checkDigestRequest) with their children; EpochChangedError unless at `epoch`. */
  async page(feed: string, level: number, nodes: number[], epoch?: string): Promise<DigestPage> {
    const info = await this.store.getFeed(feed)
    if (epoch !== undefined && epoch !== info.epoch) throw new EpochChangedError(feed, epoch, info.epoch)
    const { seq, tree } = await this.store.digestTree(feed)
    // Read at once: the tree may be the store's live copy, which its next fold changes.
    const answer = nodes.map((index) => ({ index, node: tree.node(level, index), children: tree.children(level, index) }))
    return {
      epoch: info.epoch,
      seq,
      // The digest was caught up to whatever was committed meanwhile: answer a head at or above it.
      head: Math.max(info.head, seq),
      minSeq: info.minSeq,
      level,
      nodes: answer,
    }
  }
}

/** The lists of `buckets` (already checked: checkBuckets), read LIMITS.bucketsPerRead at a time. */
export async function* readBucketLists(
  store: SourceStore,
  feed: string,
  buckets: number[],
  signal?: AbortSignal,
): AsyncGenerator<{ seq: Seq; minSeq: Seq; lists: BucketList[] }> {
  for (let i = 0; i < buckets.length; i += LIMITS.bucketsPerRead) {
    signal?.throwIfAborted()
    yield await store.bucketEntries(feed, buckets.slice(i, i + LIMITS.bucketsPerRead))
  }
}
