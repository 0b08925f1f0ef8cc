import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { BadRequestError, TooLargeError } from '../../errors.js'
import { encodeRow } from '../../protocol/encoded.js'
import { LIMITS } from '../../protocol/limits.js'
import { JSON_TYPE } from '../http-protocol.js'
import { textParam, type Query } from '../query.js'
import { checkEpoch, type RouteContext } from './context.js'

const RowsBody = z.object({
  keys: z
    .array(z.string().min(1, 'a key must be a non-empty string'))
    .min(1, 'send at least one key')
    .max(LIMITS.rowsMax, `send at most ${LIMITS.rowsMax} keys per request`),
})

/**
 * `POST /v1/feeds/:feed/rows` `{ "keys": [...] }`: the current versions of those keys, tombstones
 * included, unknown keys left out, all read at one position (`head`). Stored JSON is spliced into
 * the body as it is, not parsed and serialized again.
 */
export function rowsRoute(app: FastifyInstance, ctx: RouteContext): void {
  app.post<{ Params: { feed: string }; Querystring: Query; Body: unknown }>('/v1/feeds/:feed/rows', async (request, reply) => {
    const { feed } = request.params
    const epoch = textParam(request.query, 'epoch')
    const parsed = RowsBody.safeParse(request.body)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]
      const where = issue && issue.path.length > 0 ? ` (at ${issue.path.join('.')})` : ''
      throw new BadRequestError(`the body must be {"keys": [1 to ${LIMITS.rowsMax} non-empty strings]}: ${issue?.message ?? 'wrong shape'}${where}`)
    }
    if (parsed.data.keys.length > ctx.limits.rowsKeys) {
      throw new TooLargeError(`this feed server takes at most ${ctx.limits.rowsKeys} keys per rows request, not ${parsed.data.keys.length}: ask in smaller batches`)
    }
    const keys = [...new Set(parsed.data.keys)]

    const info = await ctx.store.getFeed(feed)
    checkEpoch(info, epoch)
    const { head, rows } = await ctx.store.rows(feed, keys)

    let body = `{"epoch":${JSON.stringify(info.epoch)},"head":${head},"rows":[`
    for (let i = 0; i < rows.length; i++) body += (i > 0 ? ',' : '') + encodeRow(rows[i]!)
    body += ']}'
    return reply.header('cache-control', 'no-store').type(JSON_TYPE).send(body)
  })
}
