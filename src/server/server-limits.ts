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
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  requestTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
  keepAliveTimeoutMs: 72_000,
  idleTimeoutMs: LIMITS.waitMaxMs + 30_000,
  bodyBytes: BODY_LIMIT,
  exports: 2,
}

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
