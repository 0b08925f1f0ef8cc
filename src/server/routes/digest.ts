import type { FastifyInstance, FastifyReply } from 'fastify'
import { BadRequestError } from '../../errors.js'
import { SourceDigests } from '../../digest/source-digest.js'
import { checkDigestRequest, encodeDigestAnswer } from '../../protocol/digest-wire.js'
import { LIMITS } from '../../protocol/limits.js'
import { JSON_TYPE } from '../http-protocol.js'
import { intParam, textParam, type Query } from '../query.js'
import type { RouteContext } from './context.js'

/**
 * `GET /v1/feeds/:feed/digest[?level=L&nodes=i,j,…]` and `POST /v1/feeds/:feed/digest`
 * `{"level":L,"nodes":[…]}`: digest tree nodes with their 16 children, all read at one position
 * (`seq`). Without a query: the root and its children, which is all an intact replica needs.
 */
export function digestRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const digests = new SourceDigests(ctx.store)

  app.get<{ Params: { feed: string }; Querystring: Query }>('/v1/feeds/:feed/digest', async (request, reply) => {
    const level = intParam(request.query, 'level', { min: 0, max: Number.MAX_SAFE_INTEGER, fallback: 0 })
    const text = textParam(request.query, 'nodes')
    if (text === undefined && level !== 0) {
      throw new BadRequestError(`give the nodes to expand at level ${level}: nodes=i,j,… (decimal indexes)`, { details: { parameter: 'nodes' } })
    }
    const nodes = text === undefined ? [0] : nodeList(text)
    const checked = checkDigestRequest(level, nodes, LIMITS.digestNodesGet)
    return answer(digests, request.params.feed, checked, textParam(request.query, 'epoch'), reply)
  })

  app.post<{ Params: { feed: string }; Querystring: Query; Body: unknown }>('/v1/feeds/:feed/digest', async (request, reply) => {
    const body = request.body
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new BadRequestError(`the body must be {"level": L, "nodes": [1 to ${LIMITS.digestNodesMax} node indexes]}`)
    }
    const { level, nodes } = body as Record<string, unknown>
    const checked = checkDigestRequest(level, nodes, LIMITS.digestNodesMax)
    return answer(digests, request.params.feed, checked, textParam(request.query, 'epoch'), reply)
  })
}

async function answer(
  digests: SourceDigests,
  feed: string,
  request: { level: number; nodes: number[] },
  epoch: string | undefined,
  reply: FastifyReply,
): Promise<FastifyReply> {
  const page = await digests.page(feed, request.level, request.nodes, epoch)
  return reply.header('cache-control', 'no-store').type(JSON_TYPE).send(encodeDigestAnswer(page))
}

/** `i,j,k`: decimal indexes only, like every number in a query. */
function nodeList(text: string): number[] {
  const parts = text.split(',')
  return parts.map((part) => {
    if (!/^\d{1,16}$/.test(part)) {
      throw new BadRequestError(`query parameter "nodes" must be decimal node indexes separated by commas, got ${JSON.stringify(text.slice(0, 200))}`, {
        details: { parameter: 'nodes' },
      })
    }
    return Number(part)
  })
}
