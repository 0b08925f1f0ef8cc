/**
 * What a replica needs from its source: the feed's position, the log, the snapshot and rows by
 * key. The HTTP client (`http/http-feed-source.ts`) speaks protocol v1 to a feed server;
 * `local-feed-source.ts` reads a SourceStore in the same process (tests, the demo, benchmarks).
 */
import type { DigestNode } from '../digest/digest-tree.js'
import type { BucketList, Change, FeedInfo, Seq, StateRow } from '../protocol/types.js'

export interface ChangesRequest {
  after: Seq
  limit?: number
  /** Long-poll: hold the request up to this many ms until there is a change after `after`. */
  waitMs?: number
  /** Refuse (EpochChangedError) unless the feed is still at this epoch. */
  epoch?: string
  signal?: AbortSignal
}

export interface ChangesPage {
  epoch: string
  /** The feed's head when the page was finished. */
  head: Seq
  /** Whole source transactions, in order, from `after + 1`. */
  changes: Change[]
  /** The seq of the last change in the page, or `after` when empty. */
  last: Seq
}

export interface SnapshotRequest {
  after: string | null
  limit?: number
  epoch?: string
  signal?: AbortSignal
}

export interface SnapshotPage {
  epoch: string
  /** The head the rows were read at. */
  head: Seq
  rows: StateRow[]
  last: string | null
  done: boolean
}

export interface RowsPage {
  epoch: string
  head: Seq
  rows: StateRow[]
}

/** Children of digest tree nodes (digest/digest-tree.ts): `nodes` are indexes at `level`. */
export interface DigestRequest {
  /** 0 … TREE_DEPTH - 1: the level of the nodes whose children are asked for. */
  level: number
  nodes: number[]
  epoch?: string
  signal?: AbortSignal
}

export interface DigestPage {
  epoch: string
  /** The position the digest is exact at (the source's digestSeq, brought up to date first). */
  seq: Seq
  head: Seq
  minSeq: Seq
  level: number
  /** Each asked-for node with its count and sum and its 16 children, all read at `seq`. */
  nodes: Array<{ index: number; node: DigestNode; children: DigestNode[] }>
}

export interface KeysRequest {
  buckets: number[]
  epoch?: string
  signal?: AbortSignal
}

export interface KeysListing {
  epoch: string
  /** The position of the first lists; later ones may be read further on (each is exact at its own). */
  seq: Seq
  /** The oldest seq the log keeps: the highest seen, final once `lists` is exhausted. */
  minSeq: Seq
  /** One list per asked-for bucket, in the order asked, streamed (bounded memory). */
  lists: AsyncIterable<BucketList>
}

/** What a FeedSource has exchanged so far (HTTP: bytes of requests and responses, headers included). */
export interface Traffic {
  requests: number
  bytesSent: number
  bytesReceived: number
}

export interface FeedSource {
  /** Where the source is, for messages (no credentials). */
  readonly description: string
  info(feed: string, signal?: AbortSignal): Promise<FeedInfo>
  changes(feed: string, request: ChangesRequest): Promise<ChangesPage>
  snapshot(feed: string, request: SnapshotRequest): Promise<SnapshotPage>
  rows(feed: string, keys: string[], signal?: AbortSignal): Promise<RowsPage>
  /** For reconciliation: digest tree nodes' children, one level per request. */
  digest(feed: string, request: DigestRequest): Promise<DigestPage>
  /** For reconciliation: the `(key, seq, hash)` lists of leaf buckets. */
  keys(feed: string, request: KeysRequest): Promise<KeysListing>
  /** Counters of what was exchanged, for reconciliation reports (absent: not measured). */
  traffic?(): Traffic
  /**
   * The snapshot from `request.after` on, page by page as `snapshot` answers, fetched ahead as the
   * source sees fit (`expectedRows`: the feed's size, when known). Absent: `snapshot`, one page ahead.
   */
  snapshotPages?(feed: string, request: SnapshotRequest & { expectedRows?: number }): AsyncIterable<SnapshotPage>
}

/** A bootstrap's snapshot pages from any source: its own `snapshotPages`, else one page ahead. */
export function snapshotPages(source: FeedSource, feed: string, request: SnapshotRequest & { expectedRows?: number }): AsyncIterable<SnapshotPage> {
  if (source.snapshotPages) return source.snapshotPages(feed, request)
  const { expectedRows: _, ...req } = request
  return snapshotOneAhead(source, feed, req)
}

/** `snapshot` page after page, the next one requested while the caller handles the current one. */
export async function* snapshotOneAhead(source: FeedSource, feed: string, request: SnapshotRequest): AsyncGenerator<SnapshotPage> {
  const fetch = (after: string | null) => {
    const page = source.snapshot(feed, { ...request, after })
    page.catch(() => {}) // awaited below; until then a failure must not count as unhandled
    return page
  }
  let next: Promise<SnapshotPage> | undefined = fetch(request.after)
  while (next) {
    const page: SnapshotPage = await next
    next = page.done || page.last === null ? undefined : fetch(page.last)
    yield page
  }
}
