import type { Scope } from './tokens.js'

/**
 * Who may call each route of the feed server: the one table the server checks every request against
 * (feed-server.ts refuses to start with a route that is not in it) and the auth tests are generated
 * from (test/server/token-matrix.test.ts), so a new route cannot go unchecked.
 *
 * - `feed: 'one'`: the route's `:feed`; the token must cover it.
 * - `feed: 'listed'`: GET /v1/feeds, which lists only the feeds the token covers.
 * - `feed: 'every'`: the answer names every feed (/metrics): only a token over every feed.
 * - `public`: no token asked for; the answer holds nothing about any feed.
 */
export type RouteAccess =
  | { readonly scopes: readonly Scope[]; readonly feed: 'one' | 'listed' | 'every' }
  | { readonly public: string }

export interface RouteEntry {
  readonly method: 'GET' | 'POST'
  readonly url: string
  readonly access: RouteAccess
}

const READ = ['read'] as const
/** A feed's info and the list: for replicas (read), an export's client (export) and the dashboard (report). */
const INFO = ['read', 'export', 'report'] as const

export const ROUTES: readonly RouteEntry[] = [
  { method: 'GET', url: '/v1/feeds', access: { scopes: INFO, feed: 'listed' } },
  { method: 'GET', url: '/v1/feeds/:feed', access: { scopes: INFO, feed: 'one' } },
  { method: 'GET', url: '/v1/feeds/:feed/changes', access: { scopes: READ, feed: 'one' } },
  { method: 'GET', url: '/v1/feeds/:feed/snapshot', access: { scopes: READ, feed: 'one' } },
  { method: 'POST', url: '/v1/feeds/:feed/rows', access: { scopes: READ, feed: 'one' } },
  { method: 'GET', url: '/v1/feeds/:feed/digest', access: { scopes: READ, feed: 'one' } },
  { method: 'POST', url: '/v1/feeds/:feed/digest', access: { scopes: READ, feed: 'one' } },
  { method: 'POST', url: '/v1/feeds/:feed/keys', access: { scopes: READ, feed: 'one' } },
  { method: 'GET', url: '/v1/feeds/:feed/export', access: { scopes: ['export'], feed: 'one' } },
  { method: 'GET', url: '/metrics', access: { scopes: ['report'], feed: 'every' } },
  { method: 'GET', url: '/healthz', access: { public: 'a load balancer asks it without a token; it says only that the server is up' } },
  {
    method: 'GET',
    url: '/',
    access: { public: "the dashboard's page: static, no data (a browser cannot send a bearer token for it); it reads GET /v1/feeds with the token" },
  },
]

const BY_ROUTE = new Map(ROUTES.map((r) => [`${r.method} ${r.url}`, r.access]))

/** The access of a route as fastify names it; HEAD is GET's. Undefined: a route not in the table. */
export function routeAccess(method: string, url: string): RouteAccess | undefined {
  return BY_ROUTE.get(`${method === 'HEAD' ? 'GET' : method} ${url}`)
}
