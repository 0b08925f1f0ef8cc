import type { FastifyInstance } from 'fastify'
import { Readable } from 'node:stream'
import { readBucketLists } from '../../digest/source-digest.js'
import { checkBuckets, encodeBucketList, type KeysEnd, type KeysHead } from '../../protocol/digest-wire.js'
import { LIMITS } from '../../protocol/limits.js'
import type { BucketList, Seq } from '../../protocol/types.js'
import { BadRequestError, TooLargeError } from '../../errors.js'
import { errorLine, logError, toTidemarkError } from '../http-errors.js'
import { EPOCH_HEADER, NDJSON_TYPE } from '../http-protocol.js'
import { textParam, type Query } from '../query.js'
import { checkEpoch, clientGone, type RouteContext } from './context.js'

type Chunk = { seq: Seq; minSeq: Seq; lists: BucketList[] }

/**
 * `POST /v1/feeds/:feed/keys` `{"buckets":[…]}`: the `(key, seq, hash)` lists of those leaf
 * buckets, tombstones included, as NDJSON: a first line with the position, one line per bucket in
 * the order asked, an end line. The store is read 256 buckets per short read, the next read only
 * once the socket has taken the last; the first read comes before the status, so that refusals
 * are statuses.
 */
export function keysRoute(app: FastifyInstance, ctx: RouteContext): void {
  app.post<{ Params: { feed: string }; Querystring: Query; Body: unknown }>('/v1/feeds/:feed/keys', async (request, reply) => {
    const { feed } = request.params
    const epoch = textParam(request.query, 'epoch')
    const body = request.body
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new BadRequestError(`the body must be {"buckets": [1 to ${LIMITS.keysBucketsMax} distinct bucket numbers]}`)
    }
    const buckets = checkBuckets((body as Record<string, unknown>).buckets)
    if (buckets.length > ctx.limits.keysBuckets) {
      throw new TooLargeError(`this feed server takes at most ${ctx.limits.keysBuckets} buckets per keys request, not ${buckets.length}: ask in smaller batches`)
    }

    const info = await ctx.store.getFeed(feed)
    checkEpoch(info, epoch)
    const gone = clientGone(reply)
    const iterator = readBucketLists(ctx.store, feed, buckets, gone)
    const first = await iterator.next()
    const chunk = first.value as Chunk
    const head: KeysHead = { epoch: info.epoch, seq: chunk.seq, minSeq: chunk.minSeq }
    reply.header(EPOCH_HEADER, info.epoch).header('cache-control', 'no-store').type(NDJSON_TYPE)
    return reply.send(Readable.from(keysLines(ctx, feed, head, chunk, iterator, gone), { objectMode: false }))
  })
}

async function* keysLines(
  ctx: RouteContext,
  feed: string,
  head: KeysHead,
  first: Chunk,
  rest: AsyncGenerator<Chunk>,
  gone: AbortSignal,
): AsyncGenerator<string> {
  let buckets = 0
  let entries = 0
  let minSeq = head.minSeq
  try {
    yield `${JSON.stringify(head)}\n`
    let chunk: Chunk | undefined = first
    while (chunk !== undefined) {
      let text = ''
      for (const list of chunk.lists) {
        text += `${encodeBucketList(list)}\n`
        buckets++
        entries += list.entries.length
      }
      minSeq = Math.max(minSeq, chunk.minSeq)
      yield text
      const next: IteratorResult<Chunk> = await rest.next()
      chunk = next.done ? undefined : next.value
    }
    const info = await ctx.store.getFeed(feed)
    const end: KeysEnd = { end: true, epoch: info.epoch, buckets, entries, minSeq }
    yield `${JSON.stringify(end)}\n`
  } catch (error) {
    if (gone.aborted) return
    const e = toTidemarkError(error)
    logError(ctx.logger, e, 'POST', `/v1/feeds/${feed}/keys`)
    // No end line after this: the client knows the listing is incomplete.
    yield errorLine(e)
  } finally {
    await rest.return(undefined)
  }
}
