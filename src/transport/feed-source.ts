/**
 * What a replica needs from its source: the feed's position, the log, the snapshot and rows by
 * key. The HTTP client (`http/http-feed-source.ts`) speaks protocol v1 to a feed server;
 * `local-feed-source.ts` reads a SourceStore in the same process (tests, the demo, benchmarks).
 */
import type { Change, FeedInfo, Seq, StateRow } from '../protocol/types.js'

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

export interface FeedSource {
  /** Where the source is, for messages (no credentials). */
  readonly description: string
  info(feed: string, signal?: AbortSignal): Promise<FeedInfo>
  changes(feed: string, request: ChangesRequest): Promise<ChangesPage>
  snapshot(feed: string, request: SnapshotRequest): Promise<SnapshotPage>
  rows(feed: string, keys: string[], signal?: AbortSignal): Promise<RowsPage>
}
