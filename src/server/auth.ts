import type { FastifyRequest } from 'fastify'
import type { Scope } from './tokens.js'

/** What `authorize` is asked about, before every request to a route that is not public (route-table.ts). */
export interface AuthRequest {
  /** The bearer token of the `Authorization: Bearer …` header; undefined without one. */
  token: string | undefined
  /** The feed the request is about; undefined for `GET /v1/feeds` (which then asks once per listed feed). */
  feed: string | undefined
  /** The route's pattern, e.g. `/v1/feeds/:feed/changes`. */
  route: string
  /** The scopes of which the token must hold one (or `admin`), from the route table (route-table.ts). */
  scopes?: readonly Scope[]
  /** The answer names every feed (`/metrics`): only a token over every feed may have it. */
  everyFeed?: boolean
}

/** Refuses by throwing `TidemarkError('unauthorized' | 'forbidden')`; returning allows. */
export type Authorize = (request: AuthRequest) => void | Promise<void>

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), or undefined. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization
  if (typeof header !== 'string') return undefined
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)
  return match?.[1]
}
