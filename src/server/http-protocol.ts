/**
 * The feed server's side of protocol v1 on HTTP: header names, media types, bounds and the shapes
 * of the lines that close a listing. docs/protocol.md is the reference; replicas import these
 * types so that both ends read the same words.
 */
import type { ErrorCode } from '../errors.js'
import type { FeedInfo, Seq, StateRow } from '../protocol/types.js'

export { PROTOCOL_VERSION } from '../protocol/types.js'

/** Every response carries `tidemark-protocol: 1`. */
export const PROTOCOL_HEADER = 'tidemark-protocol'
/** The feed's epoch when a listing starts (changes and snapshot). */
export const EPOCH_HEADER = 'tidemark-epoch'
/** The feed's head when a listing starts (changes and snapshot). */
export const HEAD_HEADER = 'tidemark-head'
/**
 * On a snapshot chunk: its end line's `last` (percent-encoded, absent when null) and `done`, sent
 * ahead of the rows so that a client may ask for the next chunk while this one arrives. A hint
 * only: the end line is what counts.
 */
export const SNAPSHOT_LAST_HEADER = 'tidemark-snapshot-last'
export const SNAPSHOT_DONE_HEADER = 'tidemark-snapshot-done'
export const NDJSON_TYPE = 'application/x-ndjson'
export const JSON_TYPE = 'application/json; charset=utf-8'

/** Largest request body (`POST rows`): 10,000 keys of 512 bytes, escaped, fit with room to spare. */
export const BODY_LIMIT = 16 * 1024 * 1024

export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_PORT = 7480

/** The last line of a complete `changes` listing. A body without it was cut. */
export interface ChangesEnd {
  end: true
  /** The feed's epoch when the listing ended. */
  epoch: string
  /** The feed's head when the listing ended (may be below `last`'s request `after`). */
  head: Seq
  /** Seq of the last change sent, or the request's `after` when none was. */
  last: Seq
}

/** The last line of a complete `snapshot` chunk. */
export interface SnapshotEnd {
  end: true
  epoch: string
  /** The head the chunk was read at: its rows are exact as of this seq. */
  head: Seq
  /** The last key sent (pass it as `after` for the next chunk); the request's `after` (or null) when none was. */
  last: string | null
  /** True when no key follows `last`. */
  done: boolean
  /** How many rows the chunk sent: a row lost from the middle is noticed. */
  rows: number
}

/** A line that ends a listing the server could not finish; it is never followed by an end line. */
export interface ErrorLine {
  error: ErrorCode
  message: string
  [detail: string]: unknown
}

/** The body of an error response. */
export type ErrorBody = ErrorLine

export interface RowsResponse {
  epoch: string
  head: Seq
  rows: StateRow[]
}

export interface HealthResponse {
  ok: true
  protocol: 1
}

export type FeedsResponse = FeedInfo[]
