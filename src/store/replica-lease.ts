import { hostname } from 'node:os'

/**
 * The lease on a replica: two replicators must never both write one replica, so whoever writes it
 * holds a claim recorded in its row (a random id per store instance, the process id, the host and
 * an expiry). A claim is refused while another holder's lease runs and that holder may still be
 * alive: on another host we cannot tell, so only the expiry frees it; on this host a dead process
 * id frees it at once, so a replicator that crashed is replaced without waiting.
 */
export interface LeaseOwner {
  id: string
  pid: number
  host: string
  /** ms since the Unix epoch. */
  expires: number
}

export type Takeover = 'expired' | 'dead-process'

export interface LeaseCheck {
  /** Another owner whose claim still stands: the claim must be refused. */
  holder: LeaseOwner | null
  /** Set when a previous owner's claim is being taken over, and why. */
  takeover: Takeover | null
}

export const DEFAULT_LEASE_MS = 15_000

export function checkLease(owner: LeaseOwner | null, self: string, now: number, host: string = hostname()): LeaseCheck {
  if (owner === null || owner.id === self) return { holder: null, takeover: null }
  if (owner.expires <= now) return { holder: null, takeover: 'expired' }
  if (owner.host !== host || pidAlive(owner.pid)) return { holder: owner, takeover: null }
  return { holder: null, takeover: 'dead-process' }
}

/** Whether a process id is alive on this host (EPERM: it is, but belongs to another user). */
export function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

export function describeOwner(owner: LeaseOwner): string {
  return `pid ${owner.pid} on host ${owner.host} (lease until ${new Date(owner.expires).toISOString()})`
}
