/** `tidemark/replica`: a replica and how it reaches its source (HTTP, long-poll, in-process), reconciliation. */
export * from './common.js'
export type {
  FeedSource,
  ChangesRequest,
  ChangesPage,
  SnapshotRequest,
  SnapshotPage,
  RowsPage,
  DigestRequest,
  DigestPage,
  KeysRequest,
  KeysListing,
  Traffic,
} from '../transport/feed-source.js'
export type { ChangeTransport, Delivery, SubscribeOptions } from '../transport/transport.js'
export { HttpFeedSource } from '../transport/http/http-feed-source.js'
export type { HttpFeedSourceOptions } from '../transport/http/http-feed-source.js'
export { LocalFeedSource } from '../transport/local-feed-source.js'
export { LongPollTransport } from '../transport/http/long-poll-transport.js'
export type { LongPollOptions } from '../transport/http/long-poll-transport.js'
export { Backoff } from '../transport/backoff.js'
export type { BackoffOptions } from '../transport/backoff.js'
export { createReplica, Replica } from '../replica/replica.js'
export type { ReplicaOptions, ReplicaStatus, ReconcileSchedule } from '../replica/replica.js'
export { reconcile } from '../reconcile/reconcile.js'
export type { ReconcileOptions } from '../reconcile/reconcile.js'
export type {
  ReconcileRun,
  ReconcileMode,
  ReconcileTrigger,
  ReconcileOutcome,
  ReconcileCost,
  DriftedKey,
  DriftKind,
  RunRequest,
} from '../reconcile/run.js'
export { DigestTree } from '../digest/digest-tree.js'
export type { DigestNode } from '../digest/digest-tree.js'
