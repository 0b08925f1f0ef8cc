/**
 * The store port for a replica: a consumer's copy of one feed's state, with its checkpoint and
 * digest, written in the same transaction as the data (and as the consumer's projection hook).
 * One store (one database) may hold replicas of several feeds, each under its own name.
 *
 * `Tx` is what a projection hook receives to write the consumer's own tables inside the apply
 * transaction: the backend's connection (e.g. the better-sqlite3 Database for SQLite).
 */
import type { ReconcileMode, ReconcileRun, RunRequest } from '../reconcile/run.js'
import type { BucketList, Change, Seq, StateRow } from '../protocol/types.js'
import type { DigestTree } from '../digest/digest-tree.js'
import type { DigestLeaf } from './store.js'

/**
 * Why the hook sees a change: the log (`apply`), the difference between two copies when a
 * bootstrap swaps one in (`bootstrap`), or a drifted key set right (`repair`: `seq` is the source's
 * version, at or below the checkpoint).
 */
export interface ApplyContext {
  cause: 'apply' | 'bootstrap' | 'repair'
}

/**
 * Runs inside the apply transaction, once per change that takes effect. Throwing rolls it back.
 * On SQLite it must be synchronous (better-sqlite3 transactions cannot span an await); on
 * PostgreSQL it may return a promise, awaited before the next change.
 */
export type ApplyHook<Tx> = (change: Change, tx: Tx, context: ApplyContext) => void | Promise<void>

/** One drifted key set to the source's version: `row` null (or a tombstone) deletes it. */
export interface RepairFix {
  key: string
  row: StateRow | null
}

/** What `rehash` found: the stored digest and row hashes against the rows as they are. */
export interface RehashReport {
  rows: number
  /** Rows whose stored hash or bucket did not match their key, seq and data (edited outside tidemark). */
  staleRows: number
  /** Leaf buckets whose stored count or sum was wrong. */
  wrongBuckets: number
}

export interface BootstrapProgress {
  /** The generation being built; readers keep seeing the current one until the swap. */
  gen: number
  epoch: string
  /** The source's head when the bootstrap began: the log is applied from s0 + 1. */
  s0: Seq
  /** Last key copied from the snapshot (null: none yet). */
  afterKey: string | null
  snapshotDone: boolean
  /** Highest head any snapshot chunk was read at: the log must be applied at least this far. */
  readHead: Seq
  /** The log has been applied into the new generation up to here. */
  seq: Seq
  startedAt: number
}

export interface ReplicaState {
  /** The replica's name in its store (the feed's name unless given another). */
  name: string
  feed: string
  /** The source it copies (a URL without credentials). */
  source: string
  /** The current copy's epoch; null before the first bootstrap completes. */
  epoch: string | null
  /** The checkpoint: the copy equals the source's state at this seq. */
  seq: Seq
  /** The current generation (0 before the first bootstrap completes). */
  gen: number
  keys: number
  bootstrap: BootstrapProgress | null
  /** When the checkpoint last moved (ms since the Unix epoch). */
  appliedAt: number | null
  /** The highest source head this replica has heard of, and when. */
  sourceHead: Seq
  sourceHeadAt: number | null
  /** Since when the replica has been behind `sourceHead` (null: at the head). */
  behindSince: number | null
}

export interface ClaimOptions {
  /** Take over the replica even when it is bound to another source or feed. */
  force?: boolean
  /** How long the claim lasts without renewal (ms). */
  leaseMs?: number
}

export interface ReplicaStore<Tx = unknown> {
  readonly location: string

  /**
   * Claims replica `name` of `feed` at `source` for this process, creating it on first use. Refuses
   * (ConflictError) while another live replicator holds it, or when the name is bound to another
   * feed or source (unless `force`).
   */
  claim(name: string, feed: string, source: string, options?: ClaimOptions): Promise<ReplicaState>
  /** Extends the claim; throws ConflictError when it was lost to another process. */
  renew(name: string): Promise<void>
  release(name: string): Promise<void>

  state(name: string): Promise<ReplicaState | null>
  list(): Promise<ReplicaState[]>

