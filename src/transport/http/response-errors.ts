/**
 * Turning what a feed server (or whatever answered in its place) said into tidemark's errors on the
 * replica's side. The replica decides by class and code: `epoch-changed` and `log-truncated` make it
 * re-bootstrap; `store-unavailable` (network failures, timeouts, 5xx) and `protocol` (a garbled or
 * cut answer) make it retry with backoff.
 */
import {
  BadRequestError,
  ConflictError,
  EpochChangedError,
  ERROR_CODES,
  HTTP_STATUS,
  LogTruncatedError,
  ProtocolError,
  TidemarkError,
  TooLargeError,
  UnknownFeedError,
  type ErrorCode,
} from '../../errors.js'
import type { Seq } from '../../protocol/types.js'
import { excerpt, isSeq } from './wire-lines.js'

export interface ExchangeContext {
  /** The source's description (no credentials). */
  source: string
  /** `GET /v1/feeds/x/changes`, for messages. */
  what: string
  feed: string
  /** The request's position, for LogTruncatedError. */
  after?: Seq
  /** The epoch the request expected, for EpochChangedError. */
  epoch?: string
}

/** An error body `{ error, message, …details }` (or an error line mid-listing, `status` undefined). */
export function errorFromBody(body: Record<string, unknown>, status: number | undefined, ctx: ExchangeContext): TidemarkError {
  const code = body.error
  const message = typeof body.message === 'string' ? body.message : ''
  const where = `${ctx.what} on ${ctx.source}`
  if (typeof code !== 'string' || !(ERROR_CODES as readonly string[]).includes(code)) {
    const shown = typeof code === 'string' ? JSON.stringify(code) : 'no'
    if (status !== undefined && status >= 500) return unavailable(`${where} failed with ${status}: ${message || excerpt(JSON.stringify(body))}`, status, code)
    return new ProtocolError(`${where} answered ${status ?? 'mid-listing'} with ${shown} error code: ${message || excerpt(JSON.stringify(body))}`, {
      details: { status },
    })
  }
  const known = code as ErrorCode
  const { error: _code, message: _message, ...details } = body
  switch (known) {
    case 'epoch-changed':
      if (typeof body.epoch !== 'string') return new ProtocolError(`${where} said epoch-changed without the feed's epoch: ${excerpt(JSON.stringify(body))}`)
      return new EpochChangedError(ctx.feed, ctx.epoch ?? '', body.epoch)
    case 'log-truncated':
      if (!isSeq(body.minSeq)) return new ProtocolError(`${where} said log-truncated without the log's minSeq: ${excerpt(JSON.stringify(body))}`)
      return new LogTruncatedError(ctx.feed, ctx.after ?? (isSeq(body.after) ? body.after : 0), body.minSeq)
    case 'unknown-feed':
      return new UnknownFeedError(ctx.feed)
    default:
      break
  }
  if ((status ?? HTTP_STATUS[known]) >= 500) return unavailable(`${where} failed: ${message || known}`, status, known)
  switch (known) {
    case 'bad-request':
      return new BadRequestError(message, { details })
    case 'too-large':
      return new TooLargeError(message)
    case 'conflict':
      return new ConflictError(message)
    default:
      return new TidemarkError(known, message, { details })
  }
}

/** A response that is not 200: the server's error, rebuilt, or ProtocolError saying what came instead. */
export function errorFromResponse(status: number, text: string, ctx: ExchangeContext): TidemarkError {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    body = undefined
  }
  if (typeof body === 'object' && body !== null && !Array.isArray(body) && typeof (body as { error?: unknown }).error === 'string') {
    return errorFromBody(body as Record<string, unknown>, status, ctx)
  }
  const what = `${ctx.what} on ${ctx.source} answered ${status}${text === '' ? ' with an empty body' : `: ${excerpt(text)}`}`
  if (status >= 500) return unavailable(what, status, undefined)
  return new ProtocolError(`${what} (not a tidemark error body)`, { details: { status } })
}

/** The server could not be reached or the connection failed: retry with backoff. */
export function networkError(cause: unknown, ctx: ExchangeContext, midResponse: boolean, timeoutMs: number): TidemarkError {
  const code = (cause as { code?: unknown } | null)?.code
  let message: string
  if (code === 'UND_ERR_HEADERS_TIMEOUT') message = `no answer from ${ctx.source} to ${ctx.what} within ${timeoutMs} ms`
  else if (code === 'UND_ERR_BODY_TIMEOUT') message = `${ctx.source} stopped sending mid-response to ${ctx.what} for ${timeoutMs} ms`
  else if (typeof code === 'string' && TLS_TRUST_CODES.has(code)) {
    message = `cannot reach ${ctx.source} (${ctx.what}): its TLS certificate is not one this client trusts (${describeCause(cause)}): give the CA that signed it (--ca, $TIDEMARK_CA, or the ca option), or fix the server's certificate`
  } else if (midResponse) message = `the connection to ${ctx.source} broke mid-response to ${ctx.what}: ${describeCause(cause)}`
  else message = `cannot reach ${ctx.source} (${ctx.what}): ${describeCause(cause)}`
  return new TidemarkError('store-unavailable', message, { cause, details: typeof code === 'string' ? { cause: code } : {} })
}

/** Node's codes for a server certificate that does not verify: a setup problem, said as such. */
const TLS_TRUST_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

function unavailable(message: string, status: number | undefined, code: unknown): TidemarkError {
  const details: Record<string, unknown> = {}
  if (status !== undefined) details.status = status
  if (typeof code === 'string') details.serverError = code
  return new TidemarkError('store-unavailable', message, { details })
}

/** A readable cause: undici's and node's errors, including the AggregateError of a dual-stack connect. */
export function describeCause(cause: unknown): string {
  if (cause instanceof AggregateError && cause.errors.length > 0) {
    return [...new Set(cause.errors.map(describeCause))].join('; ')
  }
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code
    if (cause.message) return cause.message
    return typeof code === 'string' ? code : cause.name
  }
  return String(cause)
}
