import type { FastifyRequest } from 'fastify'

/** What `authorize` is asked about, before every /v1 request is handled. */
export interface AuthRequest {
  /** The bearer token of the `Authorization: Bearer …` header; undefined without one. */
  token: string | undefined
  /** The feed the request is about; undefined for `GET /v1/feeds` (which then asks once per listed feed). */
  feed: string | undefined
  /** The route's pattern, e.g. `/v1/feeds/:feed/changes`. */
  route: string
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
