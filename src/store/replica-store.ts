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

/**
 * A backend's replica store. Every rule below is written once, here, and decided by the I/O-free
 * modules of `src/store/replica/` that every backend calls (claim.ts, generations.ts,
 * version-writer.ts, generation-diff.ts, rehash.ts, digest-tree-cache.ts); a backend keeps only its
 * SQL and its way of running a transaction. The contract suite (test/store/contract/
 * replica-store-contract.ts) runs every rule on every backend.
 *
 * Copies live in generations: a bootstrap builds a new generation beside the current one (readers
 * keep seeing the current one) and `finishBootstrap` swaps it in; older generations go with
 * `collectGarbage`. Generation 0 is "no copy": a replica never bootstrapped, or emptied by a rebind.
 *
 * Version precedence: within a generation a key holds one version, and a version replaces the one
 * held only when its seq is higher (any version beats none); a delete removes the row, except while
 * bootstrapping, where it stays as a tombstone so that an older snapshot row cannot revive the key.
 * Only a repair sets a version whatever its seq. The digest (per leaf bucket, the count and sum of
 * the live rows' hashes) and the key count move with every row written, in the same transaction.
 */
export interface ReplicaStore<Tx = unknown> {
  readonly location: string

  /**
   * Claims replica `name` of `feed` at `source` for this store instance, creating it on first use.
   * Two replicators must never write one replica, so every write checks that the replica's row still
   * names this instance. Refused (ConflictError) while another holder's lease runs and it may be
   * alive: on another host only the lease's expiry frees it; on this host a dead process id frees it
   * at once (replica-lease.ts). Refused too when the name is bound to another feed or source, unless
   * `force`: that rebinds it to an empty copy (generation 0, so the replicator bootstraps afresh),
   * keeping the old copy until the swap so the hook's diff moves the consumer's tables from the old
   * source's state to the new one's at once. Names: 1–64 letters, digits, "_", "-" or "." (not first).
   */
  claim(name: string, feed: string, source: string, options?: ClaimOptions): Promise<ReplicaState>
  /** Extends the claim by its lease; throws ConflictError when it was lost to another process (or released). */
  renew(name: string): Promise<void>
  /** Gives the claim up (another replicator may claim at once). */
  release(name: string): Promise<void>

  state(name: string): Promise<ReplicaState | null>
  /** Every replica in the store (one store may hold several, each under its own name), by name. */
  list(): Promise<ReplicaState[]>

  /**
   * Starts (or restarts) building a new generation at the source's position `s0`: a generation above
   * every one present (garbage included), emptied first. Needs the claim.
   */
  beginBootstrap(name: string, epoch: string, s0: Seq): Promise<BootstrapProgress>
  /**
   * Writes one snapshot chunk into the new generation and records the progress, in one transaction
   * (so a bootstrap resumes after a crash or a reopen where it stopped). Rows go in by version
   * precedence (a key already there from the log keeps its higher seq). `readHead` raises the
   * position the log must then be applied up to.
   */
  writeSnapshotChunk(name: string, rows: StateRow[], progress: { afterKey: string | null; readHead: Seq; done: boolean }): Promise<void>
  /**
   * Applies whole source transactions of the log to the new generation by version precedence,
   * deletes as tombstones; changes at or below the progress's seq are skipped, one above `upTo` is
   * refused (BadRequestError: pass whole transactions).
   */
  applyToBootstrap(name: string, changes: Change[], upTo: Seq): Promise<void>
  /**
   * Makes the new generation current at checkpoint (epoch, progress.seq) in one transaction. Refused
   * (BadRequestError) unless the bootstrap is complete: the snapshot all copied and the log applied
   * at least up to the highest head any chunk was read at (before that the copy is no state the
   * source ever had). The hook sees the difference between the old copy and the new one as changes,
   * in key order (UTF-8 byte order, as the stores sort): a delete for a key only the old holds, an
   * upsert for a key new or at another seq; a hook that throws rolls the whole swap back.
   */
  finishBootstrap(name: string, hook?: ApplyHook<Tx>): Promise<ReplicaState>
  /**
   * Abandons the bootstrap in progress (an import that failed, or was cancelled): the current copy
   * and checkpoint stay exactly as they are, and the unfinished generation's rows go with the next
   * collectGarbage. Does nothing when no bootstrap is in progress.
   */
  cancelBootstrap(name: string): Promise<void>
  /**
   * Drops the rows and digests of generations that are no longer needed — all but the current one,
   * the one being built and the one a rebind keeps for its diff — in short transactions, so the
   * replicator goes on meanwhile. Returns the rows dropped.
   */
  collectGarbage(name: string): Promise<number>

