import type { FastifyInstance } from 'fastify'
import { DASHBOARD_HTML } from '../dashboard.js'
import { PROTOCOL_VERSION, type HealthResponse } from '../http-protocol.js'
import type { RouteContext } from './context.js'

/** `GET /healthz`, `GET /metrics` and the dashboard at `GET /`: for operators; /metrics needs a `report` token over every feed (route-table.ts). */
export function opsRoutes(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/healthz', async (_request, reply) => {
    const body: HealthResponse = { ok: true, protocol: PROTOCOL_VERSION }
    return reply.header('cache-control', 'no-store').send(body)
  })

  app.get('/metrics', async (_request, reply) => {
    const text = await ctx.metrics.registry.metrics()
    return reply.header('cache-control', 'no-store').type(ctx.metrics.registry.contentType).send(text)
  })

  app.get('/', async (_request, reply) => {
    return reply.type('text/html; charset=utf-8').send(DASHBOARD_HTML)
  })
}
