import type { FastifyReply } from 'fastify'
import { EpochChangedError } from '../../errors.js'
import type { FeedInfo } from '../../protocol/types.js'
import type { Logger, SourceStore } from '../../store/store.js'
import type { Authorize } from '../auth.js'
import type { ServerMetrics } from '../metrics.js'
import type { FastifyRequest } from 'fastify'
import type { RateLimiter, ServerLimits, Slots, SlotsPerClient } from '../server-limits.js'

/** What every route of one feed server shares. */
export interface RouteContext {
  readonly store: SourceStore
  readonly logger: Logger
  readonly metrics: ServerMetrics
  readonly authorize: Authorize | undefined
  /** Long-polls under way: aborted when the server closes, so that they answer at once. */
  readonly polls: Set<AbortController>
  /** True once close() began: new long-polls answer at once instead of waiting. */
  closing(): boolean
  readonly limits: ServerLimits
  /** One slot per export under way (limits.exports). */
  readonly exports: Slots
  /** One slot per long-poll waiting, in all and per client. */
  readonly longPolls: Slots
  readonly longPollsPerClient: SlotsPerClient
  readonly rate: RateLimiter
  /** Who a request is from, for the per-client limits: its bearer token, else its address. */
  clientOf(request: FastifyRequest): string
}

/** Throws EpochChangedError (409, with the actual epoch) when the client expects another epoch. */
export function checkEpoch(info: FeedInfo, expected: string | undefined): void {
  if (expected !== undefined && expected !== info.epoch) throw new EpochChangedError(info.name, expected, info.epoch)
}

/** Aborted when the client goes away before its response has been sent in full. */
export function clientGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController()
  const res = reply.raw
  if (res.destroyed && !res.writableEnded) {
    controller.abort(new Error('the client went away'))
    return controller.signal
  }
  res.once('close', () => {
    if (!res.writableEnded) controller.abort(new Error('the client went away'))
  })
  return controller.signal
}
