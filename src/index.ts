/** tidemark's public entry: everything a library user may import, and nothing else. */
export {
  TidemarkError,
  BadRequestError,
  UnknownFeedError,
  LogTruncatedError,
  EpochChangedError,
  TooLargeError,
  NotAStoreError,
  StoreUnavailableError,
  BrokerUnavailableError,
  ProtocolError,
  NotAFeedServerError,
  ConflictError,
  HistoryRewoundError,
  ApplyFailedError,
  SchemaTooNewError,
  DigestDamagedError,
  ERROR_CODES,
  EXIT,
  EXIT_CODE,
  HTTP_STATUS,
  isTidemarkError,
} from './errors.js'
export type { ErrorCode } from './errors.js'

export { PROTOCOL_VERSION } from './protocol/types.js'
export type { BucketList, Change, DeleteChange, UpsertChange, JsonCompatible, DigestEntry, FeedInfo, Json, Op, Retention, Seq, SnapshotChunk, StateRow, TrackedTable, WriteOp } from './protocol/types.js'
export { LIMITS } from './protocol/limits.js'

export type { FeedWriter } from './source/feed-writer.js'
export type { SourceStore, Logger, FeedOptions, TrackOptions, MaintainResult, DigestLeaf } from './store/store.js'
export { openSourceStore, openReplicaStore } from './store/open.js'
export type { OpenStoreOptions } from './store/open.js'
export { SqliteSource, SqliteFeedWriter } from './store/sqlite/sqlite-source.js'
export { SqliteSourceStore } from './store/sqlite/sqlite-source-store.js'

export { createFeedServer } from './server/feed-server.js'
export type { FeedServer, FeedServerOptions, AuthRequest } from './server/feed-server.js'
export { PROTOCOL_HEADER, EPOCH_HEADER, HEAD_HEADER, NDJSON_TYPE } from './server/http-protocol.js'
export type { ChangesEnd, SnapshotEnd, ErrorLine, RowsResponse } from './server/http-protocol.js'

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
} from './transport/feed-source.js'
export type { ChangeTransport, Delivery, SubscribeOptions } from './transport/transport.js'
export { HttpFeedSource } from './transport/http/http-feed-source.js'
export type { HttpFeedSourceOptions } from './transport/http/http-feed-source.js'
export { LocalFeedSource } from './transport/local-feed-source.js'
export { LongPollTransport } from './transport/http/long-poll-transport.js'
export type { LongPollOptions } from './transport/http/long-poll-transport.js'
export { Backoff } from './transport/backoff.js'
// Brokers: the relay and the transports; a broker client is loaded only when brokerSink / brokerTransport asks for it.
export { createRelay, Relay } from './relay/relay.js'
export type { RelayOptions, RelaySink, RelayStatus } from './relay/relay.js'
export { relayFeeds } from './relay/relay-feeds.js'
export type { RelayFeedsOptions, RunningRelays } from './relay/relay-feeds.js'
export { brokerKind, brokerSink, brokerTransport } from './transport/broker/broker-choice.js'
export type { BrokerChoice, BrokerKind, SinkSettings } from './transport/broker/broker-choice.js'
export { FallbackTransport } from './transport/broker/fallback-transport.js'
export type { FallbackOptions } from './transport/broker/fallback-transport.js'
export { BROKER_FORMAT, BROKER_HEADERS } from './transport/broker/broker-message.js'
export type { NatsStreamSettings, NatsConnectOptions } from './transport/nats/nats-settings.js'
export type { NatsTransportOptions } from './transport/nats/nats-transport.js'
export type { NatsSinkOptions } from './transport/nats/nats-sink.js'
export type { AmqpQueueSettings, AmqpConnectOptions } from './transport/amqp/amqp-settings.js'
export type { AmqpTransportOptions } from './transport/amqp/amqp-transport.js'
export type { AmqpSinkOptions } from './transport/amqp/amqp-sink.js'
export type { BackoffOptions } from './transport/backoff.js'

export { prepareExport } from './export/exporter.js'
export type { ExportOptions, ExportProgress, PreparedExport } from './export/exporter.js'
export { checkExport, importExport } from './export/importer.js'
export type { CheckOptions, CheckedExport, ImportOptions, ImportProgress, ImportResult } from './export/importer.js'
export { openExport } from './export/export-reader.js'
export type { ExportInput, ExportReader, ReadExportOptions, ReadResult, SignatureCheck } from './export/export-reader.js'
export { writeExport } from './export/export-writer.js'
export { EXPORT_FORMAT, EXPORT_VERSION, EXPORT_MEDIA_TYPE, ExportFileError } from './export/export-format.js'
export type { Compression, ExportHeader, ExportTrailer, ExportFileProblem } from './export/export-format.js'

export { createReplica, Replica } from './replica/replica.js'
export type { ReplicaOptions, ReplicaStatus, ReconcileSchedule } from './replica/replica.js'
export { reconcile } from './reconcile/reconcile.js'
export type { ReconcileOptions } from './reconcile/reconcile.js'
export type {
  ReconcileRun,
  ReconcileMode,
  ReconcileTrigger,
  ReconcileOutcome,
  ReconcileCost,
  DriftedKey,
  DriftKind,
  RunRequest,
} from './reconcile/run.js'
export { DigestTree } from './digest/digest-tree.js'
export type { DigestNode } from './digest/digest-tree.js'
export type { Phase, PhaseChange } from './replica/phase.js'
export type { ApplyHook, ApplyContext, RepairFix, RehashReport, ReplicaStore, ReplicaState, BootstrapProgress, ClaimOptions } from './store/replica-store.js'
export { SqliteReplicaStore } from './store/sqlite/sqlite-replica-store.js'
export type { SqliteReplicaStoreOptions } from './store/sqlite/sqlite-replica-store.js'
export { PostgresSource, PostgresFeedWriter } from './store/postgres/postgres-source.js'
export { PostgresSourceStore } from './store/postgres/postgres-source-store.js'
export type { PostgresSourceStoreOptions } from './store/postgres/postgres-source-store.js'
export { PostgresReplicaStore } from './store/postgres/postgres-replica-store.js'
export type { PostgresReplicaStoreOptions } from './store/postgres/postgres-replica-store.js'
export type { PgQueryable } from './store/postgres/connection.js'
