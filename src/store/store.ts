/**
 * The store port: what tidemark needs from a database, for a source (the owner's side). Backends
 * live in one folder each (`sqlite/`, later `postgres/`); nothing outside them knows which one
 * runs. Every method is async so that a networked backend fits the same contract.
 */
import type { DigestTree } from '../digest/digest-tree.js'
import type {
  BucketList,
  Change,
  FeedInfo,
  Retention,
  Seq,
  SnapshotChunk,
  StateRow,
  TrackedTable,
  WriteOp,
} from '../protocol/types.js'
import type { TokenTable } from './token-table.js'

export interface Logger {
  debug(obj: object, msg?: string): void
  info(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
  error(obj: object, msg?: string): void
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
}

export interface FeedOptions {
  retention?: Retention
}

export interface ChangesOptions {
  /** Stop at the first transaction boundary at or after this many changes. */
  limit?: number
  signal?: AbortSignal
}

export interface WaitOptions {
  timeoutMs: number
  signal?: AbortSignal
}

/** A digest leaf: the count of live rows in the bucket and the sum mod 2^128 of their hashes. */
export interface DigestLeaf {
  bucket: number
  count: number
  sum: bigint
}

export interface TrackOptions {
  table: string
  keyColumn: string
  /** Defaults to the table's name. */
  feed?: string
  retention?: Retention
}

export interface MaintainResult {
  /** Changes folded into the digest by this pass. */
  digested: number
  /** Changes dropped from the log by retention. */
  pruned: number
  /** Feeds whose epoch was reset because the store was found restored from an older copy. */
  reset: string[]
}

export interface SourceStore {
  /** Where the store is, for messages (never includes a password). */
  readonly location: string

  /** The feed server's bearer tokens, kept in the source so that every feed server over it agrees. */
  readonly tokens: TokenTable

  listFeeds(): Promise<FeedInfo[]>
  /** Throws UnknownFeedError. */
  getFeed(name: string): Promise<FeedInfo>
  /** Creates the feed if it does not exist (a new epoch); otherwise updates its options. */
  ensureFeed(name: string, options?: FeedOptions): Promise<FeedInfo>
  /** Gives the feed a new epoch: every replica re-bootstraps. */
  resetEpoch(name: string): Promise<FeedInfo>

  /** Writes one source transaction of puts and deletes (for scripts, the CLI and tests). Returns the seqs. */
  write(feed: string, ops: WriteOp[]): Promise<Seq[]>

  /**
   * The complete source transactions after `after`, in order, in batches. Throws LogTruncatedError
   * (before yielding) when `after` is older than the log keeps. Memory is bounded by one batch.
   */
  changes(feed: string, after: Seq, options?: ChangesOptions): AsyncIterable<Change[]>
  /** Resolves with the feed's head as soon as it is above `after`, or when the time is up. */
  waitForChanges(feed: string, after: Seq, options: WaitOptions): Promise<Seq>

  /** State rows (no tombstones) in key order after `after`, read at one position. */
  snapshot(feed: string, after: string | null, limit: number): Promise<SnapshotChunk>
  /** The current versions of the given keys, tombstones included; unknown keys are left out. */
  rows(feed: string, keys: string[]): Promise<{ head: Seq; rows: StateRow[] }>

  /**
   * The digest as a tree (digest/digest-tree.ts), exact as of the returned seq (brought up to date
   * first). It may be the store's own copy, kept up to date in memory: read what you need from it
   * before the next `await`, and do not change it.
   */
  digestTree(feed: string): Promise<{ seq: Seq; tree: DigestTree }>
  /** The digest's leaves with a non-zero count, exact as of the returned seq (brought up to date first). */
  digestLeaves(feed: string): Promise<{ seq: Seq; leaves: DigestLeaf[] }>

  /**
   * The entries (tombstones included) of the given leaf buckets with each bucket's count and sum,
   * read at one position (`seq`, the digest's), for reconciliation. Callers ask for a bounded number
   * of buckets at a time (the feed server: 256).
   */
  bucketEntries(feed: string, buckets: number[]): Promise<{ seq: Seq; minSeq: Seq; lists: BucketList[] }>

  /** Installs capture on an existing table: every insert, update and delete lands in the feed. */
  track(options: TrackOptions): Promise<FeedInfo>
  /** Removes the capture; the feed and its log stay. */
  untrack(feed: string): Promise<void>

  /** Brings digests up to date, applies retention, detects a restore. Safe to call any time. */
  maintain(): Promise<MaintainResult>

  close(): Promise<void>
}
