/**
 * The shapes of tidemark's data, shared by stores, the feed server and replicas.
 * docs/protocol.md documents them as they travel over HTTP.
 */

export const PROTOCOL_VERSION = 1 as const

/** A position in a feed: the seq of a change. 0 means "before the first change". */
export type Seq = number

export type Op = 'upsert' | 'delete'

/** A JSON value as tidemark stores and hashes it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/**
 * A value whose type says it is JSON, interfaces included: `Json`'s object form has an index
 * signature, which an `interface Customer { … }` does not (TS2345), so the writers' `put` checks the
 * value member by member instead. Optional members may be left out (JSON drops them); functions,
 * bigints and symbols are refused. The value is checked again at run time.
 */
export type JsonCompatible<T> = T extends Json
  ? T
  : T extends bigint | symbol | ((...args: never[]) => unknown) | undefined
    ? never
    : T extends readonly unknown[]
      ? { [I in keyof T]: JsonMember<T[I]> }
      : T extends object
        ? { [K in keyof T]: JsonMember<T[K]> }
        : never

/** A member of a JSON object or array: JSON, or absent (an optional member). */
type JsonMember<T> = T extends undefined ? T : JsonCompatible<T>

interface ChangeFields {
  seq: Seq
  key: string
  /** The seq of the last change of the source transaction this change belongs to. */
  tx: Seq
  /** Commit time at the source, ms since the Unix epoch (the writer's clock). */
  ts: number
}

/** A key written: `data` is its new value. */
export interface UpsertChange extends ChangeFields {
  op: 'upsert'
  data: Json
}

/** A key deleted: no `data`. */
export interface DeleteChange extends ChangeFields {
  op: 'delete'
  data?: undefined
}

/** One change of a feed. After `change.op === 'upsert'`, `change.data` is the key's new value. */
export type Change = UpsertChange | DeleteChange

export interface FeedInfo {
  name: string
  epoch: string
  /** Highest committed seq; 0 for a feed with no change yet. */
  head: Seq
  /** Oldest seq the log still keeps; `head + 1` when the log is empty. */
  minSeq: Seq
  /** Live keys (tombstones not counted), as of `digestSeq`. */
  keys: number
  /** The digest (and `keys`) is exact as of this seq; the indexer brings it to `head`. */
  digestSeq: Seq
  retention: Retention
  /** Set when the feed is filled by table capture (`tidemark track`). */
  tracked?: TrackedTable
}

export interface Retention {
  /** Keep at least the newest N changes. */
  changes?: number
  /** Keep at least the changes of the last N milliseconds. */
  ageMs?: number
}

export interface TrackedTable {
  table: string
  keyColumn: string
  columns: string[]
  /** False after `untrack`: the feed keeps its history but no longer captures the table. */
  active: boolean
}

/** A key's current version in the source's state. `data` absent means a tombstone (deleted). */
export interface StateRow {
  key: string
  seq: Seq
  data?: Json
  deleted?: true
}

export interface SnapshotChunk {
  /** The head when this chunk was read: its rows are exact as of that position. */
  head: Seq
  rows: StateRow[]
  /** The last key of this chunk, to pass as `after` for the next one; null when empty. */
  last: string | null
  /** True when no key follows `last`. */
  done: boolean
}

/**
 * A key's entry in a digest bucket, for reconciliation: the seq of the version held and its hash
 * H(key, seq, data) (digest/row-hash.ts); `hash` null is a tombstone (not in the digest, listed so
 * that a delete newer than a replica's checkpoint is told apart from drift).
 */
export interface DigestEntry {
  key: string
  seq: Seq
  hash: bigint | null
}

/** One leaf bucket's entries in key order, with the bucket's count and sum read at the same position. */
export interface BucketList {
  bucket: number
  count: number
  sum: bigint
  entries: DigestEntry[]
}

/** One write of the source API: upsert with data, or delete. */
export type WriteOp = { op: 'upsert'; key: string; data: Json } | { op: 'delete'; key: string }
