import type { FastifyInstance } from 'fastify'
import { Readable } from 'node:stream'
import { BusyError } from '../../errors.js'
import { bearerToken } from '../auth.js'
import { encodeChange } from '../../protocol/encoded.js'
import { LIMITS } from '../../protocol/limits.js'
import type { Change, Seq } from '../../protocol/types.js'
import { errorLine, logError, toTidemarkError } from '../http-errors.js'
import { EPOCH_HEADER, HEAD_HEADER, NDJSON_TYPE, type ChangesEnd } from '../http-protocol.js'
import { intParam, seqParam, textParam, type Query } from '../query.js'
import { checkEpoch, clientGone, type RouteContext } from './context.js'

interface Listing {
  iterator: AsyncIterator<Change[]>
  first: IteratorResult<Change[]>
}

/**
 * `GET /v1/feeds/:feed/changes?after=S&limit=L&wait=MS&epoch=E`: the complete source transactions
 * after S as NDJSON, closed by an end line. The first batch is read before the status is sent, so
 * that `log-truncated` (and any other refusal) is an HTTP status, not a line in a 200 body.
 */
export function changesRoute(app: FastifyInstance, ctx: RouteContext): void {
  app.get<{ Params: { feed: string }; Querystring: Query }>('/v1/feeds/:feed/changes', async (request, reply) => {
    const { feed } = request.params
    const after = seqParam(request.query, 'after')
    // The protocol's bounds are checked; the server may then answer fewer (a client asks again).
    const limit = Math.min(ctx.limits.changesLimit, intParam(request.query, 'limit', { min: 1, max: LIMITS.changesMax, fallback: LIMITS.changesDefault }))
    const wait = intParam(request.query, 'wait', { min: 0, max: LIMITS.waitMaxMs, fallback: 0, unit: 'ms' })
    const epoch = textParam(request.query, 'epoch')

    const info = await ctx.store.getFeed(feed)
    checkEpoch(info, epoch)
    const gone = clientGone(reply)
    let head = info.head
    let listing = await openListing(ctx, feed, after, limit, gone)

    // Live: nothing after `after` yet. A replica ahead of the head (after > head) is answered at
    // once instead: the end line's lower head is what it needs to see.
    if (listing.first.done && wait > 0 && after === info.head && !ctx.closing()) {
      // Per token only: clients without one cannot be told apart (many replicas share an address).
      const release = takeLongPoll(ctx, bearerToken(request) === undefined ? undefined : ctx.clientOf(request))
      reply.raw.once('close', release)
      const stop = new AbortController()
      const onGone = (): void => stop.abort(gone.reason)
      gone.addEventListener('abort', onGone, { once: true })
      ctx.polls.add(stop)
      ctx.metrics.longPolls.inc()
      try {
        head = await ctx.store.waitForChanges(feed, after, { timeoutMs: wait, signal: stop.signal })
      } catch (error) {
        // Aborted: the client went away, or the server is closing (then answer with what there is).
        if (!stop.signal.aborted) throw error
      } finally {
        ctx.metrics.longPolls.dec()
        ctx.polls.delete(stop)
        gone.removeEventListener('abort', onGone)
      }
      if (gone.aborted) {
        // Nobody to answer: tell fastify the response is taken care of.
        reply.hijack()
        return
      }
      listing = await openListing(ctx, feed, after, limit, gone)
    }

    reply.header(EPOCH_HEADER, info.epoch).header(HEAD_HEADER, String(head)).header('cache-control', 'no-store').type(NDJSON_TYPE)
    return reply.send(Readable.from(changeLines(ctx, feed, after, listing, gone), { objectMode: false }))
  })
}

/** A long-poll's slots, in all and for its client; BusyError (503, Retry-After) when either is full. */
function takeLongPoll(ctx: RouteContext, client: string | undefined): () => void {
  const all = ctx.longPolls.take()
  if (!all) throw new BusyError(`this feed server holds ${ctx.longPolls.size} long-polls already (its limit): ask again in ${LONG_POLL_RETRY_S} s`, LONG_POLL_RETRY_S)
  if (client === undefined) return all
  const mine = ctx.longPollsPerClient.take(client)
  if (!mine) {
    all()
    throw new BusyError(
      `this client holds ${ctx.longPollsPerClient.size} long-polls on this feed server already (its limit per token): ask again in ${LONG_POLL_RETRY_S} s`,
      LONG_POLL_RETRY_S,
    )
  }
  return () => {
    mine()
    all()
  }
}

/** Seconds a refused long-poll is told to wait. */
const LONG_POLL_RETRY_S = 1

async function openListing(ctx: RouteContext, feed: string, after: Seq, limit: number, signal: AbortSignal): Promise<Listing> {
  const iterator = ctx.store.changes(feed, after, { limit, signal })[Symbol.asyncIterator]()
  return { iterator, first: await iterator.next() }
}

/**
 * The body, one chunk per batch the store reads (so memory stays at one batch, and a slow client
 * slows the reads down: Readable.from pulls the next batch only when the socket has taken the last).
 */
async function* changeLines(ctx: RouteContext, feed: string, after: Seq, listing: Listing, gone: AbortSignal): AsyncGenerator<string> {
  let last = after
  let next = listing.first
  try {
    while (!next.done) {
      const batch = next.value
      if (batch.length > 0) {
        let chunk = ''
        for (const change of batch) chunk += `${encodeChange(change)}\n`
        last = (batch[batch.length - 1] as Change).seq
        ctx.metrics.changesStreamed.inc({ feed }, batch.length)
        yield chunk
      }
      next = await listing.iterator.next()
    }
    const end = await ctx.store.getFeed(feed)
    const line: ChangesEnd = { end: true, epoch: end.epoch, head: end.head, last }
    yield `${JSON.stringify(line)}\n`
  } catch (error) {
    if (gone.aborted) return
    const e = toTidemarkError(error)
    logError(ctx.logger, e, 'GET', `/v1/feeds/${feed}/changes`)
    // No end line after this: the client knows the listing is incomplete.
    yield errorLine(e)
  } finally {
    if (!next.done) await listing.iterator.return?.()
  }
}
