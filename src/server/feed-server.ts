/**
 * The feed server: protocol v1 over HTTP in front of one source store (docs/protocol.md).
 * It holds no state of its own beyond metrics and the long-polls under way, so several of them can
 * serve one store; it never closes the store it was given.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo } from 'node:net'
import { BadRequestError } from '../errors.js'
import { silentLogger, type Logger, type SourceStore } from '../store/store.js'
import { bearerToken, type AuthRequest } from './auth.js'
import { sendError } from './http-errors.js'
import { BODY_LIMIT, DEFAULT_HOST, DEFAULT_PORT, PROTOCOL_HEADER, PROTOCOL_VERSION } from './http-protocol.js'
import { MaintenanceLoop } from './maintenance.js'
import { ServerMetrics } from './metrics.js'
import { changesRoute } from './routes/changes.js'
import { exportRoute } from './routes/export.js'
import type { RouteContext } from './routes/context.js'
import { digestRoutes } from './routes/digest.js'
import { feedsRoutes } from './routes/feeds.js'
import { keysRoute } from './routes/keys.js'
import { opsRoutes } from './routes/ops.js'
import { rowsRoute } from './routes/rows.js'
import { snapshotRoute } from './routes/snapshot.js'

export type { AuthRequest } from './auth.js'

export interface FeedServerOptions {
  store: SourceStore
  /** pino loggers satisfy it. Silent by default. */
  logger?: Logger
  /** Called before every /v1 request; throw TidemarkError('unauthorized' | 'forbidden') to refuse. Default: allow all. */
  authorize?: (request: AuthRequest) => void | Promise<void>
  /** How often to run store.maintain() (digest catch-up, retention, restore detection), in ms; default 1000; 0 = never. */
  maintainEveryMs?: number
}

export interface FeedServer {
  /** The fastify instance, for `inject()` in tests. */
  readonly app: FastifyInstance
  /** Listens on host (default 127.0.0.1) and port (default 7480; 0 = any free port); resolves with the base URL. */
  listen(options: { host?: string; port?: number }): Promise<{ url: string }>
  /** Stops maintenance, answers waiting long-polls, closes the server. Does NOT close the store. */
  close(): Promise<void>
}

export async function createFeedServer(options: FeedServerOptions): Promise<FeedServer> {
  const { store, authorize } = options
  const logger = options.logger ?? silentLogger
  const metrics = new ServerMetrics(store)
  const polls = new Set<AbortController>()
  let closing = false
  const ctx: RouteContext = { store, logger, metrics, authorize, polls, closing: () => closing }

  const app = Fastify({
    logger: false,
    bodyLimit: BODY_LIMIT,
    // Requests still arriving on open connections while closing are served (long-polls answer at
    // once); fastify's own 503 would not be in the protocol's error shape.
    return503OnClosing: false,
    // Errors fastify raises before routing (a malformed URL, a too-long parameter).
    frameworkErrors: (error, _request, reply) => {
      sendError(reply, error, logger)
    },
  })

  app.addHook('onRequest', async (request, reply) => {
    reply.header(PROTOCOL_HEADER, String(PROTOCOL_VERSION))
    const started = process.hrtime.bigint()
    const res = reply.raw
    res.once('close', () => {
      const status = res.writableEnded ? String(res.statusCode) : 'aborted'
      metrics.observe(request.method, request.routeOptions.url ?? 'unmatched', status, Number(process.hrtime.bigint() - started) / 1e9)
    })
    const route = request.routeOptions.url
    if (authorize && route?.startsWith('/v1/')) {
      const feed = (request.params as { feed?: string } | undefined)?.feed
      await authorize({ token: bearerToken(request), feed, route })
    }
  })

  app.setErrorHandler((error, _request, reply) => sendError(reply, error, logger))
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?', 1)[0]
    return sendError(reply, new BadRequestError(`no such route: ${request.method} ${path}`), logger, 404)
  })

  feedsRoutes(app, ctx)
  changesRoute(app, ctx)
  snapshotRoute(app, ctx)
  rowsRoute(app, ctx)
  digestRoutes(app, ctx)
  keysRoute(app, ctx)
  exportRoute(app, ctx)
  opsRoutes(app, ctx)
  await app.ready()

  const maintenance = new MaintenanceLoop(store, options.maintainEveryMs ?? 1000, logger)
  maintenance.start()

  let closed: Promise<void> | undefined
  return {
    app,
    async listen({ host = DEFAULT_HOST, port = DEFAULT_PORT }) {
      await app.listen({ host, port })
      const address = app.server.address() as AddressInfo
      const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
      const url = `http://${shown}:${address.port}`
      logger.info({ url, store: store.location }, `feed server listening on ${url}`)
      return { url }
    },
    close() {
      closed ??= (async () => {
        closing = true
        for (const poll of polls) poll.abort(new Error('the feed server is closing'))
        await maintenance.stop()
        await app.close()
      })()
      return closed
    },
  }
}