  /**
   * Applies whole source transactions to the current generation and moves the checkpoint to `upTo`,
   * all in one transaction with the hook's writes. Changes at or below the checkpoint are ignored
   * (the same transaction twice has one effect); every change above it wins, and the hook sees each,
   * in order, a delete of a key the copy does not hold included (the consumer's tables may hold it).
   * Refused (BadRequestError) for a replica without a copy (generation 0: bootstrap first) and for a
   * change above `upTo`. Throws ApplyFailedError (naming seq and key) when the hook throws, and
   * nothing of the transaction stays.
   */
  apply(name: string, changes: Change[], upTo: Seq, hook?: ApplyHook<Tx>): Promise<ReplicaState>
  /** Records the source's head as last seen (for lag and `behindSince`), without touching data. Needs the claim. */
  noteSourceHead(name: string, head: Seq): Promise<void>

  /**
   * Sets drifted keys to the source's versions in the current generation, whatever seq the copy
   * holds, with the digest and the hook's writes, in one transaction; a key already right is left
   * alone (and not shown to the hook). A fix without a row deletes the key "at" the checkpoint; a
   * source version above the checkpoint is refused (that is lag, not drift). Refused (ConflictError)
   * unless the checkpoint is still `at`: a repair never moves the checkpoint, and never applies what
   * was compared at another position. Returns the keys changed.
   */
  repair(name: string, fixes: RepairFix[], at: { epoch: string; seq: Seq }, hook?: ApplyHook<Tx>): Promise<number>
  /**
   * Recomputes every live row's hash and bucket from its key, seq and data (a deep verify: rows or
   * digest edited outside tidemark) and stores the ones that differ; the digest is summed from them
   * and replaced when any bucket was wrong; the key count is taken from the rows.
   */
  rehash(name: string): Promise<RehashReport>
  /**
   * The entries of the given leaf buckets in the current copy, each bucket's in key order, with its
   * count and sum. A row without a stored hash (written outside tidemark) is left out: only rehash
   * sees it. A bucket outside the digest's leaves is refused.
   */
  bucketEntries(name: string, buckets: number[]): Promise<BucketList[]>

  /** Records a reconciliation run (and answers its request, if any); keeps the last 100. */
  recordRun(name: string, run: ReconcileRun): Promise<number>
  /** The latest runs, newest first. */
  runs(name: string, limit?: number): Promise<ReconcileRun[]>
  /** Asks the process that replicates `name` for a run; returns the request's id. */
  requestRun(name: string, request: { mode: ReconcileMode; deep: boolean }): Promise<number>
  /** Takes the pending requests, oldest first (each is returned once). */
  takeRunRequests(name: string): Promise<RunRequest[]>

  /** A key of the current copy (undefined: none; a replica not in the store is refused). */
  get(name: string, key: string): Promise<StateRow | undefined>
  /** The current copy's rows with keys above `after`, in key order (UTF-8 bytes), `limit` of them. */
  rows(name: string, after: string | null, limit: number): Promise<StateRow[]>
  /** The current copy's non-empty digest leaves in bucket order, exact at the checkpoint `seq` (read in one transaction). */
  digestLeaves(name: string): Promise<{ seq: Seq; leaves: DigestLeaf[] }>
  /**
   * The current copy's digest as a tree, exact at the checkpoint `seq`. While this store instance
   * holds the claim it may be the store's own copy, kept up to date in memory with each committed
   * write (nobody else writes the replica then; a write whose outcome is unknown drops it): read it
   * before the next `await`, and do not change it. Without the claim it is built from the leaves on
   * each call.
   */
  digestTree(name: string): Promise<{ seq: Seq; tree: DigestTree }>

  /** Releases every claim this instance holds, and closes what the store opened itself. */
  close(): Promise<void>
}

/** A throwaway replica store (the export's staging copy): `dispose()` closes and deletes it. */
export interface ScratchReplicaStore {
  readonly store: ReplicaStore
  /** Where it is, for messages. */
  readonly location: string
  dispose(): Promise<void>
}
