/**
 * The feed server: protocol v1 over HTTP in front of one source store (docs/protocol.md).
 * It holds no state of its own beyond metrics and the long-polls under way, so several of them can
 * serve one store; it never closes the store it was given.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import type { AddressInfo, Socket } from 'node:net'
import { createSecureContext, type Server as TlsServer } from 'node:tls'
import { BadRequestError, BusyError, TooLargeError } from '../errors.js'
import { silentLogger, type Logger, type SourceStore } from '../store/store.js'
import { bearerToken, type AuthRequest } from './auth.js'
import { answerClientError } from './client-errors.js'
import { sendError } from './http-errors.js'
import { DEFAULT_HOST, DEFAULT_PORT, PROTOCOL_HEADER, PROTOCOL_VERSION } from './http-protocol.js'
import { parseJsonBody } from './json-body.js'
import { RateLimiter, serverLimits, Slots, SlotsPerClient, type ServerLimits } from './server-limits.js'
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
import { routeAccess } from './route-table.js'
import { snapshotRoute } from './routes/snapshot.js'

export type { AuthRequest } from './auth.js'
export type { ServerLimits } from './server-limits.js'

export interface FeedServerOptions {
  store: SourceStore
  /** pino loggers satisfy it. Silent by default. */
  logger?: Logger
  /** Called before every /v1 request; throw TidemarkError('unauthorized' | 'forbidden') to refuse. Default: allow all. */
  authorize?: (request: AuthRequest) => void | Promise<void>
  /** How often to run store.maintain() (digest catch-up, retention, restore detection), in ms; default 1000; 0 = never. */
  maintainEveryMs?: number
  /** Timeouts, body size and concurrency caps; each defaults to DEFAULT_SERVER_LIMITS (src/server/server-limits.ts). */
  limits?: Partial<ServerLimits>
  /** Serve HTTPS with this certificate (chain) and key, PEM; `reloadTls` swaps them without dropping connections. */
  tls?: TlsFiles
}

/** A certificate chain and its private key, PEM. */
export interface TlsFiles {
  cert: string | Buffer
  key: string | Buffer
}

export interface FeedServer {
  /** The fastify instance, for `inject()` in tests. */
  readonly app: FastifyInstance
  /** Listens on host (default 127.0.0.1) and port (default 7480; 0 = any free port); resolves with the base URL. */
  listen(options: { host?: string; port?: number }): Promise<{ url: string }>
  /** Stops maintenance, answers waiting long-polls, closes the server. Does NOT close the store. */
  close(): Promise<void>
  /** A server made with `tls`: new connections use these; open ones (long-polls) go on with theirs. */
  reloadTls(tls: TlsFiles): void
}

/** A certificate and a key that belong together, or BadRequestError saying what is wrong. */
function checkTls(tls: TlsFiles): void {
  try {
    createSecureContext({ cert: tls.cert, key: tls.key })
  } catch (error) {
    throw new BadRequestError(`the TLS certificate and key are not usable together: ${(error as Error).message}`, { cause: error })
  }
}

function hasBody(headers: Record<string, string | string[] | undefined>): boolean {
  const length = headers['content-length']
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')
}

/** fastify's 413 says the body is too large; say what the limit is. */
function bodyError(error: unknown, limits: ServerLimits): unknown {
  if ((error as { statusCode?: unknown } | null)?.statusCode !== 413) return error
  return new TooLargeError(`the request body is over this server's limit of ${limits.bodyBytes} bytes: send fewer keys per request`)
}

