/**
 * The source's side of reconciliation over a SourceStore, shared by the feed server's `digest` and
 * `keys` routes and by LocalFeedSource, so that both answer alike.
 */
import { EpochChangedError } from '../errors.js'
import { LIMITS } from '../protocol/limits.js'
import type { BucketList, Seq } from '../protocol/types.js'
import type { SourceStore } from '../store/store.js'
import type { DigestPage } from '../transport/feed-source.js'
import { DigestTree } from './digest-tree.js'

interface CachedTree {
  epoch: string
  seq: Seq
  tree: DigestTree
}

/**
 * Digest pages of a store's feeds. The tree of a feed is kept while the feed stays at the position
 * it was built at (same epoch, head unchanged): a reconcile's requests, one per level, build it once.
 */
export class SourceDigests {
  private readonly trees = new Map<string, CachedTree>()

  constructor(private readonly store: SourceStore) {}

  /** The nodes (already checked: checkDigestRequest) with their children; EpochChangedError unless at `epoch`. */
  async page(feed: string, level: number, nodes: number[], epoch?: string): Promise<DigestPage> {
    let info = await this.store.getFeed(feed)
    if (epoch !== undefined && epoch !== info.epoch) throw new EpochChangedError(feed, epoch, info.epoch)
    let cached = this.trees.get(feed)
    if (cached === undefined || cached.epoch !== info.epoch || cached.seq !== info.head) {
      const { seq, leaves } = await this.store.digestLeaves(feed)
      cached = { epoch: info.epoch, seq, tree: new DigestTree(leaves) }
      this.trees.set(feed, cached)
      // The digest was caught up to whatever was committed meanwhile: answer a head at or above it.
      info = await this.store.getFeed(feed)
      if (info.epoch !== cached.epoch) throw new EpochChangedError(feed, cached.epoch, info.epoch)
    }
    const tree = cached.tree
    return {
      epoch: info.epoch,
      seq: cached.seq,
      head: Math.max(info.head, cached.seq),
      minSeq: info.minSeq,
      level,
      // Copies: the cached tree is shared by later requests, whatever a caller does with its page.
      nodes: nodes.map((index) => ({ index, node: { ...tree.node(level, index) }, children: tree.children(level, index).map((c) => ({ ...c })) })),
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
