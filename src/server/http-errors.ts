import type { FastifyReply } from 'fastify'
import { asTidemarkError, BadRequestError, BusyError, TidemarkError, TooLargeError } from '../errors.js'
import type { Logger } from '../store/store.js'
import { JSON_TYPE, PROTOCOL_HEADER, PROTOCOL_VERSION } from './http-protocol.js'

/**
 * Brings whatever was thrown onto tidemark's codes: TidemarkErrors stay as they are; fastify's own
 * errors (bad JSON, a body too large, a wrong content type, …) carry a 4xx `statusCode` and become
 * `too-large` or `bad-request`; anything else is `internal`.
 */
export function toTidemarkError(error: unknown): TidemarkError {
  if (error instanceof TidemarkError) return error
  const status = (error as { statusCode?: unknown } | null)?.statusCode
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const message = error instanceof Error ? error.message : String(error)
    if (status === 413) return new TooLargeError(`${message} (the largest request body is 16 MiB: send fewer keys per request)`)
    return new BadRequestError(message, { cause: error })
  }
  return asTidemarkError(error)
}

/** Sends an error response in the protocol's shape: status from HTTP_STATUS, body `{ error, message, …details }`. */
export function sendError(reply: FastifyReply, error: unknown, logger: Logger, status?: number): FastifyReply {
  const e = toTidemarkError(error)
  logError(logger, e, reply.request.method, reply.request.url)
  if (e instanceof BusyError) reply.header('retry-after', String(e.retryAfterS))
  return reply
    .code(status ?? e.status)
    .header(PROTOCOL_HEADER, String(PROTOCOL_VERSION))
    .type(JSON_TYPE)
    .send(e.toJSON())
}

/** Server-side failures are logged with their cause; a client's mistakes only at debug level. */
export function logError(logger: Logger, e: TidemarkError, method: string, url: string): void {
  if (e.status >= 500) {
    logger.error({ err: e.cause ?? e, code: e.code, method, url }, e.message)
  } else {
    logger.debug({ code: e.code, method, url }, e.message)
  }
}

/** One NDJSON line (with its newline) that tells a client the listing failed. */
export function errorLine(error: TidemarkError): string {
  return `${JSON.stringify(error.toJSON())}\n`
}
