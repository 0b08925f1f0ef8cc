import { BadRequestError } from '../errors.js'
import type { StoredChange, StoredRow } from '../protocol/encoded.js'
import { LIMITS } from '../protocol/limits.js'
import type { Change, Seq, StateRow } from '../protocol/types.js'
import type { BootstrapProgress, ReplicaState } from './replica-store.js'
import type { LeaseOwner } from './sqlite/replica-lease.js'

/**
 * A replica's row as both backends keep it (tidemark_replica_replicas / tidemark.replica_replicas),
 * and what both replica stores do alike with it and with the changes and rows they are given.
 */
export interface ReplicaRow {
  name: string
  feed: string
  source: string
  epoch: string | null
  seq: number
  gen: number
  keys: number
  bootstrap: string | null
  bootstrap_keys: number
  previous_gen: number | null
  applied_at: number | null
  source_head: number
  source_head_at: number | null
  behind_since: number | null
  owner_id: string | null
  owner_pid: number | null
  owner_host: string | null
  owner_expires: number | null
}

/** `data`'s JSON text as the source sent it (kept by StoredChange), or serialized; null for a delete. */
export function changeText(c: Change): string | null {
  if (c.op === 'delete') return null
  if (c.op !== 'upsert') throw new BadRequestError(`change ${c.seq} (key ${JSON.stringify(c.key)}) has an unknown op ${JSON.stringify(c.op)}`)
  const text = (c as Partial<StoredChange>).dataText
  if (typeof text === 'string') return text
  if (c.data === undefined) throw new BadRequestError(`change ${c.seq} (key ${JSON.stringify(c.key)}) is an upsert without data`)
  return JSON.stringify(c.data)
}

export function rowText(r: StateRow): string | null {
  const text = (r as Partial<StoredRow>).dataText
  if (typeof text === 'string') return text
  if (r.deleted || r.data === undefined) return null
  return JSON.stringify(r.data)
}

export function checkUpTo(c: Change, upTo: Seq): void {
  if (c.seq > upTo) {
    throw new BadRequestError(`change ${c.seq} is above the position ${upTo} it is applied up to: pass whole source transactions`)
  }
}

export function checkReplicaName(name: unknown): void {
  if (typeof name !== 'string' || !LIMITS.feedName.test(name)) {
    throw new BadRequestError(
      `invalid replica name ${JSON.stringify(name)}: use 1–64 letters, digits, "_", "-" or "." (not first)`,
    )
  }
}

export function ownerOf(r: ReplicaRow): LeaseOwner | null {
  if (r.owner_id === null) return null
  return { id: r.owner_id, pid: r.owner_pid ?? 0, host: r.owner_host ?? '', expires: r.owner_expires ?? 0 }
}

export function progressOf(r: ReplicaRow): BootstrapProgress | null {
  return r.bootstrap === null ? null : (JSON.parse(r.bootstrap) as BootstrapProgress)
}

export function toState(r: ReplicaRow): ReplicaState {
  return {
    name: r.name,
    feed: r.feed,
    source: r.source,
    epoch: r.epoch,
    seq: r.seq,
    gen: r.gen,
    keys: r.keys,
    bootstrap: progressOf(r),
    appliedAt: r.applied_at,
    sourceHead: r.source_head,
    sourceHeadAt: r.source_head_at,
    behindSince: r.behind_since,
  }
}
