import { createHash, timingSafeEqual } from 'node:crypto'
import { TidemarkError } from '../errors.js'
import type { AuthRequest } from '../server/feed-server.js'

export type Authorize = (request: AuthRequest) => void

/**
 * `tidemark serve --token …`: every request must carry one of the tokens as `Authorization: Bearer
 * <token>`. Tokens are compared as SHA-256 digests in constant time, so the time taken does not
 * tell how much of a guess was right. No tokens: undefined, and the server is open.
 */
export function tokenAuthorizer(tokens: readonly string[]): Authorize | undefined {
  if (tokens.length === 0) return undefined
  const accepted = tokens.map(digest)
  return ({ token }) => {
    if (token === undefined || token === '') {
      throw new TidemarkError('unauthorized', 'this feed server needs a bearer token: send "Authorization: Bearer <token>"')
    }
    const given = digest(token)
    let ok = false
    for (const a of accepted) ok = timingSafeEqual(a, given) || ok
    if (!ok) throw new TidemarkError('unauthorized', 'the bearer token is not one this feed server accepts')
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}

/** Tokens from `--token` (repeatable) or else from a comma-separated environment variable. */
export function tokensFrom(options: string[] | undefined, env: string | undefined): string[] {
  const list = options && options.length > 0 ? options : (env ?? '').split(',')
  return list.map((t) => t.trim()).filter((t) => t !== '')
}
