import type { FastifyInstance } from 'fastify'
import { tmpdir } from 'node:os'
import { Readable } from 'node:stream'
import { BadRequestError, BusyError } from '../../errors.js'
import { COMPRESSIONS, DEFAULT_COMPRESSION, EXPORT_MEDIA_TYPE, type Compression } from '../../export/export-format.js'
import { prepareExport } from '../../export/exporter.js'
import { LocalFeedSource } from '../../transport/local-feed-source.js'
import { EPOCH_HEADER, HEAD_HEADER } from '../http-protocol.js'
import { textParam, type Query } from '../query.js'
import { checkEpoch, clientGone, type RouteContext } from './context.js'

/**
 * `GET /v1/feeds/:feed/export?compression=gzip|br&epoch=E`: the feed's state at one position as an
 * export file (docs/export-format.md). The server first copies the feed into a scratch file under
 * the OS's temporary folder (TMPDIR), reading in short chunks while the owner writes, then streams
 * the file out; the status and the headers (`tidemark-head` is the file's position) come once the
 * copy is consistent, so a failure before that is an ordinary error answer. Unsigned: a signed
 * file is made with `tidemark export <url> … --key`, which holds the key on the client's side.
 */
/** Seconds a refused export is told to wait: an export of a large feed takes a while. */
const EXPORT_RETRY_S = 10

export function exportRoute(app: FastifyInstance, ctx: RouteContext): void {
  app.get<{ Params: { feed: string }; Querystring: Query }>('/v1/feeds/:feed/export', async (request, reply) => {
    const { feed } = request.params
    const compression = textParam(request.query, 'compression') ?? DEFAULT_COMPRESSION
    if (!COMPRESSIONS.includes(compression as Compression)) {
      throw new BadRequestError(`query parameter "compression" must be one of ${COMPRESSIONS.join(', ')}, got ${JSON.stringify(compression)}`, { details: { parameter: 'compression' } })
    }
    checkEpoch(await ctx.store.getFeed(feed), textParam(request.query, 'epoch'))
    // Each export holds a scratch copy of the feed and its reads until the file is sent: a cap
    // keeps a burst of them from filling the disk and the memory. The slot is freed when the
    // response is over, sent or not.
    const release = ctx.exports.take()
    if (!release) {
      throw new BusyError(
        `this feed server is making ${ctx.exports.size} exports already (its limit): ask again in ${EXPORT_RETRY_S} s, or raise the limit (tidemark serve --limit exports=N)`,
        EXPORT_RETRY_S,
      )
    }
    reply.raw.once('close', release)
    // A client that hangs up stops the copy; the scratch file goes with it.
    const prepared = await prepareExport({
      source: new LocalFeedSource(ctx.store),
      feed,
      scratchDir: tmpdir(),
      compression: compression as Compression,
      signal: clientGone(reply),
      logger: ctx.logger,
    })
    const { header } = prepared
    reply
      .header(EPOCH_HEADER, header.epoch)
      .header(HEAD_HEADER, String(header.position))
      .header('cache-control', 'no-store')
      .header('content-disposition', `attachment; filename="${feed}-${header.position}.tidemark"`)
      .type(EXPORT_MEDIA_TYPE)
    return reply.send(Readable.from(prepared.body, { objectMode: false }))
  })
}
