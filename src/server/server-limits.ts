/**
 * What one feed server lets its clients take: time to send a request, connections held open,
 * concurrent expensive work. The defaults protect a small server from a client that is slow on
 * purpose or by accident; all are configurable (`createFeedServer({ limits })`, `tidemark serve
 * --limit-…`). The protocol's own bounds (query parameters, keys per request) are in
 * src/protocol/limits.ts; these are the server's, on top.
 */
import { BadRequestError } from '../errors.js'
import { LIMITS } from '../protocol/limits.js'
import { BODY_LIMIT } from './http-protocol.js'

export interface ServerLimits {
  /** The whole request — headers and body — must arrive within this many ms (Node's `requestTimeout`), else 408 and the connection is closed. */
  requestTimeoutMs: number
  /** The request's headers must arrive within this many ms (Node's `headersTimeout`): a client sending them byte by byte is cut off. */
  headersTimeoutMs: number
  /** An idle keep-alive connection is closed after this many ms. */
  keepAliveTimeoutMs: number
  /**
   * The longest silence on a connection mid-request or mid-response, in ms (a client that stops
   * reading an answer). Above the longest long-poll `wait`, which is silent by design.
   */
  idleTimeoutMs: number
  /** Largest request body, in bytes (`413 too-large` beyond). */
  bodyBytes: number
  /** `GET …/export`s under way at once (each copies the feed into a scratch file); beyond, `503 busy` with Retry-After. */
  exports: number
  /** Long-polls waiting at once, in all; beyond, `503 busy` with Retry-After. */
  longPolls: number
  /** Long-polls waiting at once per bearer token (requests without one count only towards `longPolls`). */
  longPollsPerClient: number
  /** Requests to /v1 per second per client, sustained (a bucket of `requestBurst`); beyond, `429 rate-limited` with Retry-After. */
  requestsPerSecond: number
  /** Requests a client may make at once above the sustained rate. */
  requestBurst: number
  /** Largest `limit` of a changes request this server answers (a larger one is answered with this many: fewer is always allowed). */
  changesLimit: number
  /** Largest `limit` of a snapshot chunk this server answers. */
  snapshotLimit: number
  /** Most keys in one `POST rows`; beyond, `413 too-large`. */
  rowsKeys: number
  /** Most buckets in one `POST keys`; beyond, `413 too-large`. */
  keysBuckets: number
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  requestTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
  keepAliveTimeoutMs: 72_000,
  idleTimeoutMs: LIMITS.waitMaxMs + 30_000,
  bodyBytes: BODY_LIMIT,
  exports: 2,
  longPolls: 1000,
  longPollsPerClient: 50,
  // Roomy for a replica reading as fast as it can (a long-poll answered at once is one request per
  // transaction page); a flood from one token or address is what it stops.
  requestsPerSecond: 5000,
  requestBurst: 10_000,
  changesLimit: LIMITS.changesMax,
  snapshotLimit: LIMITS.snapshotMax,
  rowsKeys: LIMITS.rowsMax,
  keysBuckets: LIMITS.keysBucketsMax,
}

const PROTOCOL_CAP = { changesLimit: LIMITS.changesMax, snapshotLimit: LIMITS.snapshotMax, rowsKeys: LIMITS.rowsMax, keysBuckets: LIMITS.keysBucketsMax }

/** The defaults with `given` on top, each checked: a limit that is not a positive whole number is a mistake, not "no limit". */
export function serverLimits(given: Partial<ServerLimits> = {}): ServerLimits {
  const limits = { ...DEFAULT_SERVER_LIMITS }
  for (const [name, value] of Object.entries(given) as Array<[keyof ServerLimits, number | undefined]>) {
    if (value === undefined) continue
    if (!(name in DEFAULT_SERVER_LIMITS)) throw new BadRequestError(`unknown server limit "${name}"`)
    if (!Number.isSafeInteger(value) || value <= 0) throw new BadRequestError(`server limit ${name} must be a positive whole number, got ${value}`)
    limits[name] = value
  }
  if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
    throw new BadRequestError(`headersTimeoutMs (${limits.headersTimeoutMs}) cannot exceed requestTimeoutMs (${limits.requestTimeoutMs}): the headers are part of the request`)
  }
  const above = (['changesLimit', 'snapshotLimit', 'rowsKeys', 'keysBuckets'] as const).find((n) => limits[n] > PROTOCOL_CAP[n])
  if (above) throw new BadRequestError(`server limit ${above} can be at most the protocol's ${PROTOCOL_CAP[above]}, got ${limits[above]}`)
  if (limits.idleTimeoutMs <= LIMITS.waitMaxMs) {
    throw new BadRequestError(`idleTimeoutMs (${limits.idleTimeoutMs}) must exceed the longest long-poll wait (${LIMITS.waitMaxMs} ms), which is silent by design`)
  }
  return limits
}

/**
 * A count of slots for one kind of work (exports; long-polls): `take()` gives a release function,
 * or undefined when all are taken. Releasing twice releases once.
 */
export class Slots {
  private used = 0

  constructor(readonly size: number) {}

  get inUse(): number {
    return this.used
  }

  take(): (() => void) | undefined {
    if (this.used >= this.size) return undefined
    this.used++
    let released = false
    return () => {
      if (released) return
      released = true
      this.used--
    }
  }
}

/**
 * Slots per client (long-polls per token): `take(client)` gives a release function, or undefined
 * when that client holds all of its slots. Clients holding none are forgotten.
 */
export class SlotsPerClient {
  private readonly used = new Map<string, number>()

  constructor(readonly size: number) {}

  take(client: string): (() => void) | undefined {
    const n = this.used.get(client) ?? 0
    if (n >= this.size) return undefined
    this.used.set(client, n + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      const left = (this.used.get(client) ?? 1) - 1
      if (left <= 0) this.used.delete(client)
      else this.used.set(client, left)
    }
  }
}

/**
 * A token bucket per client: `perSecond` requests sustained, `burst` at once. `take(client)` is 0
 * when the request may go, else the seconds until it could. The clock is passed in (tests do not
 * sleep). Buckets that have refilled are dropped when the map grows, so a flood of made-up tokens
 * cannot grow it without bound.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>()

  constructor(
    readonly perSecond: number,
    readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  take(client: string): number {
    const now = this.now()
    let bucket = this.buckets.get(client)
    if (!bucket) {
      if (this.buckets.size >= 10_000) this.sweep(now)
      bucket = { tokens: this.burst, at: now }
      this.buckets.set(client, bucket)
    }
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond)
    bucket.at = now
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1
      return 0
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.perSecond))
  }

  private sweep(now: number): void {
    for (const [client, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.perSecond >= this.burst) this.buckets.delete(client)
    }
  }
}
