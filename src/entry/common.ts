/** What every entry exports: the typed errors, their codes, and the protocol's types and limits. */
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
} from '../errors.js'
export type { ErrorCode } from '../errors.js'
export { PROTOCOL_VERSION } from '../protocol/types.js'
export type { BucketList, Change, DeleteChange, UpsertChange, JsonCompatible, DigestEntry, FeedInfo, Json, Op, Retention, Seq, SnapshotChunk, StateRow, TrackedTable, WriteOp } from '../protocol/types.js'
export { LIMITS } from '../protocol/limits.js'
