import { BadRequestError, ConflictError } from '../../errors.js'
import type { Logger } from '../store.js'
import { checkLease, DEFAULT_LEASE_MS, describeOwner } from '../replica-lease.js'
import { checkReplicaName, ownerOf, type ReplicaRow } from '../replica-row.js'
import type { ClaimOptions } from '../replica-store.js'

/**
 * Who may write a replica (the rules of ReplicaStore.claim, renew and every write), decided in
 * memory from the replica's row: each backend reads the row, asks here, and runs the SQL the
 * answer names.
 */
export interface ClaimRequest {
  name: string
  feed: string
  source: string
  force: boolean
  leaseMs: number
}

/** What a claim on an existing replica does: take the lease, after emptying the copy when `rebind`. */
export interface ClaimDecision {
  rebind: boolean
}

/** The claim's arguments checked, with the defaults filled in. */
export function claimRequest(name: string, feed: string, source: string, options: ClaimOptions = {}): ClaimRequest {
  checkReplicaName(name)
  const { force = false, leaseMs = DEFAULT_LEASE_MS } = options
  if (!Number.isSafeInteger(leaseMs) || leaseMs < 1) throw new BadRequestError(`a lease must last a positive number of ms, got ${leaseMs}`)
  return { name, feed, source, force, leaseMs }
}

/**
 * Decides a claim on the replica's row `r` by store instance `self` (see ReplicaStore.claim): throws
 * ConflictError while another live holder has it, or when it is bound to another feed or source and
 * the claim is not forced; logs a rebind and a takeover.
 */
export function decideClaim(
  r: ReplicaRow,
  req: ClaimRequest,
  at: { self: string; host: string; now: number; location: string; logger: Logger },
): ClaimDecision {
  const { name, feed, source } = req
  const previous = ownerOf(r)
  const lease = checkLease(previous, at.self, at.now, at.host)
  if (lease.holder !== null) {
    throw new ConflictError(`replica "${name}" in ${at.location} is being replicated by ${describeOwner(lease.holder)}: stop it first`)
  }
  let rebind = false
  if (r.feed !== feed || r.source !== source) {
    const bound = `feed "${r.feed}" from ${r.source}`
    if (!req.force) {
      throw new ConflictError(
        `replica "${name}" in ${at.location} copies ${bound}, not feed "${feed}" from ${source}: ` +
          'use another replica name, or force the claim to rebind it (it will re-bootstrap)',
      )
    }
    rebind = true
    at.logger.warn(
      { replica: name, feed, source, was: { feed: r.feed, source: r.source } },
      `replica "${name}" rebound from ${bound} to feed "${feed}" from ${source}: it will re-bootstrap`,
    )
  }
  if (lease.takeover !== null && previous !== null) {
    at.logger.warn(
      { replica: name, pid: previous.pid, host: previous.host, reason: lease.takeover },
      `replica "${name}": taking over from pid ${previous.pid} on host ${previous.host} (${lease.takeover === 'expired' ? 'its lease expired' : 'that process is gone'})`,
    )
  }
  return { rebind }
}

export function logNewReplica(logger: Logger, req: ClaimRequest): void {
  logger.info({ replica: req.name, feed: req.feed, source: req.source }, `new replica "${req.name}" of feed "${req.feed}" at ${req.source}`)
}

/** Whether store instance `self` holds the claim recorded in the row (checked inside every write). */
export function holds(r: ReplicaRow | undefined, self: string): r is ReplicaRow {
  return r !== undefined && r.owner_id === self
}

/**
 * Why a write by a store instance that does not hold the claim is refused: no such replica, never
 * claimed here, or lost to another process (or released).
 */
export function lostClaim(name: string, location: string, r: ReplicaRow | undefined, claimedHere: boolean): Error {
  if (r === undefined) return new BadRequestError(`no replica "${name}" in ${location}: claim it first`)
  if (!claimedHere) return new ConflictError(`replica "${name}" in ${location} is not claimed by this replicator: claim it before writing`)
  const owner = ownerOf(r)
  return new ConflictError(
    `lost the claim on replica "${name}" in ${location}` +
      (owner ? `: it is now replicated by ${describeOwner(owner)}` : ': it was released') +
      '; this replicator stops so that only one process writes the replica',
  )
}

/** A read of a replica that is not in the store. */
export function unknownReplica(name: string, location: string): Error {
  return new BadRequestError(`no replica "${name}" in ${location}: list them with \`tidemark status\``)
}

/** Releases every claim a closing store holds; one that cannot be released (the database gone) is logged, and its lease lapses. */
export async function releaseAll(names: Iterable<string>, release: (name: string) => Promise<void>, logger: Logger): Promise<void> {
  for (const name of [...names]) {
    try {
      await release(name)
    } catch (error) {
      logger.warn({ replica: name, err: error }, `replica "${name}": could not release the claim`)
    }
  }
}
