import { BadRequestError } from '../errors.js'

/**
 * Tokens from `--token` (repeatable) or else from the comma-separated `TIDEMARK_TOKENS`. An empty
 * or blank token is an error, never "no token": `--token "$READER_TOKEN"` with the variable unset,
 * or `TIDEMARK_TOKENS=,,`, must not start a server that lets everyone in. Spaces around the
 * variable's entries are trimmed (`a, b`); an unset variable and no `--token` give no tokens.
 */
export function tokensFrom(options: string[] | undefined, env: string | undefined): string[] {
  if (options && options.length > 0) {
    return options.map((t, i) => checkToken(t, `--token number ${i + 1} of ${options.length}`))
  }
  if (env === undefined) return []
  const entries = env.split(',').map((t) => t.trim())
  entries.forEach((t, i) => checkToken(t, `TIDEMARK_TOKENS entry ${i + 1} of ${entries.length}`))
  return entries
}

/** A token an HTTP client can send as `Bearer <token>`: not empty, no spaces or control characters. */
function checkToken(token: string, what: string): string {
  if (token.trim() === '') {
    throw new BadRequestError(
      `${what} is empty: an empty token would leave the feed server without authentication (is the variable you passed set?); ` +
        'give real tokens, or none at all to serve without auth on 127.0.0.1',
    )
  }
  if (/[\s\x00-\x1f\x7f]/.test(token)) {
    throw new BadRequestError(`${what} contains a space or a control character: no client could send it as "Authorization: Bearer <token>"`)
  }
  return token
}
