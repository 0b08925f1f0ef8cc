import type { FastifyInstance } from 'fastify'
import { TidemarkError } from '../../errors.js'
import type { FeedInfo } from '../../protocol/types.js'
import { bearerToken } from '../auth.js'
import { routeAccess } from '../route-table.js'
import type { RouteContext } from './context.js'

/** `GET /v1/feeds` and `GET /v1/feeds/:feed`: FeedInfo. */
export function feedsRoutes(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/v1/feeds', async (request, reply) => {
    const feeds = await ctx.store.listFeeds()
    const authorize = ctx.authorize
    let visible: FeedInfo[] = feeds
    if (authorize) {
      // A token scoped to some feeds lists only those: the others are `forbidden` to it.
      const token = bearerToken(request)
      const route = request.routeOptions.url ?? '/v1/feeds'
      const access = routeAccess('GET', route)
      const scopes = access !== undefined && 'scopes' in access ? access.scopes : []
      visible = []
      for (const f of feeds) {
        try {
          await authorize({ token, feed: f.name, route, scopes })
          visible.push(f)
        } catch (error) {
          if (!(error instanceof TidemarkError && error.code === 'forbidden')) throw error
        }
      }
    }
    return reply.header('cache-control', 'no-store').send(visible)
  })

  app.get<{ Params: { feed: string } }>('/v1/feeds/:feed', async (request, reply) => {
    return reply.header('cache-control', 'no-store').send(await ctx.store.getFeed(request.params.feed))
  })
}
