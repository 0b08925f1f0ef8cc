import { BadRequestError, ConflictError } from '../errors.js'
import type { StoredChange, StoredRow } from '../protocol/encoded.js'
import { LIMITS } from '../protocol/limits.js'
import type { Change, Json, Seq, StateRow } from '../protocol/types.js'
import type { BootstrapProgress, RepairFix, ReplicaState } from './replica-store.js'
import type { LeaseOwner } from './replica-lease.js'

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
export function changeText(change: Change): string | null {
  // Checked at run time too: a change may come from JavaScript or a broker, past the type's promise.
  const c = change as { seq: Seq; key: string; op: string; data?: Json | undefined }
  if (c.op === 'delete') return null
  if (c.op !== 'upsert') throw new BadRequestError(`change ${c.seq} (key ${JSON.stringify(c.key)}) has an unknown op ${JSON.stringify(c.op)}`)
  const text = (change as Partial<StoredChange>).dataText
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

/** Refuses a repair unless the replica is still at the checkpoint it was compared at. */
export function checkRepairAt(name: string, r: ReplicaRow, at: { epoch: string; seq: Seq }): void {
  if (r.gen === 0 || r.epoch !== at.epoch || r.seq !== at.seq) {
    throw new ConflictError(
      `replica "${name}" moved to ${r.epoch ?? 'no copy'}@${r.seq} since it was compared at ${at.epoch}@${at.seq}: compare it again before repairing`,
    )
  }
}

/** The version a repair writes for a drifted key: the source's (a key it has no trace of is deleted "at" the checkpoint). */
export function repairVersion(fix: RepairFix, checkpoint: Seq): { seq: Seq; text: string | null } {
  const text = fix.row === null ? null : rowText(fix.row)
  const seq = fix.row?.seq ?? checkpoint
  if (seq > checkpoint) {
    throw new BadRequestError(`repair of key ${JSON.stringify(fix.key)}: the source's version ${seq} is above the checkpoint ${checkpoint}: that is lag, not drift`)
  }
  return { seq, text }
}
