import { BadRequestError } from '../errors.js'
import type { FeedInfo, TrackedTable } from '../protocol/types.js'
import type { FeedOptions } from './store.js'

/** A feed as both backends keep it (tidemark_feeds / tidemark.feeds), column for column. */
export interface FeedRow {
  name: string
  epoch: string
  head: number
  min_seq: number
  digest_seq: number
  keys: number
  retain_changes: number | null
  retain_ms: number | null
  tracked: string | null
}

export function toFeedInfo(r: FeedRow): FeedInfo {
  const info: FeedInfo = {
    name: r.name,
    epoch: r.epoch,
    head: r.head,
    minSeq: r.min_seq,
    keys: r.keys,
    digestSeq: r.digest_seq,
    retention: {},
  }
  if (r.retain_changes !== null) info.retention.changes = r.retain_changes
  if (r.retain_ms !== null) info.retention.ageMs = r.retain_ms
  if (r.tracked !== null) info.tracked = JSON.parse(r.tracked) as TrackedTable
  return info
}

export function checkRetention(options: FeedOptions): void {
  const r = options.retention
  if (!r) return
  if (r.changes !== undefined && (!Number.isSafeInteger(r.changes) || r.changes < 1)) {
    throw new BadRequestError(`retention must keep at least 1 change, got ${r.changes}`)
  }
  if (r.ageMs !== undefined && (!Number.isSafeInteger(r.ageMs) || r.ageMs < 1)) {
    throw new BadRequestError(`retention age must be a positive number of ms, got ${r.ageMs}`)
  }
}
