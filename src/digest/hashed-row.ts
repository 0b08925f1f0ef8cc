import { StoredRow } from '../protocol/encoded.js'
import type { Seq } from '../protocol/types.js'

/**
 * A snapshot row with its digest hash and bucket already computed — by tidemark's own code, over
 * the very text the row carries (the snapshot prefetcher does it on another thread, so that the
 * replica's writer does not). Never built from what a server sent: a server cannot vouch for a
 * hash, only for data.
 */
export class HashedRow extends StoredRow {
  constructor(
    key: string,
    seq: Seq,
    dataText: string | null,
    /** H(key, seq, data), 16 bytes (a view into the page's shared buffer); null for a tombstone. */
    readonly hash: Buffer | null,
    readonly bucket: number,
  ) {
    super(key, seq, dataText)
  }
}
