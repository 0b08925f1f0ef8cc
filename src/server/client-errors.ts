import type { Socket } from 'node:net'
import { BadRequestError, TidemarkError, TooLargeError } from '../errors.js'
import type { Logger } from '../store/store.js'
import { JSON_TYPE, PROTOCOL_HEADER, PROTOCOL_VERSION } from './http-protocol.js'
import type { ServerLimits } from './server-limits.js'

/** Node's parser and timer errors, by the code Node gives them, as the protocol's errors (status, error). */
export function clientErrorAnswer(error: Error & { code?: string }, limits: ServerLimits): { status: number; error: TidemarkError } {
  switch (error.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return {
        status: 408,
        error: new BadRequestError(
          `the request did not arrive within ${limits.requestTimeoutMs} ms (headers within ${limits.headersTimeoutMs} ms): send it whole, at once`,
        ),
      }
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, error: new TooLargeError('the request\'s headers are over 16 KiB: send fewer or shorter headers') }
    case 'HPE_INVALID_METHOD':
      return { status: 400, error: new BadRequestError('unknown HTTP method: this server answers GET and POST') }
    default: {
      // Bare LF line endings, Content-Length with Transfer-Encoding, a malformed header, …: say
      // what the parser found, which is all there is to say.
      const reason = (error as { reason?: unknown }).reason
      const what = typeof reason === 'string' && reason !== '' ? reason : error.message
      return { status: 400, error: new BadRequestError(`malformed HTTP request (${error.code ?? 'parse error'}): ${what}`) }
    }
  }
}

/**
 * fastify's `clientErrorHandler`: answers what Node's HTTP parser refuses (or a request that took
 * too long) in the protocol's shape, with its header, then closes the connection — the stream of
 * requests on it can no longer be followed. Written straight to the socket, as Node does, since no
 * request object exists; nothing is written when a response is already under way on it.
 */
export function answerClientError(error: Error & { code?: string }, socket: Socket, limits: ServerLimits, logger: Logger): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const { status, error: e } = clientErrorAnswer(error, limits)
  logger.debug({ code: e.code, cause: error.code, status }, e.message)
  const inResponse = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage?.headersSent === true
  if (socket.writable && !inResponse) {
    const body = JSON.stringify(e.toJSON())
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\n` +
        `${PROTOCOL_HEADER}: ${PROTOCOL_VERSION}\r\n` +
        `content-type: ${JSON_TYPE}\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\n` +
        'cache-control: no-store\r\n' +
        'connection: close\r\n\r\n' +
        body,
    )
  }
  socket.destroy()
}

const STATUS_TEXT: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 431: 'Request Header Fields Too Large' }
