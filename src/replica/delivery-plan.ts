import type { Change, Seq } from '../protocol/types.js'

export interface DeliveryPlan {
  /** The changes to apply now: contiguous from checkpoint + 1, whole transactions only. */
  apply: Change[]
  /** The checkpoint after applying them (the last applied transaction's end). */
  upTo: Seq
  /** Changes already taken: at or below the checkpoint, or repeated inside the delivery (redeliveries). */
  duplicates: number
  /** Something did not follow on (a gap, a reordering, a partial transaction): pull from the log. */
  gap: boolean
  /** The highest seq the delivery mentions: the log must be pulled at least this far. */
  highest: Seq
}

/**
 * Decides what of a delivery can be applied as it is. The log is the truth: anything that does not
 * follow the checkpoint exactly — a gap, a reordering, a transaction cut short — is not applied
 * from the delivery but pulled from the log instead.
 */
export function planDelivery(checkpoint: Seq, changes: readonly Change[]): DeliveryPlan {
  let expected = checkpoint + 1
  let duplicates = 0
  let gap = false
  let highest = checkpoint
  const prefix: Change[] = []
  let whole = 0
  for (const c of changes) {
    if (c.seq > highest) highest = c.seq
    if (gap) continue
    // At or below the checkpoint, or repeated inside the delivery (a message redelivered and
    // merged with its first delivery): a seq names one change of the epoch, already taken.
    if (c.seq < expected) {
      duplicates++
      continue
    }
    if (c.seq !== expected || c.tx < c.seq) {
      // A gap, a reordering, or a change that claims to end a transaction before itself.
      gap = true
      continue
    }
    prefix.push(c)
    expected++
    if (c.seq === c.tx) whole = prefix.length
  }
  const apply = prefix.slice(0, whole)
  const upTo = whole > 0 ? (apply[whole - 1] as Change).seq : checkpoint
  // A tail that is not a whole transaction is a gap too: the rest must come from the log.
  if (prefix.length > whole) gap = true
  return { apply, upTo, duplicates, gap, highest }
}
