import type { FastifyInstance } from 'fastify'
import { Readable } from 'node:stream'
import { encodeRow } from '../../protocol/encoded.js'
import { LIMITS } from '../../protocol/limits.js'
import type { SnapshotChunk, StateRow } from '../../protocol/types.js'
import { EPOCH_HEADER, HEAD_HEADER, NDJSON_TYPE, SNAPSHOT_DONE_HEADER, SNAPSHOT_LAST_HEADER, type SnapshotEnd } from '../http-protocol.js'
import { intParam, textParam, type Query } from '../query.js'
import { checkEpoch, type RouteContext } from './context.js'

/** Rows per piece of the body handed to the stream. */
const ROWS_PER_WRITE = 500

/**
 * How much of the body is encoded ahead of the socket. The rows are in memory already (one read),
 * so encoding them ahead costs no more memory than their text: a replicator writes one chunk while
 * the next one arrives, and with only the socket's few hundred KB encoded ahead, the rest of that
 * next chunk waited for it to finish and was then encoded while it waited (a third of a bootstrap's
 * time, idle on both sides). Bounded, so that a chunk of huge rows still streams.
 */
const ENCODED_AHEAD_BYTES = 8 * 2 ** 20

/**
 * `GET /v1/feeds/:feed/snapshot?after=KEY&limit=L&epoch=E`: one chunk of the state in key order
 * (tombstones left out), read at one position, then an end line with that position (`head`), the
 * last key and whether the state is done.
 */
export function snapshotRoute(app: FastifyInstance, ctx: RouteContext): void {
  app.get<{ Params: { feed: string }; Querystring: Query }>('/v1/feeds/:feed/snapshot', async (request, reply) => {
    const { feed } = request.params
    const after = textParam(request.query, 'after')
    // The protocol's bounds are checked; the server may then answer fewer rows (done stays false).
    const limit = Math.min(ctx.limits.snapshotLimit, intParam(request.query, 'limit', { min: 1, max: LIMITS.snapshotMax, fallback: LIMITS.snapshotDefault }))
    const epoch = textParam(request.query, 'epoch')

    const info = await ctx.store.getFeed(feed)
    checkEpoch(info, epoch)
    const chunk = await ctx.store.snapshot(feed, after ?? null, limit)

    reply.header(EPOCH_HEADER, info.epoch).header(HEAD_HEADER, String(chunk.head)).header('cache-control', 'no-store').type(NDJSON_TYPE)
    // The rows are read already: say where the chunk ends before sending it (a prefetch hint).
    reply.header(SNAPSHOT_DONE_HEADER, String(chunk.done))
    if (chunk.last !== null) reply.header(SNAPSHOT_LAST_HEADER, encodeURIComponent(chunk.last))
    return reply.send(Readable.from(snapshotLines(chunk, info.epoch), { objectMode: false, highWaterMark: ENCODED_AHEAD_BYTES }))
  })
}

function* snapshotLines(chunk: SnapshotChunk, epoch: string): Generator<string> {
  const rows: StateRow[] = chunk.rows
  for (let i = 0; i < rows.length; i += ROWS_PER_WRITE) {
    let text = ''
    for (const row of rows.slice(i, i + ROWS_PER_WRITE)) text += `${encodeRow(row)}\n`
    yield text
  }
  const end: SnapshotEnd = { end: true, epoch, head: chunk.head, last: chunk.last, done: chunk.done, rows: chunk.rows.length }
  yield `${JSON.stringify(end)}\n`
}
