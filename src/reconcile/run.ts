/**
 * What a reconciliation run is and what it found: recorded in the replica's store after every run
 * (`ReplicaStore.recordRun`) and shown by `tidemark status`.
 */
import type { Seq } from '../protocol/types.js'

export type ReconcileMode = 'verify' | 'repair'

/** Why a run happened. */
export type ReconcileTrigger = 'start' | 'schedule' | 'sla' | 'demand'

/**
 * - intact: the replica equals the source at its checkpoint (differences, if any, were lag);
 * - drift: drifted keys were found and left as they are (verify);
 * - repaired: drifted keys were found and repaired;
 * - rebootstrap: the source's history went back (restored from an older copy, epoch reset) or the
 *   log no longer reaches the checkpoint: the replica re-bootstraps instead;
 * - failed: the run could not check (the source unreachable, a tampered answer, …): see `error`.
 */
export type ReconcileOutcome = 'intact' | 'drift' | 'repaired' | 'rebootstrap' | 'failed'

/** How a key differs: the replica's copy differs from the source's, is missing, or should not be there. */
export type DriftKind = 'differs' | 'missing' | 'extra'

export interface DriftedKey {
  key: string
  kind: DriftKind
  /** The source's version (null: the source has no such key; hash null: a tombstone). */
  source: { seq: Seq; hash: string | null } | null
  /** The replica's version (null: the replica has no such key). */
  replica: { seq: Seq; hash: string } | null
}

/** What a run exchanged and compared, to show that it stayed small. */
export interface ReconcileCost {
  roundTrips: number
  bytesSent: number
  bytesReceived: number
  /** Digest tree nodes compared (both sides' counts and sums). */
  nodes: number
  /** Leaf buckets whose key lists were compared. */
  buckets: number
  /** Entries compared in those lists (both sides). */
  keys: number
}

export interface ReconcileRun {
  /** Set by the store when recorded. */
  id?: number
  trigger: ReconcileTrigger
  mode: ReconcileMode
  /** The replica's digest was recomputed from its rows first (`--deep`). */
  deep: boolean
  startedAt: number
  finishedAt: number
  outcome: ReconcileOutcome
  /** The replica's checkpoint and epoch during the run. */
  checkpoint: Seq
  epoch: string | null
  /** The source's digest position (the last one seen). */
  sourceSeq: Seq
  cost: ReconcileCost
  /** Keys found drifted, and how many of them were repaired. */
  drifted: number
  repaired: number
  /** Keys that differ only because the source is ahead: the log brings them. */
  lagging: number
  /** The first drifted keys (at most DRIFT_LISTED), with what differs. */
  drift: DriftedKey[]
  /** `--deep`: leaf buckets whose stored digest was wrong and rows whose stored hash was stale. */
  digestRepair?: { buckets: number; rows: number }
  /** For `failed` and `rebootstrap`: why. */
  error?: string
  /** The on-demand request this run answers. */
  requestId?: number
}

/** Drifted keys kept in a run's record (the rest are counted). */
export const DRIFT_LISTED = 100

/** An on-demand run asked of whichever process replicates the replica (`tidemark verify|repair`). */
export interface RunRequest {
  id: number
  mode: ReconcileMode
  deep: boolean
  requestedAt: number
}
