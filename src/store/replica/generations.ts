import { BadRequestError } from '../../errors.js'
import { DIGEST_BITS } from '../../digest/row-hash.js'
import type { Seq } from '../../protocol/types.js'
import { progressOf, type ReplicaRow } from '../replica-row.js'
import type { BootstrapProgress } from '../replica-store.js'

/**
 * The generation rules of a replica (see ReplicaStore.beginBootstrap, finishBootstrap, apply and
 * collectGarbage), decided in memory from its row.
 */

/** A new generation above every one present (garbage included: it starts empty). */
export function nextGeneration(r: ReplicaRow, highestRowGen: number | null | undefined): number {
  return Math.max(r.gen, progressOf(r)?.gen ?? 0, r.previous_gen ?? 0, highestRowGen ?? 0) + 1
}

export function newProgress(gen: number, epoch: string, s0: Seq, now: number): BootstrapProgress {
  return { gen, epoch, s0, afterKey: null, snapshotDone: false, readHead: s0, seq: s0, startedAt: now }
}

/** The bootstrap in progress; refused when there is none. */
export function bootstrapping(r: ReplicaRow): BootstrapProgress {
  const p = progressOf(r)
  if (p === null) throw new BadRequestError(`replica "${r.name}" has no bootstrap in progress: begin one first`)
  return p
}

/** Records a snapshot chunk in the progress: the log must then be applied at least as far as any chunk was read. */
export function chunkWritten(p: BootstrapProgress, chunk: { afterKey: string | null; readHead: Seq; done: boolean }): void {
  p.afterKey = chunk.afterKey
  p.readHead = Math.max(p.readHead, chunk.readHead)
  p.snapshotDone = chunk.done
}

/**
 * Refuses to make a bootstrap current before its snapshot is all copied and the log applied up to
 * the highest head a chunk was read at (before that the copy is no state the source ever had).
 */
export function checkComplete(name: string, p: BootstrapProgress): void {
  if (!p.snapshotDone || p.seq < p.readHead) {
    throw new BadRequestError(
      `the bootstrap of replica "${name}" is not complete (snapshot ${p.snapshotDone ? 'done' : `copied up to key ${JSON.stringify(p.afterKey)}`}, ` +
        `log applied to ${p.seq} of at least ${p.readHead}): finish copying before making it current`,
    )
  }
}

/**
 * The generation the hook's diff starts from at the swap: the current copy, or after a rebind (the
 * copy emptied to generation 0) the old source's copy kept for that, so the consumer's tables move
 * from the old state to the new one at once.
 */
export function diffBase(r: ReplicaRow): number {
  return r.gen === 0 ? (r.previous_gen ?? 0) : r.gen
}

/** The generations garbage collection keeps: the current one, the one being built, the one a rebind kept. */
export function keptGenerations(r: ReplicaRow): number[] {
  return [r.gen, progressOf(r)?.gen ?? r.gen, r.previous_gen ?? r.gen]
}

/** Refuses a live apply to a replica without a copy: generation 0 stays empty, which is what tells a replicator to bootstrap. */
export function checkHasCopy(name: string, location: string, r: ReplicaRow): void {
  if (r.gen === 0) throw new BadRequestError(`replica "${name}" in ${location} has no copy yet: bootstrap it before applying changes`)
}

/** Refuses a bucket number that is no leaf of the digest. */
export function checkBuckets(buckets: number[]): void {
  for (const b of buckets) {
    if (!Number.isSafeInteger(b) || b < 0 || b >= 2 ** DIGEST_BITS) throw new BadRequestError(`bucket ${b} is not a leaf bucket (0 to ${2 ** DIGEST_BITS - 1})`)
  }
}