  /** Starts (or restarts) building a new generation at the source's position `s0`. */
  beginBootstrap(name: string, epoch: string, s0: Seq): Promise<BootstrapProgress>
  /** Writes one snapshot chunk into the new generation and records the progress, in one transaction. */
  writeSnapshotChunk(name: string, rows: StateRow[], progress: { afterKey: string | null; readHead: Seq; done: boolean }): Promise<void>
  /** Applies whole source transactions of the log to the new generation (higher seq wins per key). */
  applyToBootstrap(name: string, changes: Change[], upTo: Seq): Promise<void>
  /**
   * Makes the new generation current at checkpoint (epoch, progress.seq) in one transaction. The
   * hook sees the difference between the old and the new copy as changes, so the consumer's own
   * tables move from one consistent state to the next at once.
   */
  finishBootstrap(name: string, hook?: ApplyHook<Tx>): Promise<ReplicaState>
  /**
   * Abandons the bootstrap in progress (an import that failed, or was cancelled): the current copy
   * and checkpoint stay exactly as they are, and the unfinished generation's rows go with the next
   * collectGarbage. Does nothing when no bootstrap is in progress.
   */
  cancelBootstrap(name: string): Promise<void>
  /** Drops generations that are no longer current (in short transactions). */
  collectGarbage(name: string): Promise<number>

  /**
   * Applies whole source transactions to the current generation and moves the checkpoint to
   * `upTo`, all in one transaction with the hook's writes. Changes at or below the checkpoint are
   * ignored. Throws ApplyFailedError (naming seq and key) when the hook throws.
   */
  apply(name: string, changes: Change[], upTo: Seq, hook?: ApplyHook<Tx>): Promise<ReplicaState>
  /** Records the source's head as last seen (for lag), without touching data. */
  noteSourceHead(name: string, head: Seq): Promise<void>

  /**
   * Sets drifted keys to the source's versions in the current generation, whatever seq the copy
   * holds, with the digest and the hook's writes, in one transaction. Refused (ConflictError)
   * unless the checkpoint is still `at`: a repair never moves the checkpoint, and never applies
   * what was compared at another position.
   */
  repair(name: string, fixes: RepairFix[], at: { epoch: string; seq: Seq }, hook?: ApplyHook<Tx>): Promise<number>
  /**
   * Recomputes every row's hash and bucket and the digest from the rows as they are (a deep
   * verify: rows or digest edited outside tidemark), and stores the corrected ones.
   */
  rehash(name: string): Promise<RehashReport>
  /** The entries of the given leaf buckets in the current copy, with each bucket's count and sum. */
  bucketEntries(name: string, buckets: number[]): Promise<BucketList[]>

  /** Records a reconciliation run (and answers its request, if any); keeps the last 100. */
  recordRun(name: string, run: ReconcileRun): Promise<number>
  /** The latest runs, newest first. */
  runs(name: string, limit?: number): Promise<ReconcileRun[]>
  /** Asks the process that replicates `name` for a run; returns the request's id. */
  requestRun(name: string, request: { mode: ReconcileMode; deep: boolean }): Promise<number>
  /** Takes the pending requests (each is returned once). */
  takeRunRequests(name: string): Promise<RunRequest[]>

  /** Reading the copy. */
  get(name: string, key: string): Promise<StateRow | undefined>
  rows(name: string, after: string | null, limit: number): Promise<StateRow[]>
  digestLeaves(name: string): Promise<{ seq: Seq; leaves: DigestLeaf[] }>
  /**
   * The current copy's digest as a tree, exact at the checkpoint `seq`. It may be the store's own
   * copy, kept up to date in memory while this store holds the claim: read it before the next
   * `await`, and do not change it.
   */
  digestTree(name: string): Promise<{ seq: Seq; tree: DigestTree }>

  close(): Promise<void>
}

/** A throwaway replica store (the export's staging copy): `dispose()` closes and deletes it. */
export interface ScratchReplicaStore {
  readonly store: ReplicaStore
  /** Where it is, for messages. */
  readonly location: string
  dispose(): Promise<void>
}