export async function createFeedServer(options: FeedServerOptions): Promise<FeedServer> {
  const { store, authorize } = options
  const logger = options.logger ?? silentLogger
  const limits = serverLimits(options.limits)
  if (options.tls) checkTls(options.tls)
  const metrics = new ServerMetrics(store)
  const polls = new Set<AbortController>()
  let closing = false
  const ctx: RouteContext = {
    store,
    logger,
    metrics,
    authorize,
    polls,
    closing: () => closing,
    limits,
    exports: new Slots(limits.exports),
    longPolls: new Slots(limits.longPolls),
    longPollsPerClient: new SlotsPerClient(limits.longPollsPerClient),
    rate: new RateLimiter(limits.requestsPerSecond, limits.requestBurst),
    clientOf: (request) => {
      const token = bearerToken(request)
      return token === undefined ? `address ${request.ip}` : `token ${token}`
    },
  }

  const app = Fastify({
    logger: false,
    ...(options.tls ? { https: { cert: options.tls.cert, key: options.tls.key } } : {}),
    bodyLimit: limits.bodyBytes,
    // Node's timers for a client that is slow to send (on purpose or not): headers, then the whole
    // request, then silence on the socket; fastify's defaults leave the first two off.
    requestTimeout: limits.requestTimeoutMs,
    connectionTimeout: limits.idleTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    http: {
      headersTimeout: limits.headersTimeoutMs,
      // Node checks the two request timers this often (its default is 30 s, which would let a
      // slow client hold on up to that much longer than the limit).
      connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
      // Node answers a missing Host itself, outside the protocol's shape: the onRequest hook does.
      requireHostHeader: false,
    },
    // Requests still arriving on open connections while closing are served (long-polls answer at
    // once); fastify's own 503 would not be in the protocol's error shape.
    return503OnClosing: false,
    // Errors fastify raises before routing (a malformed URL, a too-long parameter).
    frameworkErrors: (error, _request, reply) => {
      sendError(reply, bodyError(error, limits), logger)
    },
    // Errors of Node's HTTP parser and its request timers, before any route runs.
    clientErrorHandler: (error: Error & { code?: string }, socket: Socket) => answerClientError(error, socket, limits, logger),
  })

  // JSON bodies: fastify's parser says "not valid JSON" of valid JSON it refuses (a `__proto__` key).
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, parseJsonBody(body as string))
    } catch (error) {
      done(error as Error, undefined)
    }
  })

  app.addHook('onRequest', async (request, reply) => {
    reply.header(PROTOCOL_HEADER, String(PROTOCOL_VERSION))

    const started = process.hrtime.bigint()
    const res = reply.raw
    res.once('close', () => {
      const status = res.writableEnded ? String(res.statusCode) : 'aborted'
      metrics.observe(request.method, request.routeOptions.url ?? 'unmatched', status, Number(process.hrtime.bigint() - started) / 1e9)
    })
    if (request.raw.httpVersion === '1.1' && request.headers.host === undefined) {
      // Like the parser's refusals: a client this broken gets no further requests on the connection.
      reply.header('connection', 'close')
      throw new BadRequestError('an HTTP/1.1 request needs a Host header (RFC 9112, section 3.2)')
    }
    const route = request.routeOptions.url
    if (route?.startsWith('/v1/')) {
      // Keyed by the token as sent (before it is checked) or else the address; made-up tokens each
      // get a bucket, which the limiter's sweep keeps bounded, and a refusal of one is cheap.
      const wait = ctx.rate.take(ctx.clientOf(request))
      if (wait > 0) {
        throw new BusyError(
          `over this server's rate of ${limits.requestsPerSecond} requests per second per client (bursts of ${limits.requestBurst}): ask again in ${wait} s`,
          wait,
          'rate-limited',
        )
      }
    }
    const access = route === undefined ? undefined : routeAccess(request.method, route)
    if (authorize && route !== undefined && access !== undefined && !('public' in access)) {
      const feed = access.feed === 'one' ? (request.params as { feed?: string } | undefined)?.feed : undefined
      await authorize({ token: bearerToken(request), feed, route, scopes: access.scopes, everyFeed: access.feed === 'every' })
    }
  })

  // A response sent before its request's body has all come (a refusal: 401, 413, …) closes the
  // connection: otherwise Node keeps reading the rest of a body that may never end, for nothing.
  app.addHook('onSend', async (request, reply, payload) => {
    if (!request.raw.complete && hasBody(request.headers)) reply.header('connection', 'close')
    return payload
  })

  app.setErrorHandler((error, _request, reply) => sendError(reply, bodyError(error, limits), logger))
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?', 1)[0]
    return sendError(reply, new BadRequestError(`no such route: ${request.method} ${path}`), logger, 404)
  })

  // Every route must be in the route table, which says who may call it: one missing is a bug
  // caught here, at start, not a route served without a check.
  app.addHook('onRoute', (route) => {
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) {
      if (routeAccess(method, route.url) === undefined) throw new Error(`${method} ${route.url} is not in the route table (src/server/route-table.ts)`)
    }
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
      const url = `${options.tls ? 'https' : 'http'}://${shown}:${address.port}`
      logger.info({ url, store: store.location }, `feed server listening on ${url}`)
      return { url }
    },
    reloadTls(tls) {
      if (!options.tls) throw new BadRequestError('this feed server was made without TLS: there is nothing to reload')
      // Checked first: a bad pair keeps the old certificate in place.
      checkTls(tls)
      ;(app.server as unknown as TlsServer).setSecureContext({ cert: tls.cert, key: tls.key })
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
