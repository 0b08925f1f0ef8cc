/** Bounds the protocol enforces; docs/protocol.md states the same numbers. */
export const LIMITS = {
  /** Largest key, in UTF-8 bytes. */
  keyBytes: 512,
  /** Largest serialized `data` of one change, in bytes. */
  dataBytes: 1024 * 1024,
  /**
   * Longest line of a `changes` or `snapshot` listing a client accepts: the largest `data` plus
   * room for the largest key escaped (512 bytes as `\u00XX` each is 3072) and the other fields.
   */
  lineBytes: 1024 * 1024 + 4096,
  /** Default and largest `limit` of a changes request (whole transactions may exceed it). */
  changesDefault: 1000,
  changesMax: 100_000,
  /** Default and largest `limit` of a snapshot chunk. */
  snapshotDefault: 1000,
  snapshotMax: 10_000,
  /** Longest `wait` of a long-poll, in ms. */
  waitMaxMs: 60_000,
  /** Most keys in one `POST rows` request. */
  rowsMax: 10_000,
  /** Most digest nodes in one `GET digest` query, and in one `POST digest` body. */
  digestNodesGet: 64,
  digestNodesMax: 4096,
  /** Most buckets in one `POST keys` request: all 65,536 leaves. */
  keysBucketsMax: 65_536,
  /** Buckets a source store reads per call (one short read transaction each). */
  bucketsPerRead: 256,
  /** Feed names: letters, digits, `_`, `-`, `.`; 1–64 characters, not starting with a dot or dash. */
  feedName: /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/,
} as const
